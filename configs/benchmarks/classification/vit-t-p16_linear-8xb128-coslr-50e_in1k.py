# ImageNet-1k linear probe of a frozen pre-trained ViT-T (paper Tables 1-2).
_base_ = './vit-b-p16_linear-8xb128-coslr-50e_in1k.py'

model = dict(
    backbone=dict(arch='deit-tiny'), head=dict(in_channels=192))
