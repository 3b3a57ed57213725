# BEiT baseline ViT-B/16 (paper Table 2), k-CLIP tokens: BEiT v1's
# objective (mask tokens + position embeddings on the masked patches, predict
# their visual tokens) with its block-wise masking of 75 of 196 patches
# (mmpretrain's BEiTMaskGenerator), on MaPeT's ViT and MaPeT's schedule.
# It is the MIM baseline with block-wise instead of random masking.
_base_ = '../mim/mim_vit-b_300e_in1k.py'

block_mask = dict(
    type='BEiTMaskGenerator',
    input_size=_base_.img_size // _base_.patch_size,
    num_masking_patches=75,
    min_num_patches=16,
    max_num_patches=None)
train_dataloader = dict(
    dataset=dict(pipeline=[
        block_mask if t['type'] == 'SimMIMMaskGenerator' else t
        for t in _base_.train_dataloader.dataset.pipeline
    ]))
