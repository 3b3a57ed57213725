# MaPeT ViT-T/16: 192 dims, 3 heads, FFN 768; cutting point c = 50.
_base_ = './mapet_vit-b.py'
model = dict(
    backbone=dict(arch='deit-t', cutting_point=50),
    head=dict(embed_dims=192))
