# Pre-training schedule of the paper (Table 8): 300 epochs, batch 2048,
# AdamW (betas 0.9/0.999, eps 1e-8, weight decay 0.05), peak lr 1.5e-3,
# 10 linear warmup epochs from 1e-6, cosine to 1e-5, gradient clip 3.0, AMP.
# CPU runs: tools/train.py --no-amp (fp32 OptimWrapper; AMP needs a GPU and
# OptimWrapper does not take loss_scale, so a bare type override fails).
base_lr = 1.5e-3
warmup_lr = 1e-6
min_lr = 1e-5
max_epochs = 300
warmup_epochs = 10

optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(
        type='AdamW',
        lr=base_lr,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.05),
    clip_grad=dict(max_norm=3.0),
    paramwise_cfg=dict(
        # No decay on 1-D parameters: norms, biases, layer scale.
        flat_decay_mult=0.0,
        custom_keys={
            'cls_token': dict(decay_mult=0.0),
            'pos_embed': dict(decay_mult=0.0),
            'mask_token': dict(decay_mult=0.0),
        }))

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=warmup_lr / base_lr,
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
        convert_to_iter_based=True)
]

# Exact mid-epoch resume (docs/reliability.md): skips the trained batches
# at the sampler and makes all randomness a function of (seed, epoch,
# sample, iteration). Otherwise the same as EpochBasedTrainLoop.
train_cfg = dict(type='ExactResumeEpochBasedTrainLoop', max_epochs=max_epochs)

# The recipe's lr is for a total batch of 2048; mmengine rescales it for the
# actual number of GPUs x batch_size (enabled: keeps the recipe at any scale).
auto_scale_lr = dict(base_batch_size=2048, enable=True)
