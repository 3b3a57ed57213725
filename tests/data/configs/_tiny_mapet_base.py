# Shared base of the tiny MaPeT pre-training test configs: a 2-layer MaPeT
# ViT (32 px, 8 px patches, cutting point 4) on the demo dataset, with
# targets from a frozen random tokenizer (tests/data, on PYTHONPATH). Each
# config keeps only what its test needs different.
default_scope = 'mmpretrain'
runner_type = 'mmpretrain.MaPeTRunner'
custom_imports = dict(
    imports=['mapet', 'core_tiny_tokenizer'], allow_failed_imports=False)

data_root = '{{fileDirname}}/../../../data/demo'
img_size = 32
patch_size = 8
vocab_size = 16

model = dict(
    type='MaPeT',
    backbone=dict(
        type='MaPeTViT',
        arch=dict(
            embed_dims=64, num_layers=2, num_heads=2,
            feedforward_channels=128),
        img_size=img_size,
        patch_size=patch_size,
        mode='mapet',
        cutting_point=4,
        drop_path_rate=0.0,
        layer_scale_init_value=0.1,
        out_type='raw'),
    head=dict(type='VisualTokenHead', embed_dims=64, num_embed=vocab_size),
    target_generator=dict(
        type='CoreTinyTokenizer', vocab_size=vocab_size,
        patch_size=patch_size))

data_preprocessor = dict(
    type='SelfSupDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='CustomDataset',
        data_root=data_root,
        ann_file='meta/train.txt',
        data_prefix='train',
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='Resize', scale=(img_size, img_size)),
            dict(
                type='ColorJitter',
                brightness=0.4,
                contrast=0.4,
                saturation=0.4),
            dict(
                type='RandomPatchPermutation',
                input_size=img_size,
                patch_size=patch_size),
            dict(type='PackInputs', algorithm_keys=['permutation']),
        ]))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=3.0))
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
train_cfg = dict(by_epoch=False, max_iters=5)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=1),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='SafeCheckpointHook', interval=5, by_epoch=False),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False))

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='gloo'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
log_processor = dict(by_epoch=False, window_size=1)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
