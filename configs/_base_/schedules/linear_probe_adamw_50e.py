# Linear probe schedule (paper, supplementary section 8): 50 epochs, AdamW
# lr 4e-3 with cosine decay, weight decay 1e-4, batch 1024.
max_epochs = 50
optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(
        type='AdamW',
        lr=4e-3,
        weight_decay=1e-4,
        eps=1e-8,
        betas=(0.9, 0.999)))
param_scheduler = [
    dict(
        type='CosineAnnealingLR',
        eta_min=0.0,
        by_epoch=True,
        begin=0,
        end=max_epochs,
        convert_to_iter_based=True)
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=1024, enable=True)
