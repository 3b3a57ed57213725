# ImageNet-1k pre-training data with pre-extracted k-CLIP visual tokens.
# Tokens are computed once on a fixed centre crop, so the only augmentation
# is colour jitter (0.4) and the token grid stays aligned with the patches.
dataset_type = 'ImageNet'
data_root = 'data/imagenet/'
# Store written by tools/tokenizers (k-CLIP RN50x64, K = 8192 centroids).
token_store = data_root + 'visual_tokens/kclip_rn50x64_k8192/'
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
img_size = 224
patch_size = 16

data_preprocessor = dict(
    type='SelfSupDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

train_pipeline = [
    # mapet's decoder, the one token extraction used (EXIF orientation,
    # bit depth, palette, CMYK): the pixels match the stored tokens.
    dict(type='LoadImageForTokens'),
    dict(
        type='LoadVisualTokens',
        store=token_store,
        grid_size=img_size // patch_size,
        vocab_size=8192,
        crop='center',
        codebook=codebook_sha256),
    dict(
        type='ResizeEdge',
        scale=img_size,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(
        type='ColorJitter',
        brightness=0.4,
        contrast=0.4,
        saturation=0.4,
        hue=0.),
    dict(
        type='RandomPatchPermutation',
        input_size=img_size,
        patch_size=patch_size),
    dict(type='PackInputs', algorithm_keys=['permutation', 'visual_tokens'])
]

# 64 GPUs x 32 images = the paper's batch of 2048 (see auto_scale_lr).
train_dataloader = dict(
    batch_size=32,
    num_workers=8,
    # Permutations and colour jitter depend on (seed, epoch, sample) only
    # (see mapet/datasets/sample_rng.py), whatever the workers do.
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='meta/train.txt',
        data_prefix=dict(img_path='train/'),
        pipeline=train_pipeline))
