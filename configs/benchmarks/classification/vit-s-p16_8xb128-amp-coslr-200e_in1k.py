# ImageNet-1k fine-tuning of a pre-trained ViT-S (paper Table 9, Small column;
# the peak lr 5e-3 is as printed in the paper).
_base_ = './vit-b-p16_8xb128-amp-coslr-100e_in1k.py'

lr = 5e-3
layer_decay_rate = 0.65
max_epochs = 200
warmup_epochs = 20
warmup_lr = 1e-6
min_lr = 1e-6

model = dict(
    backbone=dict(arch='deit-small'), head=dict(in_channels=384))
optim_wrapper = dict(
    optimizer=dict(lr=lr),
    paramwise_cfg=dict(layer_decay_rate=layer_decay_rate))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=warmup_lr / lr,
        by_epoch=True,
        begin=0,
        end=warmup_epochs,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=min_lr,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
