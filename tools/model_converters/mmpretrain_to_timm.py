"""Export an mmpretrain ``VisionTransformer`` / ``MaPeTViT`` backbone to timm.

Produces the key layout of ``timm.models.vision_transformer.
VisionTransformer`` (``init_values`` set, i.e. with layer scale), loadable
with ``strict=True``. The input may be a pre-training, fine-tuning or
stripped checkpoint (keys with ``backbone.``) or a bare backbone state dict.

=====================================  ======================================
mmpretrain                             timm
=====================================  ======================================
cls_token, pos_embed                   cls_token, pos_embed
patch_embed.projection.*               patch_embed.proj.*
layers.i.ln1.* / ln2.*                 blocks.i.norm1.* / norm2.*
layers.i.attn.qkv.* / proj.*           blocks.i.attn.qkv.* / proj.*
layers.i.attn.gamma1.weight            blocks.i.ls1.gamma
layers.i.ffn.gamma2.weight             blocks.i.ls2.gamma
layers.i.ffn.layers.0.0.* / layers.1.*  blocks.i.mlp.fc1.* / fc2.*
ln1.* (final norm)                     norm.*
ln2.* (norm after average pooling)     fc_norm.*
head.fc.* (``--with-head``)            head.*
mask_token (pre-training only)         dropped, reported
=====================================  ======================================

Every key must be mapped (or be a listed drop); otherwise it fails::

    python tools/model_converters/mmpretrain_to_timm.py \\
        work_dirs/mapet_vit-b_300e_in1k/epoch_300.pth mapet_vit-b_timm.pth
"""
import argparse
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, List, Tuple

import torch

#: Backbone keys timm's ViT has no counterpart for.
DROPPED_KEYS = ('mask_token', )

_TOP_LEVEL = {
    'cls_token': 'cls_token',
    'pos_embed': 'pos_embed',
    'patch_embed.projection.weight': 'patch_embed.proj.weight',
    'patch_embed.projection.bias': 'patch_embed.proj.bias',
    'ln1.weight': 'norm.weight',
    'ln1.bias': 'norm.bias',
    'ln2.weight': 'fc_norm.weight',
    'ln2.bias': 'fc_norm.bias',
}

_LAYER = {
    'ln1.weight': 'norm1.weight',
    'ln1.bias': 'norm1.bias',
    'ln2.weight': 'norm2.weight',
    'ln2.bias': 'norm2.bias',
    'attn.qkv.weight': 'attn.qkv.weight',
    'attn.qkv.bias': 'attn.qkv.bias',
    'attn.proj.weight': 'attn.proj.weight',
    'attn.proj.bias': 'attn.proj.bias',
    'attn.gamma1.weight': 'ls1.gamma',
    'ffn.gamma2.weight': 'ls2.gamma',
    'ffn.layers.0.0.weight': 'mlp.fc1.weight',
    'ffn.layers.0.0.bias': 'mlp.fc1.bias',
    'ffn.layers.1.weight': 'mlp.fc2.weight',
    'ffn.layers.1.bias': 'mlp.fc2.bias',
}

_HEAD = {'head.fc.weight': 'head.weight', 'head.fc.bias': 'head.bias'}

_LAYER_RE = re.compile(r'^layers\.(\d+)\.(.+)$')


def convert_to_timm(
    state_dict: Dict[str, torch.Tensor],
    prefix: str = 'backbone.',
    with_head: bool = False
) -> Tuple['OrderedDict[str, torch.Tensor]', List[str]]:
    """Map mmpretrain ViT backbone keys to timm ``vision_transformer`` keys.

    Args:
        state_dict (Dict[str, torch.Tensor]): Weights; keys with ``prefix``
            are the backbone. If no key has ``prefix``, all keys are taken
            as backbone keys.
        prefix (str): Backbone prefix. Defaults to ``'backbone.'``.
        with_head (bool): Also export ``head.fc`` as timm's ``head``
            (otherwise other modules are dropped). Defaults to False.

    Returns:
        Tuple[OrderedDict, List[str]]: timm weights and dropped keys.

    Raises:
        KeyError: If a backbone (or, with ``with_head``, head) key cannot be
            mapped.
    """
    names = {(k[len('module.'):] if k.startswith('module.') else k): v
             for k, v in state_dict.items()}
    has_prefix = any(k.startswith(prefix) for k in names)
    out: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    dropped, unmapped = [], []
    for key, value in names.items():
        if with_head and key in _HEAD:
            out[_HEAD[key]] = value
            continue
        if has_prefix:
            if not key.startswith(prefix):
                dropped.append(key)
                continue
            key = key[len(prefix):]
        match = _LAYER_RE.match(key)
        if key in _TOP_LEVEL:
            out[_TOP_LEVEL[key]] = value
        elif key in DROPPED_KEYS:
            dropped.append(key)
        elif match and match.group(2) in _LAYER:
            out[f'blocks.{match.group(1)}.{_LAYER[match.group(2)]}'] = value
        else:
            unmapped.append(key)
    if unmapped:
        raise KeyError(f'Unmapped backbone keys: {unmapped}. Only the stock '
                       'VisionTransformer layout (as MaPeTViT) is supported.')
    if with_head and 'head.weight' not in out:
        raise KeyError('--with-head given but the checkpoint has no '
                       '`head.fc.weight` (a linear classifier head).')
    return out, dropped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='mmpretrain checkpoint')
    parser.add_argument('dst', help='output timm state dict')
    parser.add_argument(
        '--prefix', default='backbone.', help='backbone key prefix')
    parser.add_argument(
        '--with-head',
        action='store_true',
        help='also export a linear classifier head (head.fc)')
    args = parser.parse_args()

    from mapet.utils.checkpoint import atomic_save_checkpoint
    from mapet.utils import safe_torch_load
    checkpoint = safe_torch_load(args.src, map_location='cpu')
    state_dict = checkpoint.get('state_dict', checkpoint)
    converted, dropped = convert_to_timm(
        state_dict, prefix=args.prefix, with_head=args.with_head)
    # atomic write + `<dst>.sha256` sidecar, as for training checkpoints
    atomic_save_checkpoint(converted, args.dst)
    print(f'exported {len(converted)} tensors from '
          f'{osp.basename(args.src)} (dropped {dropped}) to {args.dst}')


if __name__ == '__main__':
    main()
