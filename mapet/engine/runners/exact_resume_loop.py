"""An epoch-based training loop that resumes mid-epoch, bit for bit.

MMEngine's ``EpochBasedTrainLoop`` restores ``epoch`` and ``iter`` from a
checkpoint but always restarts the epoch from its first batch: a
checkpoint written every N iterations (``CheckpointHook(by_epoch=False)``)
then replays the batches already trained on. This loop skips exactly
those batches at the sampler (no image is loaded for them) and registers
:class:`~mapet.engine.hooks.ExactResumeHook`, which makes augmentation and
model randomness functions of counters the checkpoint holds. Together a
run killed at any iteration and resumed with ``--resume auto`` produces the
same parameters and logged losses as the uninterrupted run.
"""
import itertools
import logging
from typing import Dict, Iterator, List, Optional, Tuple, Union

from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop
from mmpretrain.registry import LOOPS
from torch.utils.data import BatchSampler, DataLoader, Sampler

from mapet.engine.hooks.exact_resume import ExactResumeHook

__all__ = ['ExactResumeEpochBasedTrainLoop']


class _SkipFirst(Sampler):
    """Yield ``sampler``'s indices after the first ``num_skip`` (one epoch).

    ``__len__`` stays the full epoch length so that ``len(dataloader)``,
    ``batch_idx`` and MMEngine's end-of-epoch checks keep their meaning.
    """

    def __init__(self, sampler: Sampler, num_skip: int) -> None:
        self.sampler = sampler
        self.num_skip = num_skip

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(iter(self.sampler), self.num_skip, None)

    def __len__(self) -> int:
        return len(self.sampler)


@LOOPS.register_module()
class ExactResumeEpochBasedTrainLoop(EpochBasedTrainLoop):
    """``EpochBasedTrainLoop`` with exact mid-epoch resume.

    Same arguments as MMEngine's loop, plus:

    Args:
        exact_randomness (bool): Register :class:`ExactResumeHook` (if the
            config did not) so that augmentation and model randomness are
            reproducible across a resume. Defaults to True.
    """

    def __init__(self,
                 runner,
                 dataloader: Union[DataLoader, Dict],
                 max_epochs: int,
                 val_begin: int = 1,
                 val_interval: int = 1,
                 dynamic_intervals: Optional[List[Tuple[int, int]]] = None,
                 exact_randomness: bool = True) -> None:
        super().__init__(runner, dataloader, max_epochs, val_begin,
                         val_interval, dynamic_intervals)
        if exact_randomness and not any(
                isinstance(h, ExactResumeHook) for h in runner.hooks):
            runner.register_hook(ExactResumeHook())

    def _batches_done_in_epoch(self) -> int:
        """Batches of the current epoch already trained (from a resume)."""
        done = self._iter - self._epoch * len(self.dataloader)
        if not 0 <= done <= len(self.dataloader):
            raise RuntimeError(
                f'Cannot resume at iteration {self._iter} of epoch '
                f'{self._epoch}: an epoch has {len(self.dataloader)} batches '
                'here, so the checkpoint was written with a different batch '
                'size, world size or dataset.')
        return done

    def _skip_batches(self, num_batches: int) -> Optional[Tuple]:
        """Make the next ``iter(dataloader)`` start ``num_batches`` later.

        Returns:
            tuple | None: What to restore after the epoch, or None when the
            batch sampler is not PyTorch's ``BatchSampler`` (then batches are
            drawn and dropped instead, still exact, only slower).
        """
        batch_sampler = self.dataloader.batch_sampler
        if type(batch_sampler) is not BatchSampler:
            return None
        original = batch_sampler.sampler
        batch_sampler.sampler = _SkipFirst(
            original, num_batches * batch_sampler.batch_size)
        return batch_sampler, original

    def run_epoch(self) -> None:
        """Iterate one epoch, starting after the batches already trained."""
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        done = self._batches_done_in_epoch()
        restore = None
        if 0 < done < len(self.dataloader):
            print_log(
                f'Resuming epoch {self._epoch} at batch {done}/'
                f'{len(self.dataloader)} (iteration {self._iter}).',
                logger='current',
                level=logging.INFO)
            restore = self._skip_batches(done)
        try:
            if done < len(self.dataloader):
                batches = iter(self.dataloader)
                if restore is None and done:
                    print_log(
                        'Custom batch sampler: skipping the trained batches '
                        'by loading them (slower, same result).',
                        logger='current',
                        level=logging.WARNING)
                    for _ in range(done):
                        next(batches)
                for idx, data_batch in enumerate(batches, start=done):
                    self.run_iter(idx, data_batch)
        finally:
            if restore is not None:
                batch_sampler, original = restore
                batch_sampler.sampler = original
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1
