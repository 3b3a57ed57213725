# Food-101 linear probe of a frozen pre-trained ViT-B (paper Table 5).
_base_ = [
    '../../_base_/models/vit_linear_probe.py',
    '../../_base_/datasets/food101_bs128_linear.py',
    '../../_base_/schedules/linear_probe_adamw_50e.py',
    '../../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(arch='deit-base'),
    head=dict(
        in_channels=768,
        num_classes={{_base_.data_preprocessor.num_classes}}))
default_hooks = dict(
    checkpoint=dict(type='SafeCheckpointHook', interval=1, max_keep_ckpts=2))
