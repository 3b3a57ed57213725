# Linear probe of the demo pre-training (configs/demo/mapet_vit-t6-p16_demo.py)
# on the 8 demo classes: the ViT-T linear-probe recipe of
# configs/benchmarks/classification/, with the demo's 6-layer ViT at 96 px,
# the demo dataset, plain fp32 (CPU) and 30 epochs.
# `tools/demo.py` runs it on the pre-trained backbone and, as the reference,
# on a randomly initialised one (model.backbone.init_cfg=None), once per
# probe seed (randomness.seed, default 0 and 1).
_base_ = '../benchmarks/classification/vit-t-p16_linear-8xb128-coslr-50e_in1k.py'

data_root = 'data/demo/'
img_size = 96
num_classes = 8
num_layers = 6
max_epochs = 30

model = dict(
    backbone=dict(
        arch=dict(
            _delete_=True,
            embed_dims=192,
            num_layers=num_layers,
            num_heads=3,
            feedforward_channels=768),
        img_size=img_size,
        frozen_stages=num_layers,
        init_cfg=dict(checkpoint='work_dirs/demo/pretrain/epoch_12.pth')),
    head=dict(num_classes=num_classes))
data_preprocessor = dict(num_classes=num_classes)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=img_size,
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='ResizeEdge',
        scale=img_size,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]
# `classes` (= data/demo/meta/classes.txt, label order): CustomDataset reads
# no names from an ann_file, and checkpoints store them as
# meta.dataset_meta for get_model / ImageClassificationInferencer.
_demo_dataset = dict(
    _delete_=True, type='CustomDataset', data_root=data_root,
    with_label=True, classes=['astronaut', 'cat', 'coffee', 'galaxies',
                              'motorcycle', 'retina', 'rocket', 'tissue'])
train_dataloader = dict(
    batch_size=64,
    num_workers=2,
    persistent_workers=True,
    pin_memory=False,
    dataset=dict(
        _demo_dataset,
        ann_file='meta/train.txt',
        data_prefix='train',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64,
    num_workers=2,
    persistent_workers=True,
    pin_memory=False,
    dataset=dict(
        _demo_dataset,
        ann_file='meta/val.txt',
        data_prefix='val',
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer={{_base_.optim_wrapper.optimizer}})
param_scheduler = [
    dict(
        type='CosineAnnealingLR',
        eta_min=0.0,
        by_epoch=True,
        begin=0,
        end=max_epochs,
        convert_to_iter_based=True)
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
auto_scale_lr = dict(enable=False)
default_hooks = dict(
    logger=dict(interval=5),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
