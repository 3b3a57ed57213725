"""Convert an official MaPeT checkpoint (fine-tuned or pre-training).

The official MaPeT code builds on BEiT/timm ViTs with separate ``q`` and
``kv`` projections (its two-stream attention takes queries from both streams
and keys/values from the content stream) and saves with timm's
``CheckpointSaver``. This script maps its weights onto our models:

* fine-tuned checkpoints -> an mmpretrain ``ImageClassifier``
  (``VisionTransformer`` backbone with fused ``qkv``, ``LinearClsHead``),
  evaluable with ``tools/test.py`` and our fine-tuning configs;
* pre-training checkpoints -> our ``MaPeT`` model (``MaPeTViT`` backbone
  with ``mask_token``, ``VisualTokenHead``), loadable by the pre-training
  configs and, through ``prefix='backbone.'``, by every fine-tuning, linear
  probe and segmentation config.

What is read (``torch.load(weights_only=True)``, mapet's allow-list plus
exactly ``argparse.Namespace``; any other pickled type is refused, named,
and nothing in the file is executed):

* timm ``CheckpointSaver``: ``{'epoch', 'arch', 'state_dict', 'optimizer',
  'version', 'args', 'amp_scaler', 'metric'}`` (``args`` an
  ``argparse.Namespace``; ``state_dict_ema`` with ``--ema``);
* BEiT/DeiT ``save_model``: ``{'model', 'optimizer', 'epoch', 'scaler',
  'args'}`` (``model_ema`` with ``--ema``);
* a bare state dict, or a ``.safetensors`` file (e.g. one written by
  ``mmpretrain_to_timm.py``: the fused timm ``qkv`` layout is read too).

Only the weights are converted; optimizer and scaler states are dropped.

=====================================  ======================================
official                               mmpretrain
=====================================  ======================================
cls_token, pos_embed                   backbone.cls_token, backbone.pos_embed
patch_embed.proj.*                     backbone.patch_embed.projection.*
blocks.i.norm1.* / norm2.*             backbone.layers.i.ln1.* / ln2.*
blocks.i.attn.q.weight + kv.weight     backbone.layers.i.attn.qkv.weight
(or timm's fused attn.qkv.weight)
blocks.i.attn.q.bias + kv.bias, or     backbone.layers.i.attn.qkv.bias
q_bias + v_bias (k bias = 0), or none  (zeros where absent)
blocks.i.attn.proj.*                   backbone.layers.i.attn.proj.*
blocks.i.gamma_1 / ls1.gamma           backbone.layers.i.attn.gamma1.weight
blocks.i.gamma_2 / ls2.gamma           backbone.layers.i.ffn.gamma2.weight
blocks.i.mlp.fc1.* / fc2.*             backbone.layers.i.ffn.layers.0.0.* /
                                       ffn.layers.1.*
norm.* (final norm)                    backbone.ln1.*
fc_norm.* (after average pooling)      backbone.ln2.*
head.* (fine-tuned classifier)         head.fc.*
mask_positional_token (pre-training)   backbone.mask_token
decoder.* (pre-training token head)    head.cls_head.*
mask_token                             dropped, reported
=====================================  ======================================

Every key must be mapped (or be a listed drop); otherwise the conversion
fails and names the leftovers. Next to the weights it writes
``<dst stem>.json`` (what was converted, the official run's saved
``args``, and the values that reproduce the run) and ``<dst stem>_config.py``
(a config inheriting ours with those values)::

    python tools/model_converters/official_mapet_to_mmpretrain.py \\
        mapet_vitb_pretrain.pth mapet_vit-b_pretrain_mmpretrain.pth

**Cutting point.** The official ``least_number`` counts the CLS token and
its model default is 50; the official ``train.py`` never passes
``--least_number`` to the model, so every official run used 49 context
patches whatever ``args.least_number`` says. The written config therefore
sets ``cutting_point = 50 - 1 = 49`` (our ``c`` counts patches only) and
the JSON records the ignored ``args.least_number``.

A ``.safetensors`` destination writes safetensors (meta in its header);
anything else a torch file ``{'state_dict', 'meta'}``.
"""
import argparse
import json
import math
import os.path as osp
import re
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

import torch

#: Keys of the official checkpoints that have no place in our models.
DROPPED_KEYS = ('mask_token', )

#: ``least_number`` default of the official pre-training model. The official
#: train.py never passes ``--least_number`` to it.
OFFICIAL_MODEL_LEAST_NUMBER = 50

