"""Convert a released (official code) MaPeT fine-tuned checkpoint.

The official MaPeT code builds on BEiT/timm ViTs with separate ``q`` and
``kv`` projections (its two-stream attention takes queries from both streams
and keys/values from the content stream). This script maps its keys onto an
mmpretrain ``ImageClassifier`` with a ``VisionTransformer`` backbone (fused
``qkv``) so that ``tools/test.py`` evaluates it with our fine-tuning configs
(``configs/benchmarks/classification/vit-*-p16_8xb128-amp-coslr-*_in1k.py``).

=====================================  ======================================
official                               mmpretrain
=====================================  ======================================
cls_token, pos_embed                   backbone.cls_token, backbone.pos_embed
patch_embed.proj.*                     backbone.patch_embed.projection.*
blocks.i.norm1.* / norm2.*             backbone.layers.i.ln1.* / ln2.*
blocks.i.attn.q.weight + kv.weight     backbone.layers.i.attn.qkv.weight
blocks.i.attn.q.bias + kv.bias, or     backbone.layers.i.attn.qkv.bias
q_bias + v_bias (k bias = 0), or none  (zeros where absent)
blocks.i.attn.proj.*                   backbone.layers.i.attn.proj.*
blocks.i.gamma_1 / ls1.gamma           backbone.layers.i.attn.gamma1.weight
blocks.i.gamma_2 / ls2.gamma           backbone.layers.i.ffn.gamma2.weight
blocks.i.mlp.fc1.* / fc2.*             backbone.layers.i.ffn.layers.0.0.* /
                                       ffn.layers.1.*
norm.* (final norm)                    backbone.ln1.*
fc_norm.* (after average pooling)      backbone.ln2.*
head.*                                 head.fc.*
mask_token (pre-training only)         dropped, reported
=====================================  ======================================

Every key must be mapped (or be a listed drop); otherwise the conversion
fails and names the leftovers::

    python tools/model_converters/official_mapet_to_mmpretrain.py \\
        mapet_vitb_ft.pth mapet_vit-b_ft_mmpretrain.pth
"""
import argparse
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, List, Tuple

import torch

#: Keys of the official checkpoints that have no place in a classifier.
DROPPED_KEYS = ('mask_token', )

_TOP_LEVEL = {
    'cls_token': 'backbone.cls_token',
    'pos_embed': 'backbone.pos_embed',
    'patch_embed.proj.weight': 'backbone.patch_embed.projection.weight',
    'patch_embed.proj.bias': 'backbone.patch_embed.projection.bias',
    'norm.weight': 'backbone.ln1.weight',
    'norm.bias': 'backbone.ln1.bias',
    'fc_norm.weight': 'backbone.ln2.weight',
    'fc_norm.bias': 'backbone.ln2.bias',
    'head.weight': 'head.fc.weight',
    'head.bias': 'head.fc.bias',
}

_BLOCK = {
    'norm1.weight': 'ln1.weight',
    'norm1.bias': 'ln1.bias',
    'norm2.weight': 'ln2.weight',
    'norm2.bias': 'ln2.bias',
    'attn.proj.weight': 'attn.proj.weight',
    'attn.proj.bias': 'attn.proj.bias',
    'gamma_1': 'attn.gamma1.weight',
    'ls1.gamma': 'attn.gamma1.weight',
    'gamma_2': 'ffn.gamma2.weight',
    'ls2.gamma': 'ffn.gamma2.weight',
    'mlp.fc1.weight': 'ffn.layers.0.0.weight',
    'mlp.fc1.bias': 'ffn.layers.0.0.bias',
    'mlp.fc2.weight': 'ffn.layers.1.weight',
    'mlp.fc2.bias': 'ffn.layers.1.bias',
}

_ATTN_INPUTS = ('attn.q.weight', 'attn.kv.weight', 'attn.q.bias',
                'attn.kv.bias', 'attn.q_bias', 'attn.v_bias')

_BLOCK_RE = re.compile(r'^blocks\.(\d+)\.(.+)$')


