# ADE20K semantic segmentation, UperNet on a pre-trained ViT-B (Table 10).
_base_ = [
    '../../_base_/models/upernet_vit.py',
    '../../_base_/datasets/ade20k_bs2_512x512.py',
    '../../_base_/seg_runtime.py',
    '../../_base_/schedules/ade20k_upernet_adamw_160k.py',
]

default_hooks = dict(
    checkpoint=dict(
        type='mmpretrain.SafeCheckpointHook',
        by_epoch=False,
        interval={{_base_.val_interval}},
        max_keep_ckpts=2))