#: Containers whose entry holds the model weights, in lookup order.
WEIGHT_ENTRIES = ('state_dict', 'model', 'module')
EMA_ENTRIES = ('state_dict_ema', 'model_ema')

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
    'mask_positional_token': 'backbone.mask_token',
    'decoder.weight': 'head.cls_head.weight',
    'decoder.bias': 'head.cls_head.bias',
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
                'attn.kv.bias', 'attn.q_bias', 'attn.v_bias',
                'attn.qkv.weight', 'attn.qkv.bias')

_BLOCK_RE = re.compile(r'^blocks\.(\d+)\.(.+)$')

#: (embed_dims, num_layers, feedforward_channels) -> (MaPeTViT arch,
#: VisionTransformer arch, num_heads, size tag of our config names).
KNOWN_ARCHS = {
    (192, 12, 768): ('deit-t', 'deit-tiny', 3, 't'),
    (384, 12, 1536): ('deit-s', 'deit-small', 6, 's'),
    (768, 12, 3072): ('deit-b', 'deit-base', 12, 'b'),
    (1024, 24, 4096): ('large', 'large', 16, 'l'),
}
#: Our pre-training configs (k-CLIP targets) per size tag.
PRETRAIN_CONFIGS = {
    't': 'mapet/mapet_vit-t_300e_in1k.py',
    's': 'mapet/mapet_vit-s_300e_in1k.py',
    'b': 'mapet/mapet_vit-b_300e_in1k.py',
    'l': 'mapet_large/mapet_vit-l_300e_in1k.py',
}
#: Our fine-tuning configs (paper Table 9) per size tag.
FINETUNE_CONFIGS = {
    't': 'benchmarks/classification/vit-t-p16_8xb128-amp-coslr-300e_in1k.py',
    's': 'benchmarks/classification/vit-s-p16_8xb128-amp-coslr-200e_in1k.py',
    'b': 'benchmarks/classification/vit-b-p16_8xb128-amp-coslr-100e_in1k.py',
}


def _fuse_qkv(block: Dict[str, torch.Tensor],
              index: int) -> Dict[str, torch.Tensor]:
    """Fuse one block's ``q``/``kv`` projections into ``qkv``."""
    if 'attn.qkv.weight' in block:  # timm layout: already fused
        weight = block['attn.qkv.weight']
        bias = block.get('attn.qkv.bias',
                         weight.new_zeros(weight.shape[0]))
        return {'attn.qkv.weight': weight, 'attn.qkv.bias': bias}
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


def checkpoint_kind(state_dict: Dict[str, torch.Tensor]) -> str:
    """``'pretrain'``, ``'finetune'`` or ``'backbone'`` (no head at all).

    Raises:
        KeyError: If the weights mix a pre-training and a classifier head,
            or hold only part of the pre-training model.
    """
    names = {k[len('module.'):] if k.startswith('module.') else k
             for k in state_dict}
    pretrain = {'mask_positional_token', 'decoder.weight'} & names
    if pretrain and 'head.weight' in names:
        raise KeyError('The checkpoint has both a pre-training head '
                       '(`decoder`) and a classifier head (`head`); '
                       'expected one official model.')
    if pretrain:
        missing = {'mask_positional_token', 'decoder.weight'} - names
        if missing:
            raise KeyError(f'Incomplete official pre-training checkpoint: '
                           f'{sorted(pretrain)} present, {sorted(missing)} '
                           'missing.')
        return 'pretrain'
    return 'finetune' if 'head.weight' in names else 'backbone'


def convert_official(
    state_dict: Dict[str, torch.Tensor]
) -> Tuple['OrderedDict[str, torch.Tensor]', List[str]]:
    """Map official MaPeT keys to our ``ImageClassifier`` / ``MaPeT`` keys.

    Args:
        state_dict (Dict[str, torch.Tensor]): Official weights.

    Returns:
        Tuple[OrderedDict, List[str]]: The converted weights and the
        dropped keys.

    Raises:
        KeyError: If any key cannot be mapped (named in the message).
    """
    checkpoint_kind(state_dict)
    out: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    blocks: Dict[int, Dict[str, torch.Tensor]] = {}
    dropped, unmapped = [], []
    for key, value in state_dict.items():
        name = key[len('module.'):] if key.startswith('module.') else key
        match = _BLOCK_RE.match(name)
        if name in _TOP_LEVEL:
            if name == 'mask_positional_token':
                value = value.reshape(1, 1, -1)
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
                       'layout with separate q/kv projections (or timm\'s '
                       'fused qkv), `mask_positional_token` and `decoder`.')
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


