# MaPeT on the embedded demo photographs (data/demo, built by
# tools/dataset_converters/make_demo_dataset.py): the ViT-T recipe of
# configs/mapet/mapet_vit-t_300e_in1k.py, shrunk to run on a laptop CPU.
# What changes and why:
#   - 96 px images -> 6x6 patches, matching a CLIP ResNet at 192 px (6x6 grid),
#   - 6 layers instead of 12, cutting point 9 (25 % context, as c = 50 of 196),
#   - a k-CLIP codebook of `vocab_size` centroids fitted on the demo images,
#   - plain OptimWrapper (AMP needs a GPU), 12 epochs: linear warmup
#     (2 epochs) then cosine.
# `tools/demo.py` fits the codebook, extracts the token store and launches
# this config with tools/train.py.
_base_ = '../mapet/mapet_vit-t_300e_in1k.py'

data_root = 'data/demo/'
token_store = 'work_dirs/demo/tokens_train/'
img_size = 96
patch_size = 16
vocab_size = 128
cutting_point = 9
max_epochs = 12

model = dict(
    backbone=dict(
        arch=dict(
            _delete_=True,
            embed_dims=192,
            num_layers=6,
            num_heads=3,
            feedforward_channels=768),
        img_size=img_size,
        patch_size=patch_size,
        cutting_point=cutting_point,
        drop_path_rate=0.0),
    head=dict(num_embed=vocab_size))

train_pipeline = [
    # mapet's decoder, the one token extraction used (EXIF orientation,
    # bit depth, palette, CMYK): the pixels match the stored tokens.
    dict(type='LoadImageForTokens'),
    dict(
        type='LoadVisualTokens',
        store=token_store,
        grid_size=img_size // patch_size,
        vocab_size=vocab_size,
        crop='center'),
    dict(
        type='ResizeEdge',
        scale=img_size,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(
        type='ColorJitter',
        brightness=0.4,
        contrast=0.4,
        saturation=0.4,
        hue=0.),
    dict(
        type='RandomPatchPermutation',
        input_size=img_size,
        patch_size=patch_size),
    dict(type='PackInputs', algorithm_keys=['permutation', 'visual_tokens'])
]
train_dataloader = dict(
    batch_size=32,
    num_workers=2,
    persistent_workers=True,
    pin_memory=False,
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root=data_root,
        ann_file='meta/train.txt',
        data_prefix='train',
        pipeline=train_pipeline))

# The paper's AdamW settings (base config), without AMP: CPU has no fp16.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer={{_base_.optim_wrapper.optimizer}},
    clip_grad={{_base_.optim_wrapper.clip_grad}},
    paramwise_cfg={{_base_.optim_wrapper.paramwise_cfg}})
# Keep the paper's schedule shape (linear warmup, cosine), on 12 epochs.
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        begin=0,
        end=2,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-5,
        by_epoch=True,
        begin=2,
        end=max_epochs,
        convert_to_iter_based=True)
]
train_cfg = dict(max_epochs=max_epochs)
auto_scale_lr = dict(enable=False)

default_hooks = dict(
    logger=dict(interval=2),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
log_processor = dict(window_size=1)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
