# UperNet on a pre-trained ViT for ADE20K (paper section 5.1, Table 10; the
# BEiT v2 / mmseg BEiT-MAE UperNet template). mmseg scope: our backbone is
# mapet's MaPeTViT from mmpretrain's registry. ViT-B by default.
norm_cfg = dict(type='SyncBN', requires_grad=True)
embed_dims = 768
input_size = (512, 512)
num_classes = 150
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=input_size)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        type='mmpretrain.MaPeTViT',
        arch='deit-base',
        img_size=input_size,  # pos_embed interpolated from 224 when loading
        patch_size=16,
        layer_scale_init_value=0.1,
        drop_rate=0.0,  # no dropout
        drop_path_rate=0.15,
        out_indices=(3, 5, 7, 11),
        out_type='featmap',
        final_norm=False,
        init_cfg=dict(
            type='Pretrained',
            # set it with --cfg-options model.backbone.init_cfg.checkpoint=...
            checkpoint='work_dirs/pretrain/epoch_300.pth',
            prefix='backbone.')),
    neck=dict(
        type='Feature2Pyramid', embed_dim=embed_dims, rescales=[4, 2, 1, 0.5]),
    decode_head=dict(
        type='UPerHead',
        in_channels=[embed_dims] * 4,
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=768,
        # Table 10: no dropout anywhere (mmseg's UperNet default would be 0.1).
        dropout_ratio=0.0,
        num_classes=num_classes,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=embed_dims,
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.0,
        num_classes=num_classes,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=input_size, stride=(341, 341)))

# `PretrainedInit` loads with strict=False and only logs; this hook re-checks
# the load before the first iteration and fails on anything not listed here:
# the pre-training final norm `ln1` is unused (features come from blocks
# 4/6/8/12 before any final norm, as BEiT) and pos_embed is interpolated.
# `mask_token` may be missing: CAE's encoder (VisibleTokensViT, a stock
# VisionTransformer) has none, and MaPeTViT's is unused when fine-tuning.
custom_hooks = [
    dict(
        type='mmpretrain.PretrainedLoadCheckHook',
        allowed_missing=['mask_token'],
        allowed_unexpected=['ln1.*'],
        allowed_resized=['pos_embed'])
]
# MaPeTViT's pre-training `mask_token` gets no gradient when fine-tuning.
find_unused_parameters = True
