"""Safe checkpoint loading for MMEngine runs (``weights_only=True`` only).

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``: only
tensors, primitive containers and explicitly allow-listed globals can be
unpickled, so a checkpoint cannot execute code. The installed mmengine wraps
that in ``mmengine.runner.checkpoint._safe_torch_load``, which *silently
falls back to unrestricted unpickling* (``weights_only=False``) on any
failure, and whose allow-list contains ``builtins.getattr`` (enough to reach
arbitrary callables). Importing :mod:`mapet` calls :func:`activate`, which:

1. **Saves message-hub state as data.** MMEngine's ``HistoryBuffer``
   pickles its class-level ``_statistics_methods`` (function references,
   reconstructed through ``builtins.getattr``). We replace its
   ``__getstate__`` so checkpoints carry only ``max_length`` and the two
   numpy history arrays; ``__setstate__`` already restores the default
   methods, and custom ones are class-level registrations that come back
   when their module is imported.
2. **Allow-lists a narrow set of types** with
   :func:`torch.serialization.add_safe_globals` (see :func:`safe_globals`):
   ``HistoryBuffer``, numpy's array/scalar reconstructors, ``numpy.dtype``
   and the *numeric/bool* numpy dtype classes. No generic callable
   (``getattr``, ``eval``, ``functools.partial``...), no object dtype.
   Registering process-wide (not only inside our loader) also makes a plain
   ``torch.load(path)`` and mmengine's URL loader accept our checkpoints.
3. **Replaces mmengine's loaders without fallback**: the local-path scheme
   of :class:`mmengine.runner.CheckpointLoader` (public
   ``register_scheme(..., force=True)``; used by ``load_from``, ``--resume``,
   ``init_cfg=dict(type='Pretrained')``, ``tools/test.py``) and the module
   function ``_safe_torch_load`` that mmengine's other schemes (``s3://``,
   ``pavi://``, ``open-mmlab://``...) call. Both load with
   ``weights_only=True`` and raise :class:`UnsafeCheckpointError` naming the
   offending type when the file needs anything else. Nothing in the file is
   executed in that case: the restricted unpickler stops at the first
   unknown global.

To load a checkpoint you trust that carries other types, either add exactly
those types with ``torch.serialization.add_safe_globals([...])`` in a module
listed in ``custom_imports``, or convert it once yourself (``torch.load(...,
weights_only=False)`` then ``torch.save({'state_dict': ...})``).
"""
import os
import os.path as osp
import pickle
import re
from typing import IO, Any, Callable, List, Optional, Union

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer

__all__ = [
    'UnsafeCheckpointError', 'safe_globals', 'safe_torch_load',
    'load_from_local', 'activate', 'is_active'
]

