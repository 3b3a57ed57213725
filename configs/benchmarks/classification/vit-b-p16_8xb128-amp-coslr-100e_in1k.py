# ImageNet-1k fine-tuning of a pre-trained ViT-B (paper Table 9, Base column).
_base_ = [
    '../../_base_/models/vit_avgpool_finetune.py',
    '../../_base_/datasets/imagenet_bs128_finetune.py',
    '../../_base_/schedules/imagenet_finetune_adamw.py',
    '../../_base_/default_runtime.py',
]

lr = 5e-4  # peak, for the total batch of 1024
layer_decay_rate = 0.65
max_epochs = 100
warmup_epochs = 20
warmup_lr = 1e-6
min_lr = 1e-6

model = dict(
    backbone=dict(arch='deit-base'), head=dict(in_channels=768))
optim_wrapper = dict(
    optimizer=dict(lr=lr),
    paramwise_cfg=dict(layer_decay_rate=layer_decay_rate))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=warmup_lr / lr,
        by_epoch=True,
        begin=0,
        end=warmup_epochs,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=min_lr,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(
    checkpoint=dict(type='SafeCheckpointHook', interval=1, max_keep_ckpts=2))