def _fuse_qkv(block: Dict[str, torch.Tensor],
              index: int) -> Dict[str, torch.Tensor]:
    """Fuse one block's ``q``/``kv`` projections into ``qkv``."""
    if 'attn.q.weight' not in block or 'attn.kv.weight' not in block:
        raise KeyError(f'blocks.{index}: expected attn.q.weight and '
                       f'attn.kv.weight, found {sorted(block)}')
    q_w, kv_w = block['attn.q.weight'], block['attn.kv.weight']
    dims = q_w.shape[0]
    if kv_w.shape[0] != 2 * dims:
        raise ValueError(f'blocks.{index}: kv.weight has {kv_w.shape[0]} '
                         f'rows, expected 2 x {dims}')
    zeros = q_w.new_zeros(dims)
    if 'attn.q.bias' in block or 'attn.kv.bias' in block:
        bias = torch.cat([block['attn.q.bias'], block['attn.kv.bias']])
    elif 'attn.q_bias' in block or 'attn.v_bias' in block:
        # BEiT style: learnable q and v biases, k has none
        bias = torch.cat([block['attn.q_bias'], zeros, block['attn.v_bias']])
    else:
        bias = torch.cat([zeros, zeros, zeros])
    return {
        'attn.qkv.weight': torch.cat([q_w, kv_w], dim=0),
        'attn.qkv.bias': bias
    }


def convert_official(
    state_dict: Dict[str, torch.Tensor]
) -> Tuple['OrderedDict[str, torch.Tensor]', List[str]]:
    """Map official MaPeT keys to an mmpretrain ``ImageClassifier``.

    Args:
        state_dict (Dict[str, torch.Tensor]): Official weights.

    Returns:
        Tuple[OrderedDict, List[str]]: The converted weights and the
        dropped keys.

    Raises:
        KeyError: If any key cannot be mapped (named in the message).
    """
    out: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    blocks: Dict[int, Dict[str, torch.Tensor]] = {}
    dropped, unmapped = [], []
    for key, value in state_dict.items():
        name = key[len('module.'):] if key.startswith('module.') else key
        match = _BLOCK_RE.match(name)
        if name in _TOP_LEVEL:
            out[_TOP_LEVEL[name]] = value
        elif name in DROPPED_KEYS:
            dropped.append(key)
        elif match and (match.group(2) in _BLOCK
                        or match.group(2) in _ATTN_INPUTS):
            blocks.setdefault(int(match.group(1)), {})[match.group(2)] = value
        else:
            unmapped.append(key)
    if unmapped:
        raise KeyError(f'Unmapped keys in the official checkpoint: '
                       f'{unmapped}. This converter knows the BEiT/timm ViT '
                       'layout with separate q/kv projections.')
    if sorted(blocks) != list(range(len(blocks))):
        raise KeyError(f'Non-contiguous block indices: {sorted(blocks)}')
    for index in sorted(blocks):
        block = blocks[index]
        prefix = f'backbone.layers.{index}.'
        for name, value in block.items():
            if name in _BLOCK:
                out[prefix + _BLOCK[name]] = value
        for name, value in _fuse_qkv(block, index).items():
            out[prefix + name] = value
    return out, dropped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='official MaPeT checkpoint')
    parser.add_argument('dst', help='output mmpretrain checkpoint')
    args = parser.parse_args()

    from mapet.utils.checkpoint import atomic_save_checkpoint
    from mapet.utils import safe_torch_load
    checkpoint = safe_torch_load(args.src, map_location='cpu')
    for key in ('model', 'state_dict', 'module'):
        if isinstance(checkpoint, dict) and isinstance(
                checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    converted, dropped = convert_official(checkpoint)
    meta = dict(
        source=osp.basename(args.src),
        converter='official_mapet_to_mmpretrain',
        dropped=dropped)
    # atomic write + `<dst>.sha256` sidecar, as for training checkpoints
    atomic_save_checkpoint(dict(state_dict=converted, meta=meta), args.dst)
    print(f'converted {len(converted)} tensors (dropped {dropped}); '
          f'saved to {args.dst}')


if __name__ == '__main__':
    main()
