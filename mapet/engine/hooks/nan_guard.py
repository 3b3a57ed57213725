"""Stop training on a non-finite loss, and never checkpoint non-finite weights."""
import math
from typing import Optional

import torch
from mmengine.hooks import Hook
from mmengine.optim import AmpOptimWrapper
from mmpretrain.registry import HOOKS

__all__ = ['NonFiniteLossError', 'NaNGuardHook']


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/Inf loss or weights (see :class:`NaNGuardHook`)."""


@HOOKS.register_module()
class NaNGuardHook(Hook):
    """Raise on a NaN/Inf loss that survives; refuse to save NaN weights.

    The loss is read from the iteration's outputs, which mmengine's
    ``RuntimeInfoHook`` reads with ``.item()`` every iteration anyway, so
    the check adds no extra wait for the device. With an fp16 ``AmpOptimWrapper`` a non-finite loss is
    normal now and then: the loss scaler skips that step and lowers the
    scale. Only ``max_amp_overflows`` such iterations *in a row* mean the run
    diverged. Without a loss scaler the first non-finite loss raises.

    Runs before ``CheckpointHook`` (priority ``VERY_HIGH``), so the failing
    iteration is never checkpointed; ``before_save_checkpoint`` also refuses
    weights that are not finite.

    Args:
        max_amp_overflows (int): Consecutive non-finite losses tolerated
            under an fp16 loss scaler (each halves the scale). Defaults to
            10.
    """

    priority = 'VERY_HIGH'

    def __init__(self, max_amp_overflows: int = 10) -> None:
        if max_amp_overflows < 0:
            raise ValueError(
                f'NaNGuardHook: max_amp_overflows={max_amp_overflows} < 0.')
        self.max_amp_overflows = max_amp_overflows
        self._tolerated = 0
        self._in_a_row = 0

    def before_train(self, runner) -> None:
        """Tolerate overflows only under a dynamic fp16 loss scaler."""
        wrapper = runner.optim_wrapper
        scaled = isinstance(wrapper, AmpOptimWrapper) and \
            getattr(wrapper, 'cast_dtype', None) != torch.bfloat16
        self._tolerated = self.max_amp_overflows if scaled else 0

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        """Raise once the loss has been non-finite too often in a row."""
        if not outputs or 'loss' not in outputs:
            return
        loss = outputs['loss']
        loss = float(loss.detach()) if torch.is_tensor(loss) else float(loss)
        if math.isfinite(loss):
            self._in_a_row = 0
            return
        self._in_a_row += 1
        if self._in_a_row > self._tolerated:
            raise NonFiniteLossError(
                f'Non-finite loss {loss} at iteration {runner.iter + 1} '
                f'(epoch {runner.epoch + 1})'
                + (f', {self._in_a_row} iterations in a row under the fp16 '
                   'loss scaler' if self._tolerated else '')
                + '. Training stopped before checkpointing it. Resume from '
                'the last checkpoint with a lower learning rate or gradient '
                'clipping, or check the data of this iteration.')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Refuse to write non-finite weights."""
        bad = [
            key for key, value in checkpoint.get('state_dict', {}).items()
            if torch.is_tensor(value) and value.is_floating_point()
            and not bool(torch.isfinite(value).all())
        ]
        if bad:
            raise NonFiniteLossError(
                f'Refusing to save a checkpoint at iteration {runner.iter}: '
                f'{len(bad)} weight tensors are not finite (first: '
                f'{bad[0]}). Resume from the last good checkpoint.')
