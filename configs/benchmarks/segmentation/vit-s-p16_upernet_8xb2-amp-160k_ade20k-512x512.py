# ADE20K semantic segmentation, UperNet on a pre-trained ViT-S (Table 10).
_base_ = './vit-b-p16_upernet_8xb2-amp-160k_ade20k-512x512.py'

embed_dims = 384
model = dict(
    backbone=dict(arch='deit-small'),
    neck=dict(embed_dim=embed_dims),
    decode_head=dict(in_channels=[embed_dims] * 4, channels=512),
    auxiliary_head=dict(in_channels=embed_dims))
