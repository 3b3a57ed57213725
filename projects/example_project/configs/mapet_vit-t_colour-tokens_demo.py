# MaPeT ViT-T pre-training on a small folder dataset, inheriting the paper's
# ViT-T recipe from the installed mapet package (`mapet::` = mapet's configs,
# wherever mapet is installed; `import mapet` must run before the config is
# parsed, which tools/train.py and `mim train mapet` do).
#
# What changes w.r.t. the parent (everything else is inherited: ViT-T
# 192 dim / 12 layers / 3 heads, layer scale 0.1, drop path 0.1, AdamW
# lr 1.5e-3 at batch 2048 with auto_scale_lr, warmup + cosine, grad clip 3.0,
# AMP, colour jitter 0.4 on a fixed centre crop):
# - dataset: the mapet demo dataset (data/demo, ImageNet-style folders and
#   meta/train.txt) through mmpretrain's CustomDataset;
# - image size 64 px (patch 16 -> 4 x 4 = 16 patches) instead of 224 px, so
#   that it runs on a CPU in seconds;
# - cutting point 4 of 16 patches (25 % context, 75 % targets) instead of
#   50 of 196;
# - targets: PatchColourTokenizer (this project, registered via
#   custom_imports) computed on the fly, 64 colour tokens, instead of
#   pre-extracted k-CLIP tokens (8192 codes): no token store to build;
# - a short schedule (20 epochs, 2 warmup).
_base_ = 'mapet::mapet/mapet_vit-t_300e_in1k.py'

custom_imports = dict(
    imports=['mapet', 'example_project'], allow_failed_imports=False)

dataset_type = 'CustomDataset'
data_root = 'data/demo/'
token_store = None  # targets come from the target_generator below
img_size = 64
patch_size = 16
cutting_point = 4
colour_levels = 4  # vocabulary: 4 ** 3 = 64 tokens

model = dict(
    backbone=dict(img_size=img_size, cutting_point=cutting_point),
    head=dict(num_embed=colour_levels**3),
    target_generator=dict(
        type='PatchColourTokenizer',
        patch_size=patch_size,
        levels=colour_levels,
        # The images reach the tokenizer normalised by the data preprocessor;
        # `_base_.<name>` reads a value of the parent config.
        mean=_base_.data_preprocessor.mean,
        std=_base_.data_preprocessor.std,
        input_size=img_size))

train_pipeline = [
    dict(type='LoadImageFromFile'),
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
    # No `visual_tokens`: the target_generator computes the targets.
    dict(type='PackInputs', algorithm_keys=['permutation'])
]

train_dataloader = dict(
    batch_size=32,
    num_workers=2,
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        ann_file='meta/train.txt',
        data_prefix='train/',
        pipeline=train_pipeline))

max_epochs = 20
warmup_epochs = 2
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=_base_.warmup_lr / _base_.base_lr,
        by_epoch=True,
        begin=0,
        end=warmup_epochs,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=_base_.min_lr,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        convert_to_iter_based=True)
]
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(logger=dict(interval=5))
