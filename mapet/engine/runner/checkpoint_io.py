"""Crash-safe checkpoint saving and verified auto-resume for MMEngine.

MMEngine writes a checkpoint by opening the destination and writing into
it, and writes ``last_checkpoint`` the same way: a job killed (preempted,
OOM-killed, out of disk) during the write leaves a truncated ``.pth`` or an
empty ``last_checkpoint``, and ``--resume auto`` then fails or, worse,
resumes from whatever that path now holds. :func:`activate` (called by
``import mapet``) changes three functions, all through their public module
attributes:

* ``save_checkpoint`` (``mmengine.runner`` / ``mmengine.runner.checkpoint``
  / ``mmengine.runner.runner``): for local paths the checkpoint is written
  to a temporary file in the same directory, fsynced and renamed over the
  destination (:func:`mapet.utils.atomic.atomic_write`), then a
  ``<file>.sha256`` sidecar is written. Remote backends are delegated to
  MMEngine unchanged.
* ``find_latest_checkpoint``: ``last_checkpoint`` is trusted only if it
  names an existing file whose sidecar (when present) matches; otherwise
  the newest intact checkpoint of the work dir is used and the skipped
  ones are reported.
* the local-path checkpoint loader (``CheckpointLoader``'s ``''`` scheme,
  used by ``load_from``, ``--resume`` and ``init_cfg``): a file whose
  sidecar does not match is refused with :class:`CorruptCheckpointError`
  before anything is unpickled; loading itself stays mapet's
  ``weights_only`` loader (:mod:`mapet.utils.checkpoint`).
"""
import glob
import io
import logging
import os
import os.path as osp
import re
from typing import Any, Callable, List, Optional

import torch
from mmengine.logging import print_log

from mapet.utils.atomic import (atomic_write, checksum_path, sha256_file,
                                write_checksum)

__all__ = [
    'CorruptCheckpointError', 'atomic_save_checkpoint',
    'verify_checkpoint', 'find_latest_intact_checkpoint',
    'load_from_local_verified', 'activate'
]

_STEP_RE = re.compile(r'(?:iter|epoch)_(\d+)\.pth$')


class CorruptCheckpointError(ValueError):
    """A checkpoint does not match its ``.sha256`` sidecar."""


def _is_local(filename: str, file_client_args: Optional[dict],
              backend_args: Optional[dict]) -> bool:
    if file_client_args is not None or backend_args is not None:
        return False
    return '://' not in os.fspath(filename)


def _remove_orphan_sidecars(dirname: str) -> None:
    """Drop ``*.pth.sha256`` sidecars whose checkpoint was deleted.

    ``CheckpointHook(max_keep_ckpts=...)`` removes old ``.pth`` files only.
    """
    for sidecar in glob.glob(osp.join(glob.escape(dirname), '*.pth.sha256')):
        if not osp.exists(sidecar[:-len('.sha256')]):
            try:
                os.remove(sidecar)
            except OSError:
                pass


def atomic_save_checkpoint(checkpoint: dict,
                           filename: str,
                           file_client_args: Optional[dict] = None,
                           backend_args: Optional[dict] = None) -> None:
    """Drop-in for ``mmengine.runner.checkpoint.save_checkpoint``.

    Args:
        checkpoint (dict): What to save.
        filename (str): Destination.
        file_client_args (dict, optional): As MMEngine (remote: delegated).
        backend_args (dict, optional): As MMEngine (remote: delegated).
    """
    if not _is_local(filename, file_client_args, backend_args):
        return _MMENGINE_SAVE(
            checkpoint,
            filename,
            file_client_args=file_client_args,
            backend_args=backend_args)
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
    _remove_orphan_sidecars(osp.dirname(osp.abspath(filename)))


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
        return True  # written without mapet (e.g. a downloaded checkpoint)
    with open(sidecar, encoding='utf-8') as f:
        fields = f.read().split()
    return bool(fields) and fields[0] == sha256_file(filename)


def _candidates(work_dir: str) -> List[str]:
    """Checkpoints of ``work_dir``, newest first (by step, then mtime)."""
    paths = glob.glob(osp.join(glob.escape(work_dir), '*.pth'))

    def key(path: str):
        match = _STEP_RE.search(osp.basename(path))
        return (int(match.group(1)) if match else -1, osp.getmtime(path))

    return sorted(paths, key=key, reverse=True)


def find_latest_intact_checkpoint(path: str) -> Optional[str]:
    """Drop-in for ``mmengine.runner.find_latest_checkpoint``.

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


def load_from_local_verified(filename: str,
                             map_location: Optional[Any] = None) -> Any:
    """Local-path loader: verify the sidecar, then load ``weights_only``.

    Args:
        filename (str): Checkpoint path.
        map_location (optional): As :func:`torch.load`.

    Returns:
        Any: The checkpoint.

    Raises:
        CorruptCheckpointError: If the file does not match its sidecar.
    """
    from mapet.utils.checkpoint import load_from_local
    expanded = osp.expanduser(filename)
    if osp.isfile(expanded) and osp.exists(checksum_path(expanded)):
        if not verify_checkpoint(expanded):
            raise CorruptCheckpointError(
                f'Checkpoint {filename} does not match its checksum '
                f'{checksum_path(filename)}: it is truncated or was modified '
                'after it was written. Use an earlier checkpoint (with '
                '--resume auto the newest intact one is picked), or delete '
                'the .sha256 file if you changed the checkpoint on purpose.')
    return load_from_local(filename, map_location=map_location)


_MMENGINE_SAVE: Callable = None  # set by activate()
_ACTIVE = False


def activate() -> None:
    """Install atomic saving and verified loading (idempotent)."""
    global _ACTIVE, _MMENGINE_SAVE
    if _ACTIVE:
        return
    import mmengine.runner as mm_runner
    from mmengine.runner import checkpoint as mm_ckpt
    from mmengine.runner import runner as mm_runner_mod
    from mmengine.runner.checkpoint import CheckpointLoader

    from mapet.utils.checkpoint import activate as activate_safe_loading

    # Safe (weights_only) loading first; our scheme wraps its loader.
    activate_safe_loading()
    _MMENGINE_SAVE = mm_ckpt.save_checkpoint
    for module in (mm_ckpt, mm_runner, mm_runner_mod):
        module.save_checkpoint = atomic_save_checkpoint
    for module in (mm_ckpt, mm_runner, mm_runner_mod):
        module.find_latest_checkpoint = find_latest_intact_checkpoint
    try:
        from mmengine.runner import _flexible_runner
        _flexible_runner.find_latest_checkpoint = \
            find_latest_intact_checkpoint
    except ImportError:  # pragma: no cover - optional in older mmengine
        pass
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_from_local_verified, force=True)
    _ACTIVE = True
