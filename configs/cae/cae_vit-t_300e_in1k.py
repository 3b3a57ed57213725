# CAE baseline ViT-T/16 (paper Table 2), k-CLIP tokens; see the ViT-B config.
_base_ = './cae_vit-b_300e_in1k.py'

embed_dims = 192
num_heads = 3
model = dict(
    backbone=dict(arch='deit-t'),
    neck=dict(embed_dims=embed_dims, num_heads=num_heads))
