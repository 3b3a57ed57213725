# ADE20K UperNet schedule (paper Table 10): AdamW (eps 1e-8, betas
# 0.9/0.999) lr 5e-5, weight decay 0.05 (none on 1-D parameters, cls_token,
# pos_embed), layer-wise lr decay 0.75 over the backbone (heads get the full
# lr), 1500 linear warmup iterations from 5e-11, then linear decay to 0 at
# 160k iterations, AMP.
lr = 5e-5
warmup_lr = 5e-11
warmup_iters = 1500
max_iters = 160000
val_interval = 16000
optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(
        type='AdamW',
        lr=lr,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.05),
    constructor='mmpretrain.BackboneLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.75,
        flat_decay_mult=0.0,
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
        }))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=warmup_lr / lr,
        by_epoch=False,
        begin=0,
        end=warmup_iters),
    dict(
        type='PolyLR',
        power=1.0,
        eta_min=0.0,
        by_epoch=False,
        begin=warmup_iters,
        end=max_iters),
]
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=val_interval)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# The recipe's batch is 16 (8 GPUs x 2); other GPU counts rescale the lr.
auto_scale_lr = dict(base_batch_size=16, enable=True)
