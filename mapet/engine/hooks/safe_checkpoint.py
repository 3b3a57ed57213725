"""``SafeCheckpointHook``: rotate checkpoints without ever losing the last one.

MMEngine's ``CheckpointHook`` deletes the oldest kept checkpoint (and the
previous ``best_*`` one) *before* it writes the new one. With
``max_keep_ckpts=1`` a job killed during the save (preemption, OOM killer)
is left with no checkpoint at all. This subclass keeps every decision of
mmengine's hook (which files to keep, names, ``last_checkpoint``, the
``keep_ckpt_ids`` it stores for resuming) and changes only *when* files are
deleted: after the new checkpoint has been written (atomically, with its
``.sha256`` sidecar, by ``MaPeTRunner``) and ``last_checkpoint`` names it.

The order of one save is therefore:

1. the names of the files to delete are recorded in the message hub
   (``runtime_info['ckpt_pending_removal']``), so they are part of the new
   checkpoint;
2. the new checkpoint is written to a temporary name, fsynced, renamed into
   place, its sidecar written;
3. ``last_checkpoint`` is (re)written atomically;
4. only then the old checkpoints and their sidecars are deleted.

A kill at any point leaves at least one intact checkpoint: the old ones
until step 4, the new one from step 2 on. If the job dies between 2 and 4,
the resumed run finds the leftover names in the resumed checkpoint's message
hub and deletes them in ``before_train`` (never the checkpoint it resumed
from). Stale temporary files of a killed save are removed by
``MaPeTRunner.train``.

Select it in ``default_hooks`` (the shipped runtimes do)::

    default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook',
                                         interval=1, max_keep_ckpts=1))

mmseg-scope configs write ``type='mmpretrain.SafeCheckpointHook'``. All
arguments are those of :class:`mmengine.hooks.CheckpointHook`.
"""
import contextlib
import os.path as osp
from typing import List

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmpretrain.registry import HOOKS

from mapet.utils.atomic import atomic_write_text, checksum_path

__all__ = ['SafeCheckpointHook']

PENDING_KEY = 'ckpt_pending_removal'


class _DeferredRemovals:
    """File-backend proxy whose ``remove``/``rmtree`` only record the path."""

    def __init__(self, backend, pending: List[str], on_defer) -> None:
        self._backend = backend
        self._pending = pending
        self._on_defer = on_defer

    def remove(self, path) -> None:
        self._pending.append(str(path))
        self._on_defer()

    def rmtree(self, path) -> None:
        self._pending.append(str(path))
        self._on_defer()

    def __getattr__(self, name):
        return getattr(self._backend, name)


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """``CheckpointHook`` that deletes old checkpoints only after a save.

    See the module docstring. Same arguments as mmengine's hook.
    """

    _depth = 0
    _pending: List[str]

    @contextlib.contextmanager
    def _deferring_removals(self, runner):
        """Defer the deletions mmengine makes inside the ``with`` block."""
        outer = self._depth == 0
        if outer:
            self._pending = []
            backend = self.file_backend

            def record():
                runner.message_hub.update_info(
                    PENDING_KEY,
                    [osp.basename(p.rstrip('/')) for p in self._pending])

            self.file_backend = _DeferredRemovals(backend, self._pending,
                                                  record)
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if outer:
                self.file_backend = backend
        if outer:
            # Reached only when the save completed.
            self._publish_last_checkpoint(runner)
            self._remove(runner, self._pending)
            runner.message_hub.update_info(PENDING_KEY, [])

    def _publish_last_checkpoint(self, runner) -> None:
        # mmengine writes `last_checkpoint` with a plain open('w'); make the
        # final content durable and never half-written.
        if is_main_process() and self.last_ckpt is not None:
            atomic_write_text(
                osp.join(runner.work_dir, 'last_checkpoint'),
                str(self.last_ckpt))

    def _current(self) -> set:
        keep = {self.last_ckpt, getattr(self, 'best_ckpt_path', None)}
        keep.update(getattr(self, 'best_ckpt_path_dict', {}).values())
        return {str(p) for p in keep if p}

    def _remove(self, runner, paths: List[str]) -> None:
        if not is_main_process():
            return
        current = self._current()
        for path in paths:
            if path in current:  # saved again under the same name
                continue
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
                runner.logger.info(f'Removed old checkpoint {path}.')
            elif self.file_backend.isdir(path):
                self.file_backend.rmtree(path)
            sidecar = checksum_path(path)
            if '://' not in sidecar and osp.isfile(sidecar):
                self.file_backend.remove(sidecar)

    def _save_checkpoint_with_step(self, runner, step, meta):
        with self._deferring_removals(runner):
            super()._save_checkpoint_with_step(runner, step, meta)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        with self._deferring_removals(runner):
            super()._save_best_checkpoint(runner, metrics)

    def before_train(self, runner) -> None:
        """mmengine's setup, then finish deletions a killed run left."""
        super().before_train(runner)
        leftover = runner.message_hub.get_info(PENDING_KEY) or []
        if not leftover or not getattr(runner, '_has_loaded', False):
            return
        resumed = runner.message_hub.get_info('last_ckpt')
        keep = {osp.basename(str(resumed))} if resumed else set()
        paths = [self.file_backend.join_path(self.out_dir, name)
                 for name in leftover if name not in keep]
        if paths:
            runner.logger.info(
                f'Finishing the checkpoint rotation a killed run left: '
                f'removing {paths}.')
        self._remove(runner, paths)
        runner.message_hub.update_info(PENDING_KEY, [])
