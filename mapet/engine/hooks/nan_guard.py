"""Stop (or skip) on a non-finite loss before it reaches the weights."""
import logging
from typing import Optional

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmpretrain.registry import HOOKS

__all__ = ['NonFiniteLossError', 'NaNGuardHook']


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/Inf loss (raised by :class:`NaNGuardHook`)."""


@HOOKS.register_module()
class NaNGuardHook(Hook):
    """Refuse optimizer updates from a NaN/Inf loss.

    The check runs inside ``optim_wrapper.update_params`` (it wraps that
    method of the runner's optimizer wrapper), i.e. *before* backward and the
    optimizer step, so a bad batch never corrupts the weights. What happens
    then depends on ``action``:

    * ``'raise'`` (default): training stops with :class:`NonFiniteLossError`
      naming the iteration, the loss value and the last checkpoint written
      (the weights in memory are still those of the previous iteration).
    * ``'skip'``: the update is skipped (gradients zeroed) and a warning
      with the running count is logged; after ``max_skips`` skipped
      iterations it raises as above.

    In distributed runs the decision is all-reduced, so every rank skips
    the same iteration (no rank waits in a gradient all-reduce alone).

    Args:
        action (str): ``'raise'`` or ``'skip'``. Defaults to 'raise'.
        max_skips (int): With ``'skip'``, raise once more iterations than
            this were skipped. Defaults to 10.
    """

    priority = 'VERY_HIGH'

    def __init__(self, action: str = 'raise', max_skips: int = 10) -> None:
        if action not in ('raise', 'skip'):
            raise ValueError(
                f"NaNGuardHook: action must be 'raise' or 'skip', got "
                f'{action!r}.')
        if max_skips < 0:
            raise ValueError(f'NaNGuardHook: max_skips={max_skips} < 0.')
        self.action = action
        self.max_skips = max_skips
        self.num_skipped = 0
        self._runner = None

    def before_train(self, runner) -> None:
        """Wrap the optimizer wrapper's ``update_params``."""
        self._runner = runner
        optim_wrapper = runner.optim_wrapper
        if getattr(optim_wrapper, '_mapet_nan_guard', False):
            return
        original = optim_wrapper.update_params

        def guarded_update_params(loss: torch.Tensor, *args, **kwargs):
            if self._is_finite(loss):
                return original(loss, *args, **kwargs)
            self._on_non_finite(loss)
            optim_wrapper.zero_grad()
            return None

        optim_wrapper.update_params = guarded_update_params
        optim_wrapper._mapet_nan_guard = True

    @staticmethod
    def _is_finite(loss: torch.Tensor) -> bool:
        finite = torch.isfinite(loss.detach()).all().to(torch.float32)
        if get_world_size() > 1:
            finite = finite.reshape(1).to(loss.device)
            all_reduce(finite, op='min')
        return bool(finite.item())

    def _last_checkpoint(self) -> str:
        last = self._runner.message_hub.get_info('last_ckpt')
        return last if last else 'none written yet'

    def _on_non_finite(self, loss: torch.Tensor) -> None:
        runner = self._runner
        where = f'iteration {runner.iter + 1} (epoch {runner.epoch + 1})'
        message = (f'Non-finite loss {float(loss.detach().sum())} at {where}; '
                   f'last checkpoint: {self._last_checkpoint()}.')
        if self.action == 'skip' and self.num_skipped < self.max_skips:
            self.num_skipped += 1
            print_log(
                f'NaNGuardHook: {message} Skipped this update '
                f'({self.num_skipped}/{self.max_skips} skips used).',
                logger='current',
                level=logging.WARNING)
            return
        if self.action == 'skip':
            message += (f' {self.num_skipped} updates were already skipped '
                        f'(max_skips={self.max_skips}).')
        raise NonFiniteLossError(
            f'NaNGuardHook: {message} The weights in memory are those before '
            'this iteration. Lower the learning rate / enable gradient '
            "clipping, or set NaNGuardHook(action='skip') to skip such "
            'iterations; resume with --resume auto.')

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        """Record the number of skipped updates in the message hub."""
        runner.message_hub.update_info('nan_guard_skipped', self.num_skipped)
