"""Checkpoint files: safe loading, atomic checksummed saving, verified resume.

Nothing here changes torch or mmengine: :class:`~mapet.engine.runners.
MaPeTRunner` (selected by ``runner_type`` in our configs) calls these
functions, and so do our tools and converters.

* **Loading** (:func:`safe_torch_load`, :func:`load_checkpoint_file`):
  ``torch.load(weights_only=True)`` with a narrow allow-list passed to this
  call only (:func:`safe_globals`), never an unrestricted fallback. mmengine's
  own loader falls back to unrestricted unpickling on any failure and
  allow-lists ``builtins.getattr`` (enough to reach arbitrary callables).
  A file that needs anything else raises :class:`UnsafeCheckpointError`
  naming the type; nothing in it is executed (the restricted unpickler stops
  at the first unknown global). A file with a ``<file>.sha256`` sidecar that
  does not match raises :class:`CorruptCheckpointError` before unpickling.
* **Saving** (:func:`atomic_save_checkpoint`): serialised in memory, written
  to a temporary file in the same directory, fsynced, renamed over the
  destination, then the sidecar is written: a job killed at any moment
  leaves the old file or the new one, never a truncated one.
* **Message-hub state as data** (:func:`data_only_message_hub`): mmengine's
  ``HistoryBuffer`` pickles its statistics methods as function references
  (through ``builtins.getattr``); checkpoints saved by our runner hold
  :class:`DataOnlyHistoryBuffer` instead, which pickles only its numbers.
* **Resume** (:func:`find_latest_intact_checkpoint`): ``last_checkpoint`` is
  trusted only if the file it names matches its sidecar; otherwise the
  newest intact checkpoint of the work dir is used and the skipped ones are
  reported.

To load a checkpoint you trust that carries other types, convert it once
(``torch.load(..., weights_only=False)`` then ``torch.save({'state_dict':
...})``) or use ``tools/model_converters/``.
"""
import glob
import io
import logging
import os
import os.path as osp
import pickle
import re
from typing import IO, Any, Callable, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.logging import print_log
from mmengine.logging.history_buffer import HistoryBuffer

from .atomic import atomic_write, checksum_path, sha256_file, write_checksum

__all__ = [
    'UnsafeCheckpointError', 'CorruptCheckpointError', 'DataOnlyHistoryBuffer',
    'safe_globals', 'safe_torch_load', 'load_checkpoint_file',
    'verify_checkpoint', 'atomic_save_checkpoint',
    'find_latest_intact_checkpoint', 'data_only_message_hub',
    'remove_orphan_sidecars'
]

# The numpy dtype classes a checkpoint may contain (dtypes are rebuilt with
# ``numpy.dtype(...)`` then ``__setstate__``, which torch only allows when
# the dtype's class is allow-listed). Object/void/str dtypes are excluded on
# purpose: they would let arbitrary pickled objects back in.
_NUMPY_DTYPE_NAMES = (
    'bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32',
    'uint64', 'float16', 'float32', 'float64', 'longdouble', 'complex64',
    'complex128', 'clongdouble', 'intc', 'uintc', 'longlong', 'ulonglong')


class CorruptCheckpointError(ValueError):
    """A checkpoint does not match its ``.sha256`` sidecar."""


