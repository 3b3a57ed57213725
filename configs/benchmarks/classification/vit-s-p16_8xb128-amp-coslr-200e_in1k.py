# ImageNet-1k fine-tuning of a pre-trained ViT-S (paper Table 9, Small column;
# the peak lr 5e-3 is as printed in the paper).
_base_ = './vit-b-p16_8xb128-amp-coslr-100e_in1k.py'

lr = 5e-3
max_epochs = 200

model = dict(
    backbone=dict(arch='deit-small'), head=dict(in_channels=384))
optim_wrapper = dict(optimizer=dict(lr=lr))
# Same warmup + cosine schedule as ViT-B, rescaled to this lr and length.
param_scheduler = [
    dict(_base_.param_scheduler[0], start_factor=_base_.warmup_lr / lr),
    dict(_base_.param_scheduler[1], end=max_epochs),
]
train_cfg = dict(max_epochs=max_epochs)
