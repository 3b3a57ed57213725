# Tiny ViT-T fine-tuning for tests: the real benchmark config with a 2-layer,
# 64-dim ViT and 8 demo images. The test sets data roots and the pre-trained
# checkpoint with --cfg-options and trains with --no-amp (CPU).
_base_ = '../../../configs/benchmarks/classification/' \
    'vit-t-p16_8xb128-amp-coslr-300e_in1k.py'

dims = 64
model = dict(
    backbone=dict(
        arch=dict(
            _delete_=True,
            embed_dims=dims,
            num_layers=2,
            num_heads=2,
            feedforward_channels=2 * dims)),
    head=dict(in_channels=dims, num_classes=8))
data_preprocessor = dict(num_classes=8)
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(indices=8))
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(indices=8))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1)
]
default_hooks = dict(logger=dict(interval=1))
