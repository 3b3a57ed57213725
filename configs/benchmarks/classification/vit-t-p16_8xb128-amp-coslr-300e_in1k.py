# ImageNet-1k fine-tuning of a pre-trained ViT-T (paper Table 9, Tiny column:
# no layer-wise lr decay, i.e. a decay rate of 1.0).
_base_ = './vit-b-p16_8xb128-amp-coslr-100e_in1k.py'

lr = 2.5e-4
layer_decay_rate = 1.0
max_epochs = 300

model = dict(
    backbone=dict(arch='deit-tiny'), head=dict(in_channels=192))
optim_wrapper = dict(
    optimizer=dict(lr=lr),
    paramwise_cfg=dict(layer_decay_rate=layer_decay_rate))
# Same warmup + cosine schedule as ViT-B, rescaled to this lr and length.
param_scheduler = [
    dict(_base_.param_scheduler[0], start_factor=_base_.warmup_lr / lr),
    dict(_base_.param_scheduler[1], end=max_epochs),
]
train_cfg = dict(max_epochs=max_epochs)
