# CAE baseline ViT-S/16 (paper Table 2), k-CLIP tokens; see the ViT-B config.
_base_ = './cae_vit-b_300e_in1k.py'

embed_dims = 384
num_heads = 6
model = dict(
    backbone=dict(arch='deit-s'),
    neck=dict(embed_dims=embed_dims, num_heads=num_heads))
