"""Test-only hook for the foundation tests (imported via ``custom_imports``).

MMEngine logs rank 0's loss only; the distributed-equivalence test needs the
loss of every rank, so each rank writes its own per-iteration losses.
"""
import json
import os.path as osp
from typing import Optional

from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class FoundationLossRecorderHook(Hook):
    """Write ``{iter: loss}`` of this rank to ``<work_dir>/loss_rank<r>.json``.

    Args:
        filename (str): File name pattern with ``{rank}``.
            Defaults to 'loss_rank{rank}.json'.
    """

    priority = 'VERY_LOW'

    def __init__(self, filename: str = 'loss_rank{rank}.json') -> None:
        self.filename = filename
        self.losses: dict = {}

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        self.losses[runner.iter] = float(outputs['loss'].detach())

    def after_train(self, runner) -> None:
        path = osp.join(runner.work_dir,
                        self.filename.format(rank=get_rank()))
        with open(path, 'w') as f:
            json.dump(self.losses, f)
