"""Per-sample randomness: augmentations as a pure function of the sample.

Resuming a run bit for bit needs every random draw to be reproducible from
what a checkpoint knows. Random transforms normally draw from the *global*
RNGs of whichever process runs them (numpy, ``random``, torch); in a
dataloader worker those streams start from a fixed seed when the worker
starts, so after a restart they are at a different position than in the
uninterrupted run, and with non-persistent workers they even repeat every
epoch.

:class:`PerSampleRNG` removes that state: before running its transforms
on a sample it seeds the three global RNGs from
``(seed, epoch, sample_idx)``, and afterwards (in the main process; a
dataloader worker has no other use for them) it puts the previous global
states back. Every random transform inside it (stock ones like
``ColorJitter`` as well as ``RandomPatchPermutation``) then produces the
same output for the same sample in the same epoch, whatever the process,
the number of workers, ``persistent_workers``, the world size, or a
resume.

``seed`` and ``epoch`` live in a small shared-memory array created when
this module is imported (before any dataloader worker is forked), written
by :class:`~mapet.engine.hooks.ExactResumeHook` in the main process and
read by the workers, so an epoch change reaches persistent workers too.
This needs the ``fork`` start method (MMEngine's default on Linux and the
one our configs set); under ``spawn`` a worker would see a fresh array,
which :class:`PerSampleRNG` detects and reports instead of silently using
epoch 0.
"""
import contextlib
import multiprocessing as mp
import random
from typing import Iterator, Optional, Sequence, Union

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.dataset import Compose
from mmpretrain.registry import TRANSFORMS

__all__ = [
    'set_sample_rng_state', 'get_sample_rng_state', 'derive_seed_words',
    'seed_global_rngs', 'preserve_global_rngs', 'sample_rng_scope',
    'PerSampleRNG',
    'wrap_dataset_pipelines'
]

# [active, seed, epoch]; lock-free: one writer (the main process), and it
# only writes between epochs, while no worker is transforming.
_ACTIVE, _SEED, _EPOCH = range(3)
_SHARED = mp.RawArray('q', 3)

# Distinguishes the streams derived from the same counters.
SAMPLE_STREAM = 0x5A4D  # per-sample augmentation
ITER_STREAM = 0x17E2  # per-iteration model randomness (see ExactResumeHook)


def set_sample_rng_state(seed: Optional[int] = None,
                         epoch: Optional[int] = None) -> None:
    """Publish the run's seed and/or the current epoch to all workers.

    Args:
        seed (int, optional): Base seed of the run (rank independent).
        epoch (int, optional): Current epoch (0-based).
    """
    if seed is not None:
        _SHARED[_SEED] = int(seed)
        _SHARED[_ACTIVE] = 1
    if epoch is not None:
        _SHARED[_EPOCH] = int(epoch)


def get_sample_rng_state() -> Optional[tuple]:
    """Return ``(seed, epoch)``, or None if no seed was published yet."""
    if not _SHARED[_ACTIVE]:
        return None
    return int(_SHARED[_SEED]), int(_SHARED[_EPOCH])


def reset_sample_rng_state() -> None:
    """Forget the published seed (tests; a new run in the same process)."""
    _SHARED[_ACTIVE] = 0
    _SHARED[_SEED] = 0
    _SHARED[_EPOCH] = 0


def derive_seed_words(*keys: int, num_words: int = 4) -> np.ndarray:
    """Hash integer counters into independent 32-bit seed words.

    Uses :class:`numpy.random.SeedSequence`, so nearby counters (epoch 3
    and 4, sample 10 and 11) give statistically independent streams.

    Args:
        *keys (int): Non-negative counters, e.g. ``(seed, epoch, idx)``.
        num_words (int): Number of uint32 words. Defaults to 4.

    Returns:
        np.ndarray: ``num_words`` uint32 values.
    """
    return np.random.SeedSequence([int(k) for k in keys]).generate_state(
        num_words, np.uint32)


def seed_global_rngs(*keys: int, all_devices: bool = False) -> None:
    """Seed numpy's, Python's and torch's global RNGs from ``keys``.

    Args:
        *keys (int): Counters passed to :func:`derive_seed_words`.
        all_devices (bool): Also seed every CUDA generator (model randomness:
            dropout, drop path). Per-sample transforms leave it False: they
            draw on the CPU, and :func:`preserve_global_rngs` restores only
            the CPU state, so touching CUDA there would clobber the main
            process's CUDA stream when ``num_workers=0``. Defaults to False.
    """
    words = derive_seed_words(*keys)
    np.random.seed(words)
    random.seed(int(words[0]) << 32 | int(words[1]))
    torch_seed = int(words[2]) << 32 | int(words[3])
    if all_devices:
        torch.manual_seed(torch_seed)  # CPU and every CUDA device
    else:
        torch.random.default_generator.manual_seed(torch_seed)


