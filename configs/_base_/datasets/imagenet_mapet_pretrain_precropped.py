# ImageNet-1k MaPeT pre-training from pre-cropped shards, colour jitter on
# the device: the same samples as imagenet_mapet_pretrain.py (bit-identical
# crops, same tokens, same permutations, pixel-identical colour jitter),
# without decoding and resizing JPEGs on every epoch and without the CPU
# jitter (see docs/benchmarks.md, "Input pipeline"). Write the shards
# once, in the token store's order:
#   python tools/tokenizers/write_crop_shards.py --store <token_store> \
#       --data-root data/imagenet --out data/imagenet/crops/center224
# A pre-training config uses it with
#   _base_ = ['../_base_/datasets/imagenet_mapet_pretrain_precropped.py', ...]
_base_ = ['./imagenet_mapet_pretrain.py']

# Written beside the token store (see data_root / token_store in the base).
crop_shards = 'data/imagenet/crops/center224/'

# The base pipeline with
# * its decode + resize + centre crop replaced by the shard lookup (checked
#   at build against the token store: same keys and order, decoder);
# * ColorJitter replaced by DeferredColorJitter (same factors, same draws),
#   whose per-sample jitter PackInputs packs and the data preprocessor
#   applies to the batch on the device (the runner checks both halves);
# everything else is the base's.
load_precropped = dict(
    type='LoadPrecroppedImage',
    shards=crop_shards,
    store=_base_.token_store,
    crop_size=_base_.img_size)


def _precropped(t):
    if t['type'] == 'LoadImageForTokens':
        return load_precropped
    if t['type'] == 'ColorJitter':
        return dict(t, type='DeferredColorJitter')
    if t['type'] == 'PackInputs':
        return dict(t, algorithm_keys=t['algorithm_keys'] + ['color_jitter'])
    return t


train_pipeline = [
    _precropped(t) for t in _base_.train_pipeline
    if t['type'] not in ('ResizeEdge', 'CenterCrop')
]

data_preprocessor = dict(type='ColorJitterDataPreprocessor')
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
