# CAE baseline ViT-B/16 (paper Table 2), k-CLIP tokens: mmpretrain's CAE
# (encoder on the visible patches, latent regressor, decoder, alignment with
# the teacher; CAELoss) with block-wise masking of 98 of 196 patches (50 %, as
# the paper), the encoder being MaPeT's ViT (VisibleTokensViT: stock
# VisionTransformer weights) and the decoder predicting the visual tokens of
# the masked patches; MaPeT's data and schedule.
_base_ = [
    '../_base_/datasets/imagenet_mapet_pretrain.py',
    '../_base_/schedules/mapet_pretrain_300e.py',
    '../_base_/default_runtime.py',
]

vocab_size = 8192
num_masking_patches = 98  # of 196: the encoder sees 50 % of the patches
embed_dims = 768
num_heads = 12
model = dict(
    type='TokenCAE',
    backbone=dict(
        type='VisibleTokensViT',
        arch='deit-b',
        img_size=224,
        patch_size=16,
        drop_rate=0.,
        drop_path_rate=0.1,
        layer_scale_init_value=0.1,
        final_norm=True,
        out_type='raw',
        init_cfg=[
            dict(type='TruncNormal', std=0.02, layer='Linear'),
            dict(type='TruncNormal', std=0.02, layer='Conv2d'),
            dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
        ]),
    neck=dict(
        type='CAENeck',
        num_classes=vocab_size,
        embed_dims=embed_dims,
        num_heads=num_heads,
        regressor_depth=4,
        decoder_depth=4,
        mlp_ratio=4,
        layer_scale_init_value=0.1,
        mask_tokens_num=num_masking_patches),
    head=dict(type='CAEHead', loss=dict(type='CAELoss', lambd=2)),
    base_momentum=0.0)

block_mask = dict(
    type='BEiTMaskGenerator',
    input_size=_base_.img_size // _base_.patch_size,
    num_masking_patches=num_masking_patches,
    min_num_patches=16,
    max_num_patches=None)
train_dataloader = dict(
    dataset=dict(pipeline=[
        block_mask if t['type'] == 'RandomPatchPermutation' else
        dict(t, algorithm_keys=['visual_tokens'])
        if t['type'] == 'PackInputs' else t
        for t in _base_.train_dataloader.dataset.pipeline
    ]))
# The teacher and the decoder's unused outputs get no gradient.
find_unused_parameters = True
