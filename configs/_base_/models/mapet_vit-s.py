# MaPeT ViT-S/16: 384 dims, 6 heads, FFN 1536; cutting point c = 50.
_base_ = './mapet_vit-b.py'
model = dict(
    backbone=dict(arch='deit-s', cutting_point=50),
    head=dict(embed_dims=384))
