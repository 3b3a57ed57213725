# ImageNet-1k as visual tokens (tokens as input, paper Table 7): the 14 x 14
# k-CLIP tokens of each image, read from token stores written by
# tools/tokenizers/extract_tokens.py; no image is decoded.
grid_size = 14
vocab_size = 8192
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
