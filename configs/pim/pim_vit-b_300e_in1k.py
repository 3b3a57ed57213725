# PIM baseline ViT-B/16 (XLNet two-stream, no auxiliary position tokens),
# k-CLIP tokens, same cutting point (60) and recipe as MaPeT.
_base_ = '../mapet/mapet_vit-b_300e_in1k.py'
model = dict(backbone=dict(mode='pim'))