@contextlib.contextmanager
def sample_rng_scope(seed: int, epoch: int, sample_idx: int,
                     restore: bool) -> Iterator[None]:
    """Seed the global RNGs for one sample; restore them after if asked.

    Args:
        seed (int): Base seed of the run.
        epoch (int): Current epoch.
        sample_idx (int): Index of the sample.
        restore (bool): Put the previous global states back on exit. Needed
            in the main process (``num_workers=0``: model randomness and the
            rest of the loop share those RNGs); a dataloader worker runs
            nothing but pipelines and reseeds before every sample, so there
            it is skipped: copying MT19937's state out and back costs about
            0.1 ms per sample, half of a pre-cropped worker's time.
    """
    if restore:
        with preserve_global_rngs():
            seed_global_rngs(seed, epoch, sample_idx, SAMPLE_STREAM)
            yield
    else:
        seed_global_rngs(seed, epoch, sample_idx, SAMPLE_STREAM)
        yield


@contextlib.contextmanager
def preserve_global_rngs() -> Iterator[None]:
    """Restore numpy's, Python's and torch's (CPU) global RNGs on exit."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    torch_state = torch.get_rng_state()
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
        torch.set_rng_state(torch_state)


@TRANSFORMS.register_module()
class PerSampleRNG(BaseTransform):
    """Run ``transforms`` with global RNGs seeded by (seed, epoch, sample).

    **Required Keys**:

    - sample_idx (int): added by MMEngine's ``BaseDataset``.

    **Modified Keys**: whatever the wrapped ``transforms`` modify.

    Args:
        transforms (Sequence[dict | callable]): Transforms to run.
        require_state (bool): Raise if no seed was published with
            :func:`set_sample_rng_state` in this process (a worker started
            with ``spawn``, or no ``ExactResumeHook``). ``False`` runs the
            transforms unseeded in that case (browsing a dataset outside a
            runner). Defaults to True.
    """

    def __init__(self,
                 transforms: Sequence[Union[dict, callable]],
                 require_state: bool = True) -> None:
        if isinstance(transforms, (list, tuple)):
            # Build from mmpretrain's registry (also outside a runner, where
            # no default scope is set).
            transforms = Compose([
                TRANSFORMS.build(t) if isinstance(t, dict) else t
                for t in transforms
            ])
        elif not callable(transforms):
            raise TypeError('PerSampleRNG: transforms must be a list of '
                            f'transforms or a callable, got {transforms!r}')
        self.transforms = transforms
        self.require_state = require_state

    def transform(self, results: dict) -> Optional[dict]:
        """Run the wrapped transforms with per-sample seeded RNGs.

        Args:
            results (dict): Result dict from the dataset.

        Returns:
            dict | None: What the wrapped transforms return.
        """
        state = get_sample_rng_state()
        if state is None:
            if self.require_state:
                raise RuntimeError(
                    'PerSampleRNG: no run seed has been published in this '
                    'process. It is set by ExactResumeHook (added by '
                    'ExactResumeEpochBasedTrainLoop) in the main process and '
                    'reaches dataloader workers through shared memory, which '
                    "needs env_cfg.mp_cfg.mp_start_method='fork' (or "
                    'num_workers=0).')
            return self.transforms(results)
        if 'sample_idx' not in results:
            raise KeyError(
                'PerSampleRNG needs results["sample_idx"] (added by '
                "MMEngine's BaseDataset.get_data_info); the dataset "
                f'produced only {sorted(results)}.')
        seed, epoch = state
        in_worker = torch.utils.data.get_worker_info() is not None
        with sample_rng_scope(seed, epoch, int(results['sample_idx']),
                              restore=not in_worker):
            return self.transforms(results)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(transforms={self.transforms!r}, '
                f'require_state={self.require_state})')


def wrap_dataset_pipelines(dataset) -> int:
    """Wrap a dataset's whole pipeline in :class:`PerSampleRNG`.

    Idempotent. Called in the main process before the first worker starts,
    so workers inherit the wrapped pipeline.

    Args:
        dataset: A dataset with a ``pipeline`` (``BaseDataset``).

    Returns:
        int: 1 if the pipeline was newly wrapped, else 0.

    Raises:
        TypeError: For a dataset wrapper (``ConcatDataset``,
            ``RepeatDataset``, ...): its leaves share ``sample_idx`` values,
            so their items would draw the same augmentations.
    """
    if not hasattr(dataset, 'pipeline'):
        raise TypeError(
            f'Exact resume seeds augmentations from (seed, epoch, '
            f'sample_idx), but the training dataset is a '
            f'{type(dataset).__name__} wrapper whose items share sample_idx '
            'values. Use a single dataset (merge the annotation files; '
            'train more epochs instead of RepeatDataset), or set '
            'train_cfg.exact_randomness=False to keep per-worker seeding.')
    pipeline = dataset.pipeline
    if isinstance(pipeline, PerSampleRNG):
        return 0
    transforms = getattr(pipeline, 'transforms', None)
    if transforms and all(isinstance(t, PerSampleRNG) for t in transforms):
        return 0
    dataset.pipeline = PerSampleRNG(pipeline)
    return 1
