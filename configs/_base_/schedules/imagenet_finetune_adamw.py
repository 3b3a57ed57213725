# Fine-tuning optimiser shared by ViT-T/S/B (paper Table 9): AdamW
# (eps 1e-8, betas 0.9/0.999), weight decay 0.05 (none on 1-D parameters,
# cls_token and pos_embed), layer-wise lr decay through mmpretrain's
# constructor, no gradient clipping, AMP as the official code. Each benchmark
# config sets lr, layer_decay_rate, epochs and the warmup + cosine schedule.
optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(
        type='AdamW',
        lr=5e-4,
        weight_decay=0.05,
        eps=1e-8,
        betas=(0.9, 0.999)),
    constructor='LearningRateDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.65,
        flat_decay_mult=0.0,
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
        }),
    clip_grad=None)

train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=1)
val_cfg = dict()
test_cfg = dict()

# The recipe's batch is 1024 (8 GPUs x 128); other GPU counts rescale the lr.
auto_scale_lr = dict(base_batch_size=1024, enable=True)
