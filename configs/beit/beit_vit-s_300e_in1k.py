# BEiT baseline ViT-S/16 (paper Table 2), k-CLIP tokens; see the ViT-B config.
_base_ = './beit_vit-b_300e_in1k.py'

model = dict(backbone=dict(arch='deit-s'), head=dict(embed_dims=384))
