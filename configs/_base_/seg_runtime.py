# Runtime for mmseg-scope configs (mmseg's default runtime, written out: see
# datasets/ade20k_bs2_512x512.py for why `mmseg::` inheritance is avoided).
default_scope = 'mmseg'
# Registers mapet's components (MaPeTViT, the layer-decay constructor, the
# pretrained-load check) into mmpretrain's registries.
custom_imports = dict(imports=['mapet'], allow_failed_imports=False)
# mapet's runner (see _base_/default_runtime.py).
runner_type = 'mmpretrain.MaPeTRunner'
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type='mmpretrain.SafeCheckpointHook', by_epoch=False, interval=16000),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'),
    nan_guard=dict(type='mmpretrain.NaNGuardHook'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(
    type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
