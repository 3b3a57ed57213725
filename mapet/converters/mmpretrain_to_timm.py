"""Export an mmpretrain ``VisionTransformer`` / ``MaPeTViT`` model to timm.

Produces the key layout of ``timm.models.vision_transformer.
VisionTransformer``, loadable with ``strict=True``, and prints (and writes
to ``<dst stem>.json``) the exact ``timm.create_model(...)`` call that
builds the matching model. The input may be a pre-training, fine-tuning,
linear-probe or stripped checkpoint (keys with ``backbone.``), a bare
backbone state dict, or a ``.safetensors`` file; a ``.safetensors``
destination writes safetensors (what timm and the Hugging Face hub read
without unpickling), anything else a torch file of the bare state dict.

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
head.fc.* (a linear classifier)        head.*
mask_token (pre-training only)         dropped, reported
=====================================  ======================================

The three cases and their timm models (what the features are):

* fine-tuned (``ln2`` = BEiT's ``fc_norm``, average pooling, no final norm):
  ``global_pool='avg'`` (timm then puts the norm after pooling);
* linear probe (final norm ``ln1`` on every token, then our
  ``GlobalAveragePooling`` neck): ``global_pool='avg', fc_norm=False``;
* raw backbone (pre-training or stripped checkpoint, no classifier):
  ``num_classes=0`` and, by default, the linear-probe features
  (``global_pool='avg', fc_norm=False``; ``--global-pool token`` for the
  normalised CLS token). ``forward_features`` gives all normalised tokens.

Layer scale (``gamma1``/``gamma2``) needs ``init_values`` (any value: the
loaded ``ls*.gamma`` replace it). Every key must be mapped (or be a listed
drop); otherwise it fails::

    python tools/model_converters/mmpretrain_to_timm.py \\
        work_dirs/vit-b_ft/epoch_100.pth mapet_vit-b_ft.safetensors
"""
import argparse
import ast
import json
import os.path as osp
import re
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

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

#: timm model names of the paper's architectures: (embed_dim, depth,
#: num_heads, mlp_ratio, patch_size) -> name (img_size 224 by default).
TIMM_NAMES = {
    (192, 12, 3, 4.0, 16): 'vit_tiny_patch16_224',
    (384, 12, 6, 4.0, 16): 'vit_small_patch16_224',
    (768, 12, 12, 4.0, 16): 'vit_base_patch16_224',
    (1024, 24, 16, 4.0, 16): 'vit_large_patch16_224',
}
#: Builder whose defaults the explicit keyword arguments override.
GENERIC_NAME = 'vit_base_patch16_224'
#: Heads of mmpretrain's named architectures (for checkpoints whose
#: ``meta.cfg`` names one) and of the paper's sizes (head dim 64).
_HEADS_BY_DIMS = {192: 3, 384: 6, 768: 12, 1024: 16}


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


# -- the matching timm model -------------------------------------------------