# The numpy dtype classes a checkpoint may contain (dtypes are rebuilt with
# ``numpy.dtype(...)`` then ``__setstate__``, which torch only allows when
# the dtype's class is allow-listed). Object/void/str dtypes are excluded on
# purpose: they would let arbitrary pickled objects back in.
_NUMPY_DTYPE_NAMES = (
    'bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32',
    'uint64', 'float16', 'float32', 'float64', 'longdouble', 'complex64',
    'complex128', 'clongdouble', 'intc', 'uintc', 'longlong', 'ulonglong')


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint needs types outside the ``weights_only`` allow-list.

    Deliberately not a :class:`pickle.UnpicklingError`: code that catches
    that (as mmengine's loader does) must not turn the refusal into an
    unrestricted load.
    """


def _numpy_core():
    # numpy 2 renamed numpy.core to numpy._core; pickles name the new one.
    return getattr(np, '_core', None) or np.core


def safe_globals() -> List[Callable]:
    """Return mapet's allow-list for ``torch.load(weights_only=True)``.

    Returns:
        list: ``HistoryBuffer``, ``numpy.ndarray``, ``numpy.dtype``, numpy's
        ``_reconstruct``/``scalar`` pickle helpers and the numeric/bool numpy
        dtype classes.
    """
    core = _numpy_core()
    allow: List[Callable] = [
        HistoryBuffer,
        np.ndarray,
        np.dtype,
        core.multiarray._reconstruct,
        core.multiarray.scalar,
    ]
    for name in _NUMPY_DTYPE_NAMES:
        dtype_cls = type(np.dtype(name))
        if dtype_cls not in allow:
            allow.append(dtype_cls)
    return allow


def _offending_type(message: str) -> str:
    """Extract the refused type from torch's weights-only error message."""
    patterns = (
        r'GLOBAL ([\w.]+) was not an allowed global',
        r'Unsupported global: GLOBAL ([\w.]+)',
        r"but got <class '([^']+)'>",
        r'(?:Trying to|Unsupported).*?([\w.]+\.[A-Za-z_]\w*)',
    )
    for pattern in patterns:
        match = re.search(pattern, message)
        if match:
            return match.group(1)
    return 'unknown (see the torch error below)'


def _torch_reason(message: str) -> str:
    """The informative line of torch's (long, generic) error message."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if 'WeightsUnpickler error' in line:
            return line
    return lines[-1] if lines else '(no message)'


def _describe(file: Union[str, os.PathLike, IO]) -> str:
    if isinstance(file, (str, os.PathLike)):
        return os.fspath(file)
    return getattr(file, 'name', repr(file))


def safe_torch_load(file: Union[str, os.PathLike, IO],
                    map_location: Optional[Any] = None,
                    weights_only: Optional[bool] = None) -> Any:
    """Load with ``weights_only=True`` and mapet's allow-list; no fallback.

    Drop-in replacement for ``mmengine.runner.checkpoint._safe_torch_load``
    (same signature).

    Args:
        file (str | PathLike | IO): Checkpoint path or file object.
        map_location (optional): Same as :func:`torch.load`.
        weights_only (bool, optional): ``None`` or ``True`` load safely. An
            explicit ``False`` from a caller is honoured (that caller asked
            for unrestricted unpickling in its own code); mmengine never
            passes it. Defaults to None.

    Returns:
        Any: The loaded object.

    Raises:
        UnsafeCheckpointError: If the file contains a type outside the
            allow-list; the message names it.
    """
    if weights_only is False:
        return torch.load(file, map_location=map_location, weights_only=False)
    try:
        # Not the `safe_globals` context manager: its exit *removes* the
        # globals, also the process-wide registration made by activate().
        torch.serialization.add_safe_globals(safe_globals())
        return torch.load(file, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        message = str(e)
        type_name = _offending_type(message)
        hint = ''
        if type_name.rpartition('.')[2] == 'getattr':
            hint = (' (checkpoints written by mmengine without `import mapet` '
                    'pickle HistoryBuffer statistics methods through '
                    'builtins.getattr, a generic callable we never allow)')
        raise UnsafeCheckpointError(
            f'Refusing to load checkpoint {_describe(file)!r}: it contains a '
            f'pickled object of type {type_name!r}{hint}, which is not in '
            "mapet's weights_only allow-list, and mapet never falls back to "
            'unrestricted unpickling (it can execute arbitrary code). If you '
            'trust this file, either allow-list exactly that type with '
            '`torch.serialization.add_safe_globals([...])` in a module listed '
            'in `custom_imports`, or re-save only its tensors once: '
            "`ckpt = torch.load(path, weights_only=False); torch.save({'state_"
            "dict': ckpt['state_dict']}, new_path)`.\nTorch said: "
            f'{_torch_reason(message)}') from None


def load_from_local(filename: str, map_location: Optional[Any] = None) -> Any:
    """Local-path scheme for :class:`mmengine.runner.CheckpointLoader`.

    Args:
        filename (str): Checkpoint path (``~`` is expanded).
        map_location (optional): Same as :func:`torch.load`.

    Returns:
        Any: The loaded checkpoint.

    Raises:
        FileNotFoundError: If the file does not exist.
        UnsafeCheckpointError: See :func:`safe_torch_load`.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return safe_torch_load(filename, map_location=map_location)


def _history_buffer_getstate(self: HistoryBuffer) -> dict:
    """Pickle only the data of a ``HistoryBuffer`` (no function refs).

    Unlike mmengine's version it also does not mutate ``self.__dict__``.
    """
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    return state


_ACTIVE = False
#: mmengine's own ``HistoryBuffer.__getstate__`` (kept for tests/debugging).
MMENGINE_HISTORY_BUFFER_GETSTATE = HistoryBuffer.__getstate__


def is_active() -> bool:
    """Whether :func:`activate` has run in this process."""
    return _ACTIVE


def activate() -> None:
    """Install safe checkpoint saving/loading (idempotent).

    Called by ``import mapet``; see the module docstring for what changes.
    """
    global _ACTIVE
    if _ACTIVE:
        return
    from mmengine.runner import checkpoint as mm_ckpt
    from mmengine.runner.checkpoint import CheckpointLoader

    HistoryBuffer.__getstate__ = _history_buffer_getstate
    torch.serialization.add_safe_globals(safe_globals())
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_from_local, force=True)
    # mmengine's other schemes call this module function by its global name.
    mm_ckpt._safe_torch_load = safe_torch_load
    # Its allow-list contains builtins.getattr; expose ours instead.
    mm_ckpt.get_torch_safe_globals = safe_globals
    _ACTIVE = True
