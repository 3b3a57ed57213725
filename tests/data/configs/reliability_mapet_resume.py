# Tiny MaPeT pre-training for the exact-resume test: 24 demo images, batch
# 4 (6 iterations per epoch), 2 epochs, shuffled, random colour jitter and
# permutations, drop path on: every source of randomness a real run has.
# A checkpoint every 4 iterations (mid-epoch), like a preemptible job.
_base_ = './_tiny_mapet_base.py'

custom_imports = dict(imports=[
    'mapet', 'core_tiny_tokenizer', 'reliability_hooks', 'foundation_hooks'
])

model = dict(backbone=dict(drop_path_rate=0.1))

train_dataloader = dict(
    batch_size=4,
    persistent_workers=False,
    dataset=dict(
        indices=list(range(0, 320, 13))[:24],  # 24 images, all 8 classes
        pipeline=[
            dict(_base_.train_dataloader.dataset.pipeline[0],
                 type='LoadImageFromFile'),
            *_base_.train_dataloader.dataset.pipeline[1:],
        ]))

param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=5),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=5, end=12)
]
train_cfg = dict(
    _delete_=True, type='ExactResumeEpochBasedTrainLoop', max_epochs=2)

default_hooks = dict(
    checkpoint=dict(interval=4, max_keep_ckpts=2))
custom_hooks = [
    dict(type='SelfKillHook', at_iter=-1),
    dict(type='SampleRecorderHook'),
    dict(type='FoundationLossRecorderHook'),  # per-rank losses
]
randomness = dict(diff_rank_seed=True)
