# PIM baseline ViT-S/16 (XLNet two-stream, no auxiliary position tokens),
# k-CLIP tokens, same cutting point (50) and recipe as MaPeT.
_base_ = '../mapet/mapet_vit-s_300e_in1k.py'
model = dict(backbone=dict(mode='pim'))
