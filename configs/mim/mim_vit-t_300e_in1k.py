# MIM baseline ViT-T/16, k-CLIP tokens, MaPeT's recipe; see the ViT-B config.
_base_ = './mim_vit-b_300e_in1k.py'

model = dict(backbone=dict(arch='deit-t'), head=dict(embed_dims=192))
