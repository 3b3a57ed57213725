"""Test-only hook for the foundation tests (imported via ``custom_imports``).

MMEngine logs rank 0's loss only; the distributed-equivalence test needs the
loss of every rank, so each rank writes its own per-iteration losses.
"""
import json
import os.path as osp
from typing import Optional

import torch.distributed as torch_dist
from mmengine.dist import get_rank, get_world_size, is_distributed
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class FoundationLossRecorderHook(Hook):
    """Write this rank's losses to ``<work_dir>/loss_rank<r>.json``.

    The file holds ``{"losses": {iter: loss}, "world_size": int,
    "backend": str | None}`` (the process-group backend, if distributed).

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
        backend = torch_dist.get_backend() if is_distributed() else None
        with open(path, 'w') as f:
            json.dump(
                dict(
                    losses=self.losses,
                    world_size=get_world_size(),
                    backend=backend), f)