class DataOnlyHistoryBuffer(HistoryBuffer):
    """A ``HistoryBuffer`` that pickles its numbers only.

    ``__setstate__`` (mmengine's) restores the default statistics methods;
    custom ones are class-level registrations that come back when their
    module is imported.
    """

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop('statistics_methods', None)
        return state

    @classmethod
    def from_buffer(cls, buffer: HistoryBuffer) -> 'DataOnlyHistoryBuffer':
        """Copy ``buffer``'s data into a new data-only buffer."""
        new = cls.__new__(cls)
        state = dict(buffer.__dict__)
        state.pop('statistics_methods', None)
        new.__dict__.update(state)
        return new


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
        list: ``HistoryBuffer`` (its data; a pickled statistics method
        still needs ``builtins.getattr``, which is refused),
        :class:`DataOnlyHistoryBuffer`, ``numpy.ndarray``, ``numpy.dtype``, numpy's
        ``_reconstruct``/``scalar`` pickle helpers and the numeric/bool numpy
        dtype classes.
    """
    core = _numpy_core()
    allow: List[Callable] = [
        HistoryBuffer,
        DataOnlyHistoryBuffer,
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
                    weights_only: Optional[bool] = None,
                    extra_safe_globals: Sequence[Callable] = ()) -> Any:
    """Load with ``weights_only=True`` and mapet's allow-list; no fallback.

    The allow-list applies to this call only (torch's ``safe_globals``
    context); the process-wide torch list is not changed.

    Args:
        file (str | PathLike | IO): Checkpoint path or file object.
        map_location (optional): Same as :func:`torch.load`.
        weights_only (bool, optional): ``None`` or ``True`` load safely. An
            explicit ``False`` from a caller is honoured (that caller asked
            for unrestricted unpickling in its own code); mmengine never
            passes it. Defaults to None.
        extra_safe_globals (Sequence[Callable]): Exactly these further types
            are allowed, for this call only (e.g. ``argparse.Namespace``, the
            ``args`` of timm's ``CheckpointSaver``, in the official MaPeT
            converter). Defaults to ().

    Returns:
        Any: The loaded object.

    Raises:
        UnsafeCheckpointError: If the file contains a type outside the
            allow-list; the message names it.
    """
    if weights_only is False:
        return torch.load(file, map_location=map_location, weights_only=False)
    try:
        allow = safe_globals() + list(extra_safe_globals)
        with torch.serialization.safe_globals(allow):
            return torch.load(
                file, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        message = str(e)
        type_name = _offending_type(message)
        hint = ''
        if type_name.rpartition('.')[2] == 'getattr':
            hint = (' (checkpoints written by a plain mmengine Runner pickle '
                    'HistoryBuffer statistics methods through '
                    "builtins.getattr, a generic callable we never allow; "
                    "train with runner_type='mmpretrain.MaPeTRunner', or "
                    'load only the weights of a file you trust)')
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


def verify_checkpoint(filename: str) -> bool:
    """Whether ``filename`` exists and matches its sidecar (if it has one).

    Args:
        filename (str): Checkpoint path.

    Returns:
        bool: False for a missing/empty file or a checksum mismatch.
    """
    if not osp.isfile(filename) or osp.getsize(filename) == 0:
        return False
    sidecar = checksum_path(filename)
    if not osp.exists(sidecar):
        return True  # written elsewhere (e.g. a downloaded checkpoint)
    with open(sidecar, encoding='utf-8') as f:
        fields = f.read().split()
    return bool(fields) and fields[0] == sha256_file(filename)


def load_checkpoint_file(filename: str,
                         map_location: Optional[Any] = None,
                         extra_safe_globals: Sequence[Callable] = ()) -> Any:
    """Verify a local file's sidecar, then load it with :func:`safe_torch_load`.

    A ``.safetensors`` file is read without unpickling anything and comes
    back as ``{'state_dict': ..., 'meta': ...}``
    (:func:`mapet.utils.safetensors_io.load_safetensors`).

    Args:
        filename (str): Checkpoint path (``~`` is expanded).
        map_location (optional): As :func:`torch.load`.
        extra_safe_globals (Sequence[Callable]): See
            :func:`safe_torch_load`. Defaults to ().

    Returns:
        Any: The checkpoint.

    Raises:
        FileNotFoundError: If the file does not exist.
        CorruptCheckpointError: If the file does not match its sidecar.
        UnsafeCheckpointError: See :func:`safe_torch_load`.
    """
    expanded = osp.expanduser(os.fspath(filename))
    if not osp.isfile(expanded):
        raise FileNotFoundError(f'Checkpoint {filename} does not exist.')
    if osp.exists(checksum_path(expanded)) and \
            not verify_checkpoint(expanded):
        raise CorruptCheckpointError(
            f'Checkpoint {filename} does not match its checksum '
            f'{checksum_path(filename)}: it is truncated or was modified '
            'after it was written. Use an earlier checkpoint (with '
            '--resume auto the newest intact one is picked), or delete '
            'the .sha256 file if you changed the checkpoint on purpose.')
    from .safetensors_io import is_safetensors, load_safetensors
    if is_safetensors(expanded):
        return load_safetensors(expanded, map_location=map_location)
    from .checkpoint_format import check_torch_checkpoint_file
    check_torch_checkpoint_file(expanded)  # empty / text / .npz: named
    return safe_torch_load(
        expanded,
        map_location=map_location,
        extra_safe_globals=extra_safe_globals)


def data_only_message_hub(state: dict) -> dict:
    """``MessageHub.state_dict()`` with :class:`DataOnlyHistoryBuffer` s.

    Args:
        state (dict): A message-hub state (``log_scalars``, ...).

    Returns:
        dict: A shallow copy whose ``log_scalars`` pickle as data only.
    """
    state = dict(state)
    scalars = state.get('log_scalars')
    if isinstance(scalars, dict):
        state['log_scalars'] = {
            key: DataOnlyHistoryBuffer.from_buffer(value)
            if isinstance(value, HistoryBuffer) else value
            for key, value in scalars.items()
        }
    return state


def remove_orphan_sidecars(dirname: str) -> None:
    """Drop ``*.pth.sha256`` sidecars whose checkpoint was deleted.

    ``CheckpointHook(max_keep_ckpts=...)`` removes old ``.pth`` files only.
    """
    for sidecar in glob.glob(osp.join(glob.escape(dirname), '*.pth.sha256')):
        if not osp.exists(sidecar[:-len('.sha256')]):
            try:
                os.remove(sidecar)
            except OSError:
                pass


def atomic_save_checkpoint(checkpoint: dict, filename: str) -> None:
    """Write ``checkpoint`` to a local ``filename`` atomically, with sidecar.

    Args:
        checkpoint (dict): What to save.
        filename (str): Local destination.
    """
    filename = os.fspath(filename)
    # Serialise fully in memory first: a pickling error must not touch disk.
    with io.BytesIO() as buffer:
        torch.save(checkpoint, buffer)
        data = buffer.getvalue()
    # A stale sidecar must never vouch for the new content.
    try:
        os.remove(checksum_path(filename))
    except FileNotFoundError:
        pass
    with atomic_write(filename, 'wb') as f:
        f.write(data)
    write_checksum(filename)
    remove_orphan_sidecars(osp.dirname(osp.abspath(filename)))


_STEP_RE = re.compile(r'(?:iter|epoch)_(\d+)\.pth$')


def _candidates(work_dir: str) -> List[str]:
    """Checkpoints of ``work_dir``, newest first (by step, then mtime)."""
    paths = glob.glob(osp.join(glob.escape(work_dir), '*.pth'))

    def key(path: str):
        match = _STEP_RE.search(osp.basename(path))
        return (int(match.group(1)) if match else -1, osp.getmtime(path))

    return sorted(paths, key=key, reverse=True)


def find_latest_intact_checkpoint(path: str) -> Optional[str]:
    """The checkpoint ``--resume auto`` should use in work dir ``path``.

    Args:
        path (str): The work dir.

    Returns:
        str | None: The checkpoint to resume from, or None if there is no
        intact one.
    """
    named = None
    save_file = osp.join(path, 'last_checkpoint')
    if osp.exists(save_file):
        with open(save_file, encoding='utf-8') as f:
            named = f.read().strip() or None
    if named is not None and verify_checkpoint(named):
        return named
    rejected = [named] if named else []
    for candidate in _candidates(path):
        if candidate in rejected:
            continue
        if verify_checkpoint(candidate):
            if rejected or named is None:
                print_log(
                    f'Resuming from {candidate}: '
                    + (f'skipped {rejected} (missing, empty or failing '
                       'its checksum).' if rejected else
                       'last_checkpoint was missing or empty.'),
                    logger='current',
                    level=logging.WARNING)
            return candidate
        rejected.append(candidate)
    if rejected:
        print_log(
            f'No intact checkpoint in {path}; rejected {rejected}. '
            'Training starts from scratch.',
            logger='current',
            level=logging.WARNING)
    else:
        print_log('Did not find last_checkpoint to be resumed.',
                  logger='current')
    return None
