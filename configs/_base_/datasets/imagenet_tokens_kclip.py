# ImageNet-1k as visual tokens (tokens as input, paper Table 7): the 14 x 14
# k-CLIP tokens of each image, read from token stores written by
# tools/tokenizers/extract_tokens.py; no image is decoded.
grid_size = 14
vocab_size = 8192
token_store = 'data/tokens/in1k_kclip'
# The codebooks the token stores must have been extracted with (their
# `centroids_sha256`); LoadVisualTokens refuses a store of another codebook,
# and refuses to start while a value below is still a placeholder. Set them
# once, after fitting / extracting:
#   k-CLIP: printed by tools/tokenizers/fit_kclip_codebook.py ("sha256 ..."),
#           stored in the codebook's metadata and in the store's
#           manifest.json ("tokenizer": {"codebook_sha256": ...});
#   VQ-KD:  in the VQ-KD store's manifest.json, same field.
#   python -c "import json,sys; print(json.load(open(sys.argv[1]))\
#       ['tokenizer']['codebook_sha256'])" STORE/manifest.json
codebook_sha256 = 'UNSET: centroids_sha256 of the fitted k-CLIP codebook'
vqkd_codebook_sha256 = 'UNSET: codebook_sha256 of the VQ-KD token store'

data_root = 'data/imagenet/'
train_pipeline = [
    dict(
        type='LoadVisualTokens',
        store=token_store + '/train',
        grid_size=grid_size,
        vocab_size=vocab_size,
        crop='center',
        codebook=codebook_sha256),
    dict(type='PackInputs', input_key='visual_tokens'),
]
val_pipeline = [
    dict(
        type='LoadVisualTokens',
        store=token_store + '/val',
        grid_size=grid_size,
        vocab_size=vocab_size,
        crop='center',
        codebook=codebook_sha256),
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