def _literal(node: ast.AST) -> Any:
    """Evaluate literals and ``dict(...)`` calls only (no code runs)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
            and node.func.id == 'dict' and not node.args:
        return {kw.arg: _literal(kw.value) for kw in node.keywords}
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys,
                                                         node.values)}
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(v) for v in node.elts]
    return ast.literal_eval(node)


def model_cfg_from_meta(checkpoint: Any) -> Optional[dict]:
    """``model`` of the config text mmengine stores in ``meta.cfg``.

    Parsed, never executed: only literals and ``dict(...)`` are read.
    """
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    text = meta.get('cfg') if isinstance(meta, dict) else None
    if not isinstance(text, str):
        return None
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == 'model'
                for t in stmt.targets):
            try:
                model = _literal(stmt.value)
            except (ValueError, TypeError, SyntaxError):
                return None
            return model if isinstance(model, dict) else None
    return None


def _heads_from_cfg(model_cfg: Optional[dict]) -> Optional[int]:
    backbone = (model_cfg or {}).get('backbone') or {}
    arch = backbone.get('arch')
    if isinstance(arch, dict):
        return arch.get('num_heads')
    if isinstance(arch, str):
        from mmpretrain.models import VisionTransformer
        zoo = VisionTransformer.arch_zoo.get(arch.lower())
        return zoo['num_heads'] if zoo else None
    return None


def _pool_from_cfg(model_cfg: Optional[dict]) -> Optional[str]:
    backbone = (model_cfg or {}).get('backbone') or {}
    out_type = backbone.get('out_type')
    if out_type == 'cls_token':
        return 'token'
    if out_type == 'avg_featmap':
        return 'avg'
    neck = (model_cfg or {}).get('neck') or {}
    if out_type == 'featmap' and 'GlobalAveragePooling' in str(
            neck.get('type', '')):
        return 'avg'
    return None


def timm_model_args(timm_sd: Dict[str, torch.Tensor],
                    num_heads: Optional[int] = None,
                    global_pool: str = 'auto',
                    model_cfg: Optional[dict] = None
                    ) -> Tuple[str, Dict[str, Any], str, List[str]]:
    """``(model name, create_model kwargs, case, notes)`` for ``timm_sd``.

    Raises:
        ValueError: If timm's ViT cannot represent the model.
    """
    notes: List[str] = []
    if 'cls_token' not in timm_sd:
        raise ValueError('No cls_token: only ViTs with a class token are '
                         'supported.')
    dims = timm_sd['cls_token'].shape[-1]
    depth = len({k.split('.')[1] for k in timm_sd if k.startswith('blocks.')})
    mlp_ratio = timm_sd['blocks.0.mlp.fc1.weight'].shape[0] / dims
    patch = timm_sd['patch_embed.proj.weight'].shape[-1]
    num_patches = timm_sd['pos_embed'].shape[1] - 1
    grid = int(round(num_patches**0.5))
    if grid * grid != num_patches:
        raise ValueError(f'pos_embed has {num_patches} patch positions, '
                         'not a square grid.')
    img_size = grid * patch
    if num_heads is None:
        num_heads = _heads_from_cfg(model_cfg)
    if num_heads is None:
        num_heads = _HEADS_BY_DIMS.get(dims)
        if num_heads is None and dims % 64 == 0:
            num_heads = dims // 64
            notes.append(f'num_heads={num_heads} assumes head dim 64; pass '
                         '--num-heads if the model differs.')
        if num_heads is None:
            raise ValueError(f'Cannot infer the heads of a {dims}-dim ViT '
                             '(no meta.cfg in the checkpoint): pass '
                             '--num-heads.')
        if dims in _HEADS_BY_DIMS:
            notes.append(f'num_heads={num_heads}: the paper architecture of '
                         f'{dims} dims (no meta.cfg in the checkpoint).')
    has_norm, has_fc_norm = 'norm.weight' in timm_sd, 'fc_norm.weight' in \
        timm_sd
    if has_norm and has_fc_norm:
        raise ValueError('The model has both a final norm (ln1) and a norm '
                         'after pooling (ln2); timm applies one of them.')
    head = timm_sd.get('head.weight')
    num_classes = 0 if head is None else head.shape[0]

    name = TIMM_NAMES.get((dims, depth, num_heads, mlp_ratio, patch))
    kwargs: Dict[str, Any] = {}
    if name is None:
        name = GENERIC_NAME
        kwargs.update(
            patch_size=patch,
            embed_dim=dims,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio)
    if img_size != 224:
        kwargs['img_size'] = img_size
    kwargs['num_classes'] = num_classes
    if has_fc_norm:
        if global_pool not in ('auto', 'avg'):
            raise ValueError('The model pools with a norm after average '
                             f'pooling (ln2); --global-pool {global_pool} '
                             'does not apply.')
        pool = 'avg'
        kwargs['global_pool'] = 'avg'  # fc_norm follows (timm's default)
        case = 'fine-tuned' if num_classes else 'backbone'
    else:
        pool = global_pool
        if pool == 'auto':
            pool = _pool_from_cfg(model_cfg) or 'avg'
        kwargs['global_pool'] = pool
        if pool == 'avg':
            kwargs['fc_norm'] = False  # norm on every token, then pool
        if not has_norm:
            kwargs['final_norm'] = False
        case = 'linear-probe' if num_classes else 'backbone'
    if 'blocks.0.ls1.gamma' in timm_sd:
        kwargs['init_values'] = 0.1
    if 'blocks.0.attn.qkv.bias' not in timm_sd:
        kwargs['qkv_bias'] = False
    return name, kwargs, case, notes


def create_model_call(name: str, kwargs: Dict[str, Any]) -> str:
    """The ``timm.create_model(...)`` source line."""
    args = ''.join(f', {k}={v!r}' for k, v in kwargs.items())
    return f'timm.create_model({name!r}, pretrained=False{args})'


def load_lines(dst: str) -> List[str]:
    """Python lines that load ``dst`` into ``model`` with ``strict=True``."""
    path = osp.basename(dst)
    if dst.endswith('.safetensors'):
        return [
            'from safetensors.torch import load_file',
            f'model.load_state_dict(load_file({path!r}), strict=True)'
        ]
    return [
        'import torch', 'model.load_state_dict(torch.load('
        f'{path!r}, weights_only=True), strict=True)'
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='mmpretrain checkpoint (.pth or '
                        '.safetensors)')
    parser.add_argument(
        'dst', help='output timm weights (.safetensors recommended)')
    parser.add_argument(
        '--prefix', default='backbone.', help='backbone key prefix')
    head = parser.add_mutually_exclusive_group()
    head.add_argument(
        '--with-head',
        action='store_true',
        help='require and export a linear classifier head (head.fc); by '
        'default it is exported when present')
    head.add_argument(
        '--without-head',
        action='store_true',
        help='drop the classifier head (features only, num_classes=0)')
    parser.add_argument(
        '--global-pool',
        choices=['auto', 'avg', 'token'],
        default='auto',
        help='pooling of models without a norm after pooling: auto = from '
        'the checkpoint\'s meta.cfg, else avg (our linear probe)')
    parser.add_argument(
        '--num-heads',
        type=int,
        default=None,
        help='attention heads (default: meta.cfg, else head dim 64)')
    args = parser.parse_args()

    from mapet.utils.atomic import atomic_write_text
    from mapet.utils.checkpoint import load_checkpoint_file
    from mapet.utils.safetensors_io import is_safetensors, save_weights
    checkpoint = load_checkpoint_file(args.src, map_location='cpu')
    state_dict = checkpoint.get('state_dict', checkpoint)
    names = {k[len('module.'):] if k.startswith('module.') else k
             for k in state_dict}
    with_head = args.with_head or (not args.without_head
                                   and 'head.fc.weight' in names)
    converted, dropped = convert_to_timm(
        state_dict, prefix=args.prefix, with_head=with_head)
    name, kwargs, case, notes = timm_model_args(
        converted, args.num_heads, args.global_pool,
        model_cfg_from_meta(checkpoint))
    call = create_model_call(name, kwargs)
    lines = ['import timm', f'model = {call}'] + load_lines(args.dst)
    meta = dict(source=osp.basename(args.src), converter='mmpretrain_to_timm',
                dropped=dropped, create_model=call)
    # a torch destination stays a bare state dict (`torch.load` -> timm)
    save_weights(converted, args.dst,
                 meta if is_safetensors(args.dst) else None)
    report = dict(
        converter='mmpretrain_to_timm',
        source=osp.basename(args.src),
        weights=osp.basename(args.dst),
        case=case,
        model_name=name,
        kwargs=kwargs,
        create_model=call,
        load='\n'.join(lines),
        dropped=dropped,
        notes=notes)
    atomic_write_text(
        osp.splitext(args.dst)[0] + '.json',
        json.dumps(report, indent=2) + '\n')
    print(f'exported {len(converted)} tensors from '
          f'{osp.basename(args.src)} (dropped {dropped}) to {args.dst}')
    print(f'{case} model; load it in timm with strict=True:')
    for line in lines:
        print(f'    {line}')
    for note in notes:
        print(f'note: {note}')

