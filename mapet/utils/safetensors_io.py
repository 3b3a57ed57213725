"""Weights as ``.safetensors``: tensors only, nothing to unpickle.

Training checkpoints stay torch files (``.pth``): resuming needs the
optimizer, scheduler and message-hub state, which are nested Python
structures. Weights that leave a run (a stripped backbone, a converted
official checkpoint, a timm export) may be written as ``.safetensors`` by
giving the destination that suffix; the format holds named tensors and a
string-to-string header, so loading executes nothing and needs no
allow-list. mapet's ``meta`` (converter, source, dropped keys, dataset
classes) travels as JSON in the header under :data:`META_KEY`.

:func:`~mapet.utils.checkpoint.load_checkpoint_file` reads both formats
(the runner's ``load_from``, ``tools/test.py``, ``PretrainedLoadCheckHook``
and the converters use it); a ``.safetensors`` file comes back as
``{'state_dict': tensors, 'meta': {...}}``, the layout of our ``.pth``
files. mmengine's own ``init_cfg=dict(type='Pretrained')`` initialiser
reads torch files only: give it the ``.pth``.
"""
import json
import os
from typing import Any, Dict, Mapping, Optional

import torch

from .atomic import atomic_write, checksum_path, write_checksum

__all__ = [
    'SAFETENSORS_SUFFIX', 'META_KEY', 'is_safetensors', 'save_safetensors',
    'load_safetensors', 'save_weights'
]

SAFETENSORS_SUFFIX = '.safetensors'
#: Header entry holding mapet's ``meta`` dict as JSON.
META_KEY = 'mapet_meta'


def is_safetensors(filename: Any) -> bool:
    """Whether ``filename`` names a ``.safetensors`` file (by its suffix)."""
    return isinstance(filename, (str, os.PathLike)) and os.fspath(
        filename).endswith(SAFETENSORS_SUFFIX)


def _plain_tensors(
        state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """CPU, contiguous, one storage per tensor (safetensors' requirement)."""
    out, seen = {}, set()
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f'{key!r} is a {type(value).__name__}, not a '
                            'tensor: safetensors files hold tensors only.')
        tensor = value.detach().cpu().contiguous()
        ptr = tensor.untyped_storage().data_ptr()
        if tensor.numel() and ptr in seen:
            tensor = tensor.clone()
        seen.add(ptr)
        out[key] = tensor
    return out


def save_safetensors(state_dict: Mapping[str, torch.Tensor],
                     filename: str,
                     meta: Optional[dict] = None) -> None:
    """Write tensors (and ``meta`` as JSON) atomically, with a sidecar.

    Args:
        state_dict (Mapping[str, torch.Tensor]): The weights.
        filename (str): Destination (``.safetensors``).
        meta (dict, optional): JSON-serialisable metadata.
    """
    from safetensors.torch import save
    header = {'format': 'pt'}
    if meta is not None:
        header[META_KEY] = json.dumps(meta, sort_keys=True)
    data = save(_plain_tensors(state_dict), metadata=header)
    filename = os.fspath(filename)
    try:  # a stale sidecar must never vouch for the new content
        os.remove(checksum_path(filename))
    except FileNotFoundError:
        pass
    with atomic_write(filename, 'wb') as f:
        f.write(data)
    write_checksum(filename)


def load_safetensors(filename: str, map_location: Any = None) -> dict:
    """Read a ``.safetensors`` file as ``{'state_dict': ..., 'meta': ...}``.

    Args:
        filename (str): The file.
        map_location (str | torch.device, optional): Device of the tensors
            (CPU when None or a callable).

    Returns:
        dict: ``state_dict`` (name -> tensor) and, when the header has one,
        ``meta`` (the dict written by :func:`save_safetensors`).
    """
    from safetensors import safe_open
    with safe_open(os.fspath(filename), framework='pt', device='cpu') as f:
        header = f.metadata() or {}
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    if map_location is not None and not callable(map_location):
        tensors = {k: v.to(map_location) for k, v in tensors.items()}
    out: Dict[str, Any] = {'state_dict': tensors}
    if META_KEY in header:
        out['meta'] = json.loads(header[META_KEY])
    return out


def save_weights(state_dict: Mapping[str, torch.Tensor],
                 filename: str,
                 meta: Optional[dict] = None) -> str:
    """Save converted weights in the format the destination's suffix names.

    ``.safetensors``: :func:`save_safetensors`; anything else: a torch file
    ``{'state_dict': ..., 'meta': ...}`` (or the bare state dict when
    ``meta`` is None) through
    :func:`~mapet.utils.checkpoint.atomic_save_checkpoint`.

    Returns:
        str: ``'safetensors'`` or ``'torch'``.
    """
    if is_safetensors(filename):
        save_safetensors(state_dict, filename, meta)
        return 'safetensors'
    from .checkpoint import atomic_save_checkpoint
    payload = state_dict if meta is None else dict(
        state_dict=state_dict, meta=meta)
    atomic_save_checkpoint(payload, os.fspath(filename))
    return 'torch'
