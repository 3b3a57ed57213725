# Tiny ViT-T UperNet for tests: the real ADE20K benchmark config with a
# 4-layer, 64-dim backbone at 64 x 64 and two iterations. The test generates
# an ADE20K-format folder, sets data_root and the pre-trained checkpoint with
# --cfg-options and trains with --no-amp (CPU).
_base_ = '../../../configs/benchmarks/segmentation/' \
    'vit-t-p16_upernet_8xb2-amp-160k_ade20k-512x512.py'

dims = 64
size = (64, 64)
scale = (128, 64)
model = dict(
    data_preprocessor=dict(size=size),
    backbone=dict(
        arch=dict(
            _delete_=True,
            embed_dims=dims,
            num_layers=4,
            num_heads=2,
            feedforward_channels=2 * dims),
        img_size=size,
        out_indices=(0, 1, 2, 3)),
    neck=dict(embed_dim=dims),
    decode_head=dict(in_channels=[dims] * 4, channels=16),
    auxiliary_head=dict(in_channels=dims, channels=16),
    test_cfg=dict(crop_size=size, stride=(48, 48)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=scale, ratio_range=(1.0, 1.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=size, cat_max_ratio=0.75),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=2, val_interval=2)
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(interval=2),
    visualization=dict(type='SegVisualizationHook', draw=False))
