"""Counter-based randomness so a resumed run repeats the uninterrupted one.

Instead of saving and restoring RNG *states* (which live in every rank and
every dataloader worker, and which MMEngine does not checkpoint), every
random draw of a run is made a pure function of counters that a checkpoint
already holds:

* data augmentation: ``(seed, epoch, sample_idx)`` through
  :class:`~mapet.datasets.transforms.per_sample_rng.PerSampleRNG`, which this hook wraps
  around every training pipeline;
* model randomness (drop path, dropout, batch augments of the data
  preprocessor): ``(seed, rank, iteration)``: the global RNGs of each rank
  are reseeded before each iteration;
* sampling order: MMEngine's ``DefaultSampler`` already shuffles with
  ``seed + epoch``.

Use it through :class:`~mapet.engine.runners.ExactResumeEpochBasedTrainLoop`
(which registers it and also fast-forwards the sampler mid-epoch).
"""
import logging
from typing import Optional

from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmpretrain.registry import HOOKS

from mapet.datasets.transforms.per_sample_rng import (ITER_STREAM, seed_global_rngs,
                                       set_sample_rng_state,
                                       wrap_dataset_pipelines)

__all__ = ['ExactResumeHook', 'run_base_seed']


def run_base_seed(runner) -> int:
    """The run's seed without MMEngine's per-rank offset.

    With ``randomness.diff_rank_seed=True`` MMEngine adds the rank to the
    seed; the per-sample streams must be the same on every rank (so that a
    sample gets the same augmentation at any world size), so we remove it.

    Args:
        runner: The MMEngine runner.

    Returns:
        int: A non-negative seed shared by all ranks.
    """
    seed = int(runner.seed)
    randomness = getattr(runner, '_randomness_cfg', None) or {}
    if randomness.get('diff_rank_seed', False):
        seed -= get_rank()
    return seed


@HOOKS.register_module()
class ExactResumeHook(Hook):
    """Make all training randomness a function of (seed, epoch, idx, iter).

    Args:
        reseed_every_iter (bool): Reseed the global RNGs of the main process
            from ``(seed, rank, iteration)`` before each iteration. Defaults
            to True.
        wrap_pipelines (bool): Wrap the training dataset's pipeline(s) in
            :class:`PerSampleRNG`. Defaults to True.
    """

    # Reseed before any other before_train_iter hook may draw.
    priority = 'VERY_HIGH'

    def __init__(self,
                 reseed_every_iter: bool = True,
                 wrap_pipelines: bool = True) -> None:
        self.reseed_every_iter = reseed_every_iter
        self.wrap_pipelines = wrap_pipelines
        self._seed: Optional[int] = None

    def before_train(self, runner) -> None:
        """Publish the seed and wrap pipelines before workers start."""
        self._seed = run_base_seed(runner)
        set_sample_rng_state(seed=self._seed, epoch=runner.epoch)
        if self.wrap_pipelines:
            n = wrap_dataset_pipelines(runner.train_dataloader.dataset)
            if n:
                print_log(
                    f'ExactResumeHook: {n} training pipeline(s) now draw '
                    'their randomness from (seed, epoch, sample_idx).',
                    logger='current',
                    level=logging.INFO)

    def before_train_epoch(self, runner) -> None:
        """Publish the epoch (read by workers through shared memory)."""
        set_sample_rng_state(epoch=runner.epoch)

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: Optional[dict] = None) -> None:
        """Reseed this rank's global RNGs from (seed, rank, iteration)."""
        if self.reseed_every_iter:
            # all_devices: drop path / dropout draw from the CUDA generators
            # on a GPU, which a checkpoint does not hold either.
            seed_global_rngs(self._seed, get_rank(), runner.iter, ITER_STREAM,
                             all_devices=True)
