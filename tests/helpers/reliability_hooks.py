"""Test-only hooks for the reliability tests (imported via custom_imports).

* ``SelfKillHook``: the process sends itself SIGKILL before a given
  iteration (a real, uncatchable kill at a reproducible point).
* ``NaNLossInjectorHook``: makes the model's losses NaN at given
  iterations, the summed loss and its logged value alike (to exercise
  ``NaNGuardHook``).
* ``SampleRecorderHook``: appends ``{iter, rank, epoch, sample_idx}`` of every
  batch to ``<work_dir>/samples_rank<r>.jsonl`` (flushed per iteration, so
  it survives a kill).

It also imports ``reliability_faults`` (kill in the middle of a file write,
enabled by the ``MAPET_KILL_WRITE_MATCH`` environment variable).
"""
import json
import os
import os.path as osp
import signal
from typing import Optional, Sequence

import reliability_faults  # noqa: F401  (active only with its env var)
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class SelfKillHook(Hook):
    """SIGKILL this process before iteration ``at_iter`` (0-based; <0: off).

    Args:
        at_iter (int): Iteration count at which to die. Defaults to -1.
    """

    priority = 'HIGHEST'

    def __init__(self, at_iter: int = -1) -> None:
        self.at_iter = at_iter

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch: Optional[dict] = None) -> None:
        if runner.iter == self.at_iter:
            os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register_module()
class NaNLossInjectorHook(Hook):
    """Make the loss of iterations ``at_iters`` (0-based) NaN.

    Args:
        at_iters (Sequence[int]): Iterations whose loss becomes NaN.
    """

    priority = 'HIGHEST'

    def __init__(self, at_iters: Sequence[int] = ()) -> None:
        self.at_iters = set(at_iters)

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch: Optional[dict] = None) -> None:
        model = runner.model
        if runner.iter in self.at_iters:
            original = type(model).parse_losses

            def nan_losses(losses):
                # Poison the losses before they are summed and logged, as a
                # diverged model does: the loss tensor and the logged value
                # (what NaNGuardHook reads) are both NaN.
                losses = {
                    key: [v * float('nan') for v in value]
                    if isinstance(value, (list, tuple)) else
                    value * float('nan')
                    for key, value in losses.items()
                }
                return original(model, losses)

            model.parse_losses = nan_losses
        else:
            model.__dict__.pop('parse_losses', None)


@HOOKS.register_module()
class SampleRecorderHook(Hook):
    """Record which samples each rank trains on, per iteration."""

    priority = 'LOWEST'

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch: Optional[dict] = None) -> None:
        samples = data_batch['data_samples']
        record = dict(
            iter=runner.iter,
            epoch=runner.epoch,
            rank=get_rank(),
            sample_idx=[int(s.sample_idx) for s in samples],
            permutation=[s.permutation.tolist() for s in samples])
        path = osp.join(runner.work_dir, f'samples_rank{get_rank()}.jsonl')
        with open(path, 'a') as f:
            f.write(json.dumps(record) + '\n')
