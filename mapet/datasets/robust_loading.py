"""Image loading with an explicit policy for corrupt or truncated files.

MMCV's ``LoadImageFromFile`` fails on an undecodable file with a bare
``AssertionError: failed to load image`` deep in a dataloader worker (or,
with ``ignore_empty=True``, silently replaces the sample). Large crawled
datasets always contain a few broken files, so the choice must be
explicit: :class:`SafeLoadImageFromFile` either stops with an error naming
the file and the option to change (``on_corrupt='error'``, the default), or
skips the sample and counts it (``on_corrupt='skip'``), stopping once more
than ``max_skipped`` files were skipped.

Skipped samples return None, which makes MMEngine's ``BaseDataset`` load
another (randomly chosen) sample in training; the count is kept in shared
memory, so it is the total over all dataloader workers of this process
(:func:`num_corrupt_skipped`).
"""
import logging
import multiprocessing as mp
from typing import Optional

import mmcv
import mmengine.fileio as fileio
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine.logging import print_log
from mmpretrain.registry import TRANSFORMS

__all__ = [
    'CorruptImageError', 'SafeLoadImageFromFile', 'num_corrupt_skipped',
    'reset_corrupt_skipped'
]

# Created at import, before workers fork: all workers share one counter.
_SKIPPED = mp.Value('q', 0)


class CorruptImageError(RuntimeError):
    """An image file could not be decoded (raised with on_corrupt='error')."""


def num_corrupt_skipped() -> int:
    """Corrupt images skipped so far by this process and its workers."""
    return int(_SKIPPED.value)


def reset_corrupt_skipped() -> None:
    """Reset the shared skip counter (tests; a new run in one process)."""
    with _SKIPPED.get_lock():
        _SKIPPED.value = 0


@TRANSFORMS.register_module()
class SafeLoadImageFromFile(LoadImageFromFile):
    """``LoadImageFromFile`` with a documented corrupt-file policy.

    **Required Keys**:

    - img_path

    **Added Keys**:

    - img, img_shape, ori_shape

    Args:
        on_corrupt (str): ``'error'`` raises :class:`CorruptImageError`
            naming the file; ``'skip'`` returns None (the dataset then loads
            another sample) and counts the file. Defaults to 'error'.
        max_skipped (int): With ``'skip'``, raise once more than this many
            files were skipped (a mostly broken dataset is an error, not
            noise). Defaults to 100.
        **kwargs: Arguments of MMCV's ``LoadImageFromFile`` (``to_float32``,
            ``color_type``, ``imdecode_backend``, ``backend_args``);
            ``ignore_empty`` is replaced by ``on_corrupt``.
    """

    def __init__(self,
                 on_corrupt: str = 'error',
                 max_skipped: int = 100,
                 **kwargs) -> None:
        if on_corrupt not in ('error', 'skip'):
            raise ValueError(
                "SafeLoadImageFromFile: on_corrupt must be 'error' or "
                f"'skip', got {on_corrupt!r}.")
        if 'ignore_empty' in kwargs:
            raise ValueError(
                'SafeLoadImageFromFile: use on_corrupt="skip" instead of '
                'ignore_empty.')
        super().__init__(**kwargs)
        self.on_corrupt = on_corrupt
        self.max_skipped = int(max_skipped)

    def _decode(self, filename: str) -> np.ndarray:
        try:
            img_bytes = fileio.get(filename, backend_args=self.backend_args)
        except FileNotFoundError as e:
            raise CorruptImageError(f'missing file ({e})') from None
        if not img_bytes:
            raise CorruptImageError('empty file (0 bytes)')
        try:
            img = mmcv.imfrombytes(
                img_bytes, flag=self.color_type, backend=self.imdecode_backend)
        except Exception as e:  # decoders raise many types
            raise CorruptImageError(f'{type(e).__name__}: {e}') from None
        if img is None:  # OpenCV signals truncated/undecodable data so
            raise CorruptImageError(
                f'cannot be decoded by {self.imdecode_backend!r} '
                f'({len(img_bytes)} bytes; truncated or not an image)')
        return img

    def transform(self, results: dict) -> Optional[dict]:
        """Load the image, or apply the corrupt-file policy.

        Args:
            results (dict): Needs ``img_path``.

        Returns:
            dict | None: ``results`` with the image, or None (skipped).
        """
        filename = results['img_path']
        try:
            img = self._decode(filename)
        except CorruptImageError as e:
            reason = str(e)
            if self.on_corrupt == 'error':
                raise CorruptImageError(
                    f'Corrupt image {filename}: {reason}. Remove or replace '
                    'the file, or set on_corrupt="skip" in '
                    'SafeLoadImageFromFile to skip such files (counted, up '
                    'to max_skipped).') from None
            with _SKIPPED.get_lock():
                _SKIPPED.value += 1
                count = int(_SKIPPED.value)
            if count > self.max_skipped:
                raise CorruptImageError(
                    f'Corrupt image {filename}: {reason}. {count} corrupt '
                    f'images skipped, more than max_skipped='
                    f'{self.max_skipped}: the dataset is damaged.') from None
            print_log(
                f'SafeLoadImageFromFile: skipped corrupt image {filename} '
                f'({reason}); {count} skipped so far.',
                logger='current',
                level=logging.WARNING)
            return None
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(on_corrupt={self.on_corrupt!r}, '
                f'max_skipped={self.max_skipped}, '
                f'to_float32={self.to_float32}, '
                f"color_type='{self.color_type}', "
                f"imdecode_backend='{self.imdecode_backend}', "
                f'backend_args={self.backend_args})')
