"""Strip a pre-training checkpoint down to its backbone weights.

The output keeps the ``backbone.`` prefix, so the same
``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')``
loads either the full or the stripped file, in mmpretrain (fine-tuning,
linear probe) and in mmseg (``mmpretrain.MaPeTViT`` / ``VisionTransformer``
backbones). Optimizer state, message hub and every non-backbone module are
dropped; every key must either be kept or belong to a module listed in
``--drop`` (fails otherwise, naming the unknown keys)::

    python tools/model_converters/strip_pretrain_checkpoint.py \\
        work_dirs/mapet_vit-b_300e_in1k/epoch_300.pth mapet_vit-b_backbone.pth

A ``.safetensors`` destination writes safetensors (no pickle; ``meta`` as
JSON in its header): for sharing the weights, ``load_from`` and
``tools/test.py``. mmengine's ``Pretrained`` initialiser (``init_cfg``)
reads torch files only, so keep a ``.pth`` for fine-tuning configs.
"""
import argparse
import os.path as osp
from collections import OrderedDict
from typing import Dict, Sequence, Tuple

import torch

#: Modules of our pre-training algorithms that fine-tuning never uses.
DEFAULT_DROP = ('head.', 'neck.', 'target_generator.', 'teacher.',
                'data_preprocessor.')


def state_dict_of(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """Return the model weights of an mmengine (or plain) checkpoint.

    Args:
        checkpoint (dict): A loaded checkpoint.

    Returns:
        Dict[str, torch.Tensor]: Its ``state_dict`` (or itself when it is a
        plain mapping of tensors).
    """
    for key in ('state_dict', 'model'):
        if key in checkpoint and isinstance(checkpoint[key], dict):
            return checkpoint[key]
    if all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return checkpoint
    raise KeyError('No `state_dict` (or `model`) entry in the checkpoint; '
                   f'top-level keys: {sorted(checkpoint)}')


def strip_to_backbone(
    state_dict: Dict[str, torch.Tensor],
    prefix: str = 'backbone.',
    drop: Sequence[str] = DEFAULT_DROP
) -> Tuple['OrderedDict[str, torch.Tensor]', Dict[str, int]]:
    """Keep the ``prefix`` weights; drop the listed modules; fail otherwise.

    Args:
        state_dict (Dict[str, torch.Tensor]): Full model weights.
        prefix (str): Prefix of the backbone. Defaults to ``'backbone.'``.
        drop (Sequence[str]): Prefixes that may be dropped.

    Returns:
        Tuple[OrderedDict, Dict[str, int]]: The backbone weights (prefix
        kept) and, per dropped prefix, how many tensors were dropped.

    Raises:
        KeyError: If no key has ``prefix`` or some key is neither kept nor
            dropped.
    """
    kept: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    dropped = {p: 0 for p in drop}
    unknown = []
    for key, value in state_dict.items():
        name = key[len('module.'):] if key.startswith('module.') else key
        if name.startswith(prefix):
            kept[name] = value
            continue
        owner = next((p for p in drop if name.startswith(p)), None)
        if owner is None:
            unknown.append(key)
        else:
            dropped[owner] += 1
    if unknown:
        raise KeyError(f'Keys neither in the backbone ({prefix!r}) nor in a '
                       f'dropped module {tuple(drop)}: {unknown}. Pass them '
                       'to --drop if they are not part of the backbone.')
    if not kept:
        raise KeyError(f'No key starts with {prefix!r}: is this a '
                       'pre-training checkpoint of this toolbox?')
    return kept, {p: n for p, n in dropped.items() if n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='pre-training checkpoint')
    parser.add_argument(
        'dst', help='output backbone checkpoint (.pth or .safetensors)')
    parser.add_argument(
        '--prefix', default='backbone.', help='backbone key prefix')
    parser.add_argument(
        '--drop',
        nargs='+',
        default=list(DEFAULT_DROP),
        help='key prefixes that may be dropped')
    args = parser.parse_args()

    from mapet.utils.checkpoint import load_checkpoint_file
    from mapet.utils.safetensors_io import save_weights
    checkpoint = load_checkpoint_file(args.src, map_location='cpu')
    kept, dropped = strip_to_backbone(
        state_dict_of(checkpoint), prefix=args.prefix, drop=args.drop)
    meta = dict(
        source=osp.basename(args.src),
        converter='strip_pretrain_checkpoint',
        dropped=dropped)
    # atomic write + `<dst>.sha256` sidecar, as for training checkpoints
    save_weights(kept, args.dst, meta)
    print(f'kept {len(kept)} backbone tensors, dropped {dropped}; '
          f'saved to {args.dst}')

