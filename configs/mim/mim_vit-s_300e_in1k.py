# MIM baseline ViT-S/16, k-CLIP tokens, MaPeT's recipe; see the ViT-B config.
_base_ = './mim_vit-b_300e_in1k.py'

model = dict(backbone=dict(arch='deit-s'), head=dict(embed_dims=384))
