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
``(seed, epoch, sample_idx)`` (plus the index into the outermost dataset
when it is a ``ConcatDataset``/``RepeatDataset``/... wrapper, see
:func:`wrap_dataset_pipelines`), and afterwards it puts the previous global
states back. Every random transform inside it (stock ones like
``ColorJitter`` as well as ``PermutationMaskGenerator``) then produces the
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
from typing import Iterator, List, Optional, Sequence, Union

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.dataset import Compose
from mmpretrain.registry import TRANSFORMS

__all__ = [
    'set_sample_rng_state', 'get_sample_rng_state', 'derive_seed_words',
    'seed_global_rngs', 'preserve_global_rngs', 'PerSampleRNG',
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
        keys = [seed, epoch]
        if _TOP_INDEX[0] is not None:
            # Reached through a dataset wrapper (see wrap_dataset_pipelines):
            # the index into the outermost dataset tells apart the leaves of
            # a ConcatDataset and the repeats of a RepeatDataset, which share
            # leaf-local sample_idx values.
            keys.append(_TOP_INDEX[0])
        keys.append(int(results['sample_idx']))
        with preserve_global_rngs():
            seed_global_rngs(*keys, SAMPLE_STREAM)
            return self.transforms(results)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(transforms={self.transforms!r}, '
                f'require_state={self.require_state})')


def _datasets_of(dataset) -> List:
    """The leaf datasets of ``dataset`` (unwraps Concat/Repeat/... )."""
    if hasattr(dataset, 'datasets'):
        out = []
        for d in dataset.datasets:
            out += _datasets_of(d)
        return out
    if hasattr(dataset, 'dataset') and not hasattr(dataset, 'pipeline'):
        return _datasets_of(dataset.dataset)
    return [dataset]


# Index into the outermost (wrapper) dataset of the item being fetched, set
# by _recording_getitem for the duration of that call; None outside.
# Dataloader workers fetch one item at a time, so a process-global suffices.
_TOP_INDEX: List[Optional[int]] = [None]


def _recording_getitem(self, idx):
    """``__getitem__`` of the outermost wrapper: records ``idx``."""
    prev = _TOP_INDEX[0]
    _TOP_INDEX[0] = int(idx)
    try:
        return type(self)._mapet_base_cls.__getitem__(self, idx)
    finally:
        _TOP_INDEX[0] = prev


def _recording_reduce_ex(self, protocol):
    """Pickle (spawn workers) / deepcopy as the base class, then restore the
    index-recording class on load: the dynamic class is not importable."""
    cls = type(self)
    self.__class__ = cls._mapet_base_cls
    try:
        rv = self.__reduce_ex__(protocol)
    finally:
        self.__class__ = cls
    return (_rebuild_index_recording, (rv[0], rv[1])) + tuple(rv[2:])


_INDEX_RECORDING_CLASSES: dict = {}


def _index_recording_class(base: type) -> type:
    """A subclass of ``base`` whose ``__getitem__`` records the index.

    ``__getitem__`` is looked up on the type, so an instance attribute would
    not do; the subclass adds no slots, so ``obj.__class__`` can be
    switched to it in place (the dataloader already holds ``obj``).
    """
    cls = _INDEX_RECORDING_CLASSES.get(base)
    if cls is None:
        cls = type(
            base.__name__, (base, ),
            dict(
                __slots__=(),
                __module__=base.__module__,
                __qualname__=base.__qualname__,
                _mapet_base_cls=base,
                __getitem__=_recording_getitem,
                __reduce_ex__=_recording_reduce_ex))
        _INDEX_RECORDING_CLASSES[base] = cls
    return cls


def _rebuild_index_recording(func, args):
    obj = func(*args)
    obj.__class__ = _index_recording_class(type(obj))
    return obj


def wrap_dataset_pipelines(dataset) -> int:
    """Wrap every leaf dataset's whole pipeline in :class:`PerSampleRNG`.

    Idempotent. Called in the main process before the first worker starts,
    so workers inherit the wrapped pipeline.

    If ``dataset`` is a wrapper (``ConcatDataset``, ``RepeatDataset``,
    ...), its class is also given a ``__getitem__`` that records the index
    into ``dataset`` while the item is fetched, and :class:`PerSampleRNG`
    adds that index to the seed key. Leaf-local ``sample_idx`` values
    repeat across the leaves of a ``ConcatDataset`` and across the repeats
    of a ``RepeatDataset``; the outermost index does not, so every item
    gets its own draws. An unwrapped dataset keeps the
    ``(seed, epoch, sample_idx)`` key (there the two indices coincide).

    Args:
        dataset: A dataset or dataset wrapper.

    Returns:
        int: Number of pipelines newly wrapped.
    """
    wrapped = 0
    leaves = _datasets_of(dataset)
    for leaf in leaves:
        pipeline = getattr(leaf, 'pipeline', None)
        if pipeline is None or isinstance(pipeline, PerSampleRNG):
            continue
        transforms = getattr(pipeline, 'transforms', None)
        if transforms and all(isinstance(t, PerSampleRNG) for t in transforms):
            continue
        leaf.pipeline = PerSampleRNG(pipeline)
        wrapped += 1
    is_wrapper = not (len(leaves) == 1 and leaves[0] is dataset)
    if is_wrapper and \
            type(dataset) not in _INDEX_RECORDING_CLASSES.values():
        dataset.__class__ = _index_recording_class(type(dataset))
    return wrapped
