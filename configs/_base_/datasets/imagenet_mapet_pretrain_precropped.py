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

# The base pipeline with its decode + resize + centre crop replaced by the
# shard lookup (checked at build against the token store: same keys and
# order, decoder); everything after it is the base's.
load_precropped = dict(
    type='LoadPrecroppedImage',
    shards=crop_shards,
    store=_base_.token_store,
    crop_size=_base_.img_size)
train_pipeline = [
    load_precropped if t['type'] == 'LoadImageForTokens' else t
    for t in _base_.train_pipeline
    if t['type'] not in ('ResizeEdge', 'CenterCrop')
]

train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
