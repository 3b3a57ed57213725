# Tokens as input (paper Table 7): classify ImageNet-1k from the 14 x 14
# k-CLIP tokens alone with the MLP head (embedding, Linear to 192, ReLU,
# average pool, Linear to 1000). Tokens come from token stores written by
# tools/tokenizers/extract_tokens.py; no image is decoded.
_base_ = ['../_base_/default_runtime.py']

grid_size = 14
vocab_size = 8192
num_classes = 1000
hidden_dims = 192
token_store = 'data/tokens/in1k_kclip'

data_root = 'data/imagenet/'
train_pipeline = [
    dict(
        type='LoadVisualTokens',
        store=token_store + '/train',
        grid_size=grid_size,
        vocab_size=vocab_size,
        crop='center'),
    dict(type='PackInputs', input_key='visual_tokens'),
]
val_pipeline = [
    dict(
        type='LoadVisualTokens',
        store=token_store + '/val',
        grid_size=grid_size,
        vocab_size=vocab_size,
        crop='center'),
    dict(type='PackInputs', input_key='visual_tokens'),
]
train_dataloader = dict(
    batch_size=128,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='ImageNet',
        data_root=data_root,
        split='train',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=256,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='ImageNet',
        data_root=data_root,
        split='val',
        pipeline=val_pipeline))
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(type='TokenDataPreprocessor'),
    backbone=dict(
        type='TokenMLP',
        vocab_size=vocab_size,
        embed_dims=hidden_dims,
        hidden_dims=hidden_dims,
        init_cfg=dict(
            type='TruncNormal', layer=['Linear', 'Embedding'], std=0.02)),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=num_classes,
        in_channels=hidden_dims,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))

# The paper gives no schedule for this study; ours (8 GPUs x 128 = 1024):
optim_wrapper = dict(
    optimizer=dict(
        type='AdamW', lr=1e-3, weight_decay=0.05, betas=(0.9, 0.999)))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        begin=0,
        end=5,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=95,
        eta_min=1e-6,
        by_epoch=True,
        begin=5,
        end=100),
]
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=5)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=1024)
