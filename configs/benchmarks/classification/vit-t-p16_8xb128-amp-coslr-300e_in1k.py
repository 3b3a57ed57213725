# ImageNet-1k fine-tuning of a pre-trained ViT-T (paper Table 9, Tiny column:
# no layer-wise lr decay, i.e. a decay rate of 1.0).
_base_ = './vit-b-p16_8xb128-amp-coslr-100e_in1k.py'

lr = 2.5e-4
layer_decay_rate = 1.0
max_epochs = 300
warmup_epochs = 20
warmup_lr = 1e-6
min_lr = 1e-6

model = dict(
    backbone=dict(arch='deit-tiny'), head=dict(in_channels=192))
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