# -- reading the official file -------------------------------------------


def load_official(path: str) -> Any:
    """Load an official checkpoint safely (allow-list + argparse.Namespace).

    Raises:
        UnsafeCheckpointError: If it pickles any other type (named).
    """
    from mapet.utils.checkpoint import load_checkpoint_file
    return load_checkpoint_file(
        path, map_location='cpu', extra_safe_globals=[argparse.Namespace])


def split_container(checkpoint: Any, ema: bool = False
                    ) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any], str]:
    """The weights, the rest of the container and its layout name.

    Args:
        checkpoint: What :func:`load_official` returned.
        ema (bool): Take the EMA weights (``state_dict_ema``/``model_ema``).

    Returns:
        tuple: ``(weights, other top-level entries, container name)``.
    """
    if not isinstance(checkpoint, dict):
        raise TypeError(f'Expected a dict checkpoint, got '
                        f'{type(checkpoint).__name__}.')
    entries = EMA_ENTRIES if ema else WEIGHT_ENTRIES
    for entry in entries:
        if isinstance(checkpoint.get(entry), dict):
            rest = {k: v for k, v in checkpoint.items() if k != entry}
            if entry == 'state_dict' and 'meta' in rest:
                container = 'mmengine / mapet checkpoint'
            elif entry in ('state_dict', 'state_dict_ema'):
                container = 'timm CheckpointSaver'
            else:
                container = 'BEiT/DeiT save_model'
            return checkpoint[entry], rest, container
    if ema:
        raise KeyError(f'--ema: the checkpoint has no {EMA_ENTRIES} entry; '
                       f'top-level keys: {sorted(checkpoint)}')
    if checkpoint and all(
            isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return checkpoint, {}, 'bare state dict'
    raise KeyError(f'No weights entry ({WEIGHT_ENTRIES}) in the checkpoint; '
                   f'top-level keys: {sorted(checkpoint)}')


def _jsonable(value: Any) -> Any:
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist() if value.numel() == 1 else \
            f'tensor{tuple(value.shape)}'
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _arg(args: Dict[str, Any], *names: str) -> Any:
    for name in names:
        if args.get(name) is not None:
            return args[name]
    return None


# -- what reproduces the run -----------------------------------------------


def reproduce_values(converted: Dict[str, torch.Tensor], kind: str,
                     args: Dict[str, Any],
                     num_heads: Optional[int] = None
                     ) -> Tuple[Dict[str, Any], List[str]]:
    """Config values of the official run, from its weights and ``args``.

    Returns:
        Tuple[dict, List[str]]: The values and human-readable notes.
    """
    notes: List[str] = []
    dims = converted['backbone.cls_token'].shape[-1]
    num_layers = len({
        k.split('.')[2]
        for k in converted if k.startswith('backbone.layers.')
    })
    ffn = converted['backbone.layers.0.ffn.layers.0.0.weight'].shape[0]
    patch = converted['backbone.patch_embed.projection.weight'].shape[-1]
    num_patches = converted['backbone.pos_embed'].shape[1] - 1
    grid = math.isqrt(num_patches)
    if grid * grid != num_patches:
        raise ValueError(f'pos_embed has {num_patches} patch positions, '
                         'not a square grid.')
    img_size = grid * patch
    arg_size = _arg(args, 'img_size', 'input_size')
    if isinstance(arg_size, (list, tuple)):
        arg_size = arg_size[-1]
    if arg_size is not None and arg_size != img_size:
        notes.append(f'args give image size {arg_size} but pos_embed holds '
                     f'a {grid}x{grid} grid of {patch} px patches: '
                     f'img_size={img_size} (the weights) is used.')
    known = KNOWN_ARCHS.get((dims, num_layers, ffn))
    if num_heads is None:
        if known is not None:
            num_heads = known[2]
        elif dims % 64 == 0:
            num_heads = dims // 64
            notes.append(f'num_heads={num_heads} assumes head dim 64 (all '
                         'MaPeT architectures); pass --num-heads otherwise.')
        else:
            raise ValueError(
                f'Cannot infer the number of heads of a {dims}-dim ViT; '
                'pass --num-heads.')
    if known is not None and known[2] == num_heads:
        arch_mapet, arch_vit, _, tag = known
    else:
        arch_mapet = arch_vit = dict(
            embed_dims=dims,
            num_layers=num_layers,
            num_heads=num_heads,
            feedforward_channels=ffn)
        tag = None
    has_ls = 'backbone.layers.0.attn.gamma1.weight' in converted
    values: Dict[str, Any] = dict(
        embed_dims=dims,
        num_layers=num_layers,
        num_heads=num_heads,
        feedforward_channels=ffn,
        patch_size=patch,
        img_size=img_size,
        layer_scale_init_value=float(
            _arg(args, 'layer_scale_init_value', 'layer_scale') or 0.1)
        if has_ls else 0.,
    )
    drop_path = _arg(args, 'drop_path', 'drop_path_rate')
    if drop_path is not None:
        values['drop_path_rate'] = float(drop_path)
    if kind == 'pretrain':
        values.update(
            arch=arch_mapet,
            size_tag=tag,
            mode='mapet',
            cutting_point=OFFICIAL_MODEL_LEAST_NUMBER - 1,
            vocab_size=converted['head.cls_head.weight'].shape[0],
            global_pool=None)
        saved = args.get('least_number')
        notes.append(
            f'cutting_point={OFFICIAL_MODEL_LEAST_NUMBER - 1}: the official '
            f'least_number counts the CLS token and the official model\'s '
            f'default {OFFICIAL_MODEL_LEAST_NUMBER} is what trained (the '
            'official train.py never passes --least_number to the model)'
            + (f'; the saved args.least_number={saved} was not used.'
               if saved is not None and saved != OFFICIAL_MODEL_LEAST_NUMBER
               else '.'))
        if num_patches - values['cutting_point'] < 1:
            raise ValueError(f'{num_patches} patches leave no target for '
                             f'cutting_point={values["cutting_point"]}.')
    else:
        has_fc_norm = 'backbone.ln2.weight' in converted
        pool = 'avg' if has_fc_norm else 'token'
        arg_pool = _arg(args, 'global_pool', 'gp')
        if isinstance(arg_pool, bool):  # BEiT's --use_mean_pooling
            arg_pool = 'avg' if arg_pool else 'token'
        if arg_pool is None and 'use_mean_pooling' in args:
            arg_pool = 'avg' if args['use_mean_pooling'] else 'token'
        if arg_pool not in (None, pool):
            notes.append(f'args say global pool {arg_pool!r} but the weights '
                         f'{"have" if has_fc_norm else "lack"} fc_norm: '
                         f'{pool!r} is used.')
        values.update(
            arch=arch_vit,
            size_tag=tag,
            global_pool=pool,
            out_type='avg_featmap' if pool == 'avg' else 'cls_token',
            final_norm='backbone.ln1.weight' in converted)
        if kind == 'finetune':
            values['num_classes'] = converted['head.fc.weight'].shape[0]
    return values, notes


def _py(value: Any) -> str:
    return repr(value)


def config_snippet(values: Dict[str, Any], kind: str, source: str,
                   weights: str) -> str:
    """A config inheriting ours that rebuilds the official model."""
    tag = values.get('size_tag') or 'b'
    backbone = dict(
        arch=values['arch'],
        img_size=values['img_size'],
        patch_size=values['patch_size'],
        layer_scale_init_value=values['layer_scale_init_value'])
    if isinstance(values['arch'], dict):  # replaces the base's arch name
        backbone['arch'] = dict(_delete_=True, **values['arch'])
    if 'drop_path_rate' in values:
        backbone['drop_path_rate'] = values['drop_path_rate']
    header = [
        f'# Rebuilds the official MaPeT model of {source!r} (written by',
        '# tools/model_converters/official_mapet_to_mmpretrain.py; the',
        f'# converted weights are {weights!r}).',
    ]
    if kind == 'pretrain':
        base = PRETRAIN_CONFIGS[tag]
        backbone.update(
            mode='mapet', cutting_point=values['cutting_point'])
        header += [
            '# cutting_point = official least_number - 1: the official',
            '# least_number counts CLS, and its model default (50) is what',
            '# every official run used. k-CLIP base config; use the',
            '# `_vqkd_` one for VQ-KD targets.',
        ]
        model = dict(
            backbone=backbone,
            head=dict(
                embed_dims=values['embed_dims'],
                num_embed=values['vocab_size']))
        extra = ''
    else:
        base = FINETUNE_CONFIGS.get(tag, FINETUNE_CONFIGS['b'])
        backbone.update(
            out_type=values['out_type'],
            final_norm=values['final_norm'],
            init_cfg=None)
        num_classes = values.get('num_classes', 1000)
        model = dict(
            backbone=backbone,
            head=dict(in_channels=values['embed_dims'],
                      num_classes=num_classes))
        header += [
            f'# Global pool: {values["global_pool"]}. Evaluate with',
            f'#   python tools/test.py THIS_FILE {weights}',
        ]
        # The base's PretrainedLoadCheckHook vets an init_cfg load; the
        # weights here come in whole through load_from / tools/test.py.
        extra = (f'data_preprocessor = dict(num_classes={num_classes})\n'
                 'custom_hooks = []\n')
    lines = header + [
        f'_base_ = {("mapet::" + base)!r}', '',
        f'model = {_format(model)}', extra
    ]
    return '\n'.join(lines).rstrip() + '\n'


def _format(value: Any, indent: int = 0) -> str:
    """``dict(...)`` literal, one key per line."""
    if isinstance(value, dict):
        pad = ' ' * (indent + 4)
        items = [f'{pad}{k}={_format(v, indent + 4)}'
                 for k, v in value.items()]
        return 'dict(\n' + ',\n'.join(items) + ')'
    return _py(value)


def imagenet_classes() -> List[str]:
    from mmpretrain.datasets.categories import IMAGENET_CATEGORIES
    return list(IMAGENET_CATEGORIES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='official MaPeT checkpoint')
    parser.add_argument(
        'dst', help='output (.pth: torch file; .safetensors: safetensors)')
    parser.add_argument(
        '--ema', action='store_true', help='convert the EMA weights')
    parser.add_argument(
        '--num-heads',
        type=int,
        default=None,
        help='attention heads (default: from the architecture; head dim 64)')
    parser.add_argument(
        '--classes',
        choices=['auto', 'imagenet', 'none'],
        default='auto',
        help='class names stored as meta.dataset_meta for a fine-tuned '
        'model: auto = ImageNet-1k names when the head has 1000 outputs')
    args = parser.parse_args()

    from mapet.utils.atomic import atomic_write_text, sha256_file
    from mapet.utils.safetensors_io import save_weights
    checkpoint = load_official(args.src)
    weights, rest, container = split_container(checkpoint, ema=args.ema)
    kind = checkpoint_kind(weights)
    converted, dropped = convert_official(weights)
    official_args = _jsonable(rest.get('args')) or {}
    if not isinstance(official_args, dict):
        official_args = {'args': official_args}
    values, notes = reproduce_values(converted, kind, official_args,
                                     args.num_heads)

    meta: Dict[str, Any] = dict(
        source=osp.basename(args.src),
        converter='official_mapet_to_mmpretrain',
        kind=kind,
        dropped=dropped)
    if kind == 'finetune':
        num_classes = values['num_classes']
        if args.classes == 'imagenet' or (args.classes == 'auto'
                                          and num_classes == 1000):
            if num_classes != 1000:
                raise ValueError(f'--classes imagenet: the head has '
                                 f'{num_classes} outputs, not 1000.')
            meta['dataset_meta'] = dict(classes=imagenet_classes())
            notes.append('meta.dataset_meta.classes = the ImageNet-1k class '
                         "names (mmpretrain's order, = timm's).")
    save_weights(converted, args.dst, meta)

    stem = osp.splitext(args.dst)[0]
    config_path = stem + '_config.py'
    report = dict(
        converter='official_mapet_to_mmpretrain',
        source=osp.basename(args.src),
        source_sha256=sha256_file(args.src),
        weights=osp.basename(args.dst),
        kind=kind,
        dropped=dropped,
        official=dict(
            container=container,
            **{
                k: _jsonable(rest.get(k))
                for k in ('epoch', 'arch', 'version', 'metric')
                if k in rest
            },
            args=official_args),
        reproduce={k: v
                   for k, v in values.items() if k != 'size_tag'},
        config=osp.basename(config_path),
        notes=notes)
    atomic_write_text(stem + '.json',
                      json.dumps(report, indent=2, sort_keys=False) + '\n')
    atomic_write_text(
        config_path,
        config_snippet(values, kind, osp.basename(args.src),
                       osp.basename(args.dst)))
    print(f'converted {len(converted)} tensors of an official {kind} '
          f'checkpoint ({container}; dropped {dropped}); saved to '
          f'{args.dst}')
    print(f'reproducing config: {config_path} (values in {stem}.json)')
    for note in notes:
        print(f'note: {note}')

