"""A tiny in-process ``MaPeTRunner`` for the checkpoint tests.

``tiny_runner(work_dir)`` builds the runner our configs select
(``runner_type='mmpretrain.MaPeTRunner'``) around a one-layer model and an
in-memory dataset of 8 samples (batch 2: 4 iterations per epoch), with
SGD, a constant lr and a checkpoint every 2 iterations. It is light enough
to build and train in well under a second, so checkpoint saving, loading
and resuming are exercised through the runner itself.
"""
import itertools
from typing import Optional

import torch
from mmengine.model import BaseModel
from torch import nn
from torch.utils.data import DataLoader, Dataset

_names = itertools.count()


class TinyModel(BaseModel):
    """``fc`` (size x size); the loss pulls its outputs to zero."""

    def __init__(self, size: int = 4, init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.fc = nn.Linear(size, size)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.fc(inputs)
        if mode == 'loss':
            return dict(loss=out.pow(2).mean())
        return out


class TinyDataset(Dataset):
    """``n`` deterministic inputs of ``size`` features."""

    def __init__(self, n: int = 8, size: int = 4) -> None:
        generator = torch.Generator().manual_seed(0)
        self.data = torch.randn(n, size, generator=generator)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, idx: int) -> dict:
        return dict(inputs=self.data[idx])


def tiny_runner(work_dir, size: int = 4, max_iters: int = 4, **kwargs):
    """Build a ``MaPeTRunner`` (objects, not a config: no registration).

    Args:
        work_dir: The work dir.
        size (int): Width of the model's one linear layer (a 1024-wide one
            makes a 4 MiB checkpoint). Defaults to 4.
        max_iters (int): Training length. Defaults to 4.
        **kwargs: Overrides of the runner config (``load_from``,
            ``resume``, ``model`` ...).
    """
    from mapet.engine.runners import MaPeTRunner
    cfg = dict(
        model=TinyModel(size),
        work_dir=str(work_dir),
        experiment_name=f'tiny_runner_{next(_names)}',
        default_scope='mmpretrain',
        train_dataloader=DataLoader(
            TinyDataset(size=size), batch_size=2, shuffle=False),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        default_hooks=dict(
            checkpoint=dict(
                type='CheckpointHook', interval=2, by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        log_processor=dict(by_epoch=False),
        randomness=dict(seed=0),
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
    )
    cfg.update(kwargs)
    return MaPeTRunner(**cfg)
