# MIM baseline ViT-B/16 (single stream, BERT-style random masking of 75
# of 196 patches, as BEiT's ratio), k-CLIP tokens, MaPeT's recipe.
_base_ = '../mapet/mapet_vit-b_300e_in1k.py'
model = dict(backbone=dict(mode='mim', cutting_point=None))
# mmpretrain's random patch masking: ceil(196 * 0.38) = 75 masked patches
# (PackInputs packs `mask` by itself).
random_mask = dict(
    type='SimMIMMaskGenerator',
    input_size=_base_.img_size,
    mask_patch_size=_base_.patch_size,
    model_patch_size=_base_.patch_size,
    mask_ratio=0.38)
train_dataloader = dict(
    dataset=dict(pipeline=[
        random_mask if t['type'] == 'RandomPatchPermutation' else
        dict(t, algorithm_keys=['visual_tokens'])
        if t['type'] == 'PackInputs' else t
        for t in _base_.train_dataloader.dataset.pipeline
    ]))
