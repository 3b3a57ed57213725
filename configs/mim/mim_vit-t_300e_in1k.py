# MIM baseline ViT-T/16 (single stream, BERT-style random masking of 75
# of 196 patches, as BEiT's ratio), k-CLIP tokens, MaPeT's recipe.
_base_ = '../mapet/mapet_vit-t_300e_in1k.py'
model = dict(backbone=dict(mode='mim', cutting_point=None))
train_dataloader = dict(
    dataset=dict(pipeline=[
        dict(t, mode='mim', num_masking_patches=75)
        if t['type'] == 'PermutationMaskGenerator' else t
        for t in _base_.train_dataloader.dataset.pipeline
    ]))
