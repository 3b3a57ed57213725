# Runtime shared by the pre-training configs (mmpretrain scope).
default_scope = 'mmpretrain'
# Registers MaPeT's components into mmpretrain's registries.
custom_imports = dict(imports=['mapet'], allow_failed_imports=False)
# Atomic checksummed checkpoints, verified weights_only loading, resume from
# the newest intact checkpoint, empty datasets refused, targets checked once
# (mapet/engine/runners/mapet_runner.py). Selected here, so it also holds
# with mmpretrain's own tools/train.py and `mim train mapet` (the scope
# prefix finds it before any default scope is set).
runner_type = 'mmpretrain.MaPeTRunner'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # Resumable: keep the latest checkpoints of every epoch. Old ones are
    # deleted only after the new one is complete (mmengine's CheckpointHook
    # deletes first: a kill during the save could leave none).
    checkpoint=dict(type='SafeCheckpointHook', interval=1, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
    # Stop on a NaN/Inf loss that survives the AMP loss scaler; never
    # checkpoint non-finite weights.
    nan_guard=dict(type='NaNGuardHook'),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)

log_level = 'INFO'
load_from = None
resume = False

# Seeds the permutations and augmentations too: the pre-training loop
# (ExactResumeEpochBasedTrainLoop) draws every random transform from
# (seed, epoch, sample_idx), so runs are reproducible and resume bit for bit.
randomness = dict(seed=0, diff_rank_seed=True, deterministic=False)
