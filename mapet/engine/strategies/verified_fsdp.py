"""mmengine's ``FSDPStrategy`` with verified, checked checkpoint loads.

``FSDPStrategy`` reads checkpoints with mmengine's loader, which falls back
to unrestricted unpickling when the safe load fails, and applies them
without comparing keys and shapes. This subclass reads them like
``MaPeTRunner`` does (``weights_only=True``, a narrow allow-list, the
``.sha256`` sidecar verified) and compares the state dict with the model's
unsharded keys and shapes, recorded when the model is built (an FSDP
model's own ``state_dict`` is only complete on rank 0).

Configs name it by import path, so nothing is added to mmengine's root
``STRATEGIES`` registry::

    strategy = dict(type='mapet.engine.strategies.VerifiedFSDPStrategy', ...)

Only full state dicts (``state_dict_cfg='full'``, one file) are supported:
the per-rank files of sharded state dicts carry no sidecars.

It also makes ``--resume`` work at all: mmengine's ``FSDPStrategy`` passes
``FSDP.optim_state_dict_to_load`` its arguments in the order of torch < 2.1
(state dict first), which fails on the torch we support ("unhashable type:
'dict'"); :meth:`load_optim_state_dict` passes them by name.
"""
from typing import Callable, Dict, Optional, Union

import torch
from mmengine._strategy import FSDPStrategy
from mmengine.device import get_device
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

from mapet.engine.runners.load_checks import (check_state_dict,
                                              normalise_load_check)
from mapet.utils.checkpoint import load_checkpoint_file

__all__ = ['VerifiedFSDPStrategy']


class _UnshardedShapes:
    """Stands in for the model in ``check_state_dict``: its unsharded state
    dict as meta tensors (names and shapes, no memory)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.name = type(model).__name__
        self._state = {
            key: torch.empty(tuple(value.shape), device='meta')
            for key, value in model.state_dict().items()
        }

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return self._state


class VerifiedFSDPStrategy(FSDPStrategy):
    """``FSDPStrategy`` whose loads are verified and compared with the model.

    Same arguments as :class:`mmengine._strategy.FSDPStrategy`;
    ``state_dict_cfg`` must be ``'full'``. The runner sets
    :attr:`load_check` (the config's ``load_check`` allow-lists) before it
    loads anything (``MaPeTFlexibleRunner`` does).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not self._is_full_state_dict():
            raise ValueError(
                "VerifiedFSDPStrategy needs state_dict_cfg='full' (one "
                'checkpoint file with a checksum sidecar, gathered on rank '
                '0); sharded per-rank files cannot be verified.')
        self.load_check = normalise_load_check(None)
        self._shapes: Optional[_UnshardedShapes] = None

    def build_model(self, model: Union[torch.nn.Module, dict]
                    ) -> torch.nn.Module:
        """Build as mmengine, and record the unsharded keys and shapes."""
        model = super().build_model(model)
        self._shapes = _UnshardedShapes(model)
        return model

    def load_checkpoint(self,
                        filename: str,
                        *,
                        map_location: Union[str, Callable] = 'cpu',
                        strict: bool = False,
                        revise_keys: list = [(r'^module.', '')],
                        callback: Optional[Callable] = None) -> dict:
        """Load ``filename`` verified, check it fits, then apply it.

        Used for ``load_from`` and, through mmengine's ``resume``, for
        ``--resume``. Arguments as mmengine's ``load_checkpoint``.

        Raises:
            CheckpointMismatchError: The checkpoint does not fit the model
                beyond the ``load_check`` allow-lists.
        """
        self.logger.info(f'Load checkpoint from {filename} (verified)')
        if map_location == 'default':
            map_location = get_device()
        checkpoint = load_checkpoint_file(filename, map_location=map_location)
        if callback is not None:
            callback(checkpoint)
        if self._shapes is not None:
            report = check_state_dict(
                self._shapes, checkpoint, f'Checkpoint {filename}',
                self.load_check, revise_keys=revise_keys,
                model_name=self._shapes.name)
            self.logger.info(f'Checked checkpoint {filename}: '
                             f'{report.format()}')
        state_dict = checkpoint.pop('state_dict')
        self.load_model_state_dict(
            state_dict, strict=strict, revise_keys=revise_keys)
        return checkpoint

    def load_optim_state_dict(self, state_dict: dict) -> None:
        """Load a full optimizer state dict into the sharded optimizer."""
        optim_state_dict = FSDP.optim_state_dict_to_load(
            model=self.model,
            optim=self.optim_wrapper.optimizer,
            optim_state_dict=state_dict)
        self.optim_wrapper.load_state_dict(optim_state_dict)
