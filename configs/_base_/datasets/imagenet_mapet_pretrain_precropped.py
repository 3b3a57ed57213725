# ImageNet-1k MaPeT pre-training from pre-cropped shards: the same samples
# as imagenet_mapet_pretrain.py (bit-identical crops, same tokens, same
# colour jitter and permutations), without decoding and resizing JPEGs on
# every epoch (see docs/benchmarks.md, "Input pipeline"). Write the shards
# once, in the token store's order:
#   python tools/tokenizers/write_crop_shards.py --store <token_store> \
#       --data-root data/imagenet --out data/imagenet/crops/center224
# A pre-training config uses it with
#   _base_ = ['../_base_/datasets/imagenet_mapet_pretrain_precropped.py', ...]
_base_ = ['./imagenet_mapet_pretrain.py']

# Written beside the token store (see data_root / token_store in the base).
crop_shards = 'data/imagenet/crops/center224/'
img_size = 224
patch_size = 16

train_pipeline = [
    # Replaces LoadImageForTokens + ResizeEdge + CenterCrop; checked at
    # build against the token store (same keys and order, decoder).
    dict(
        type='LoadPrecroppedImage',
        shards=crop_shards,
        store={{_base_.token_store}},
        crop_size=img_size),
    dict(
        type='LoadVisualTokens',
        store={{_base_.token_store}},
        grid_size=img_size // patch_size,
        vocab_size=8192,
        crop='center',
        codebook={{_base_.codebook_sha256}}),
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

train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
