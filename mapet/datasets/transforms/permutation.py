"""Per-image patch permutation (and MIM mask) for MaPeT pre-training."""
from typing import Optional, Sequence, Tuple, Union

import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS

# BEiT masks 75 of 196 patches; the paper does not state MIM's ratio, so the
# default keeps BEiT's fraction for any patch grid.
BEIT_MASK_RATIO = 75 / 196
MODES = ('mapet', 'pim', 'mim')


def _pair(value: Union[int, Sequence[int]], name: str) -> Tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if len(value) != 2:
        raise ValueError(f'{name} must be an int or (h, w), got {value!r}.')
    return int(value[0]), int(value[1])


@TRANSFORMS.register_module()
class PermutationMaskGenerator(BaseTransform):
    """Sample one patch permutation per image (and the MIM mask).

    The payload per image is N small integers; the attention masks are
    built once on the model side (see ``MaPeTViT``), never per sample.

    Randomness comes from numpy's global RNG, like mmpretrain's
    ``BEiTMaskGenerator``. Under the pre-training loop
    (``ExactResumeEpochBasedTrainLoop``) the pipeline runs inside
    :class:`~mapet.datasets.sample_rng.PerSampleRNG`, which seeds that RNG
    from ``(seed, epoch, sample_idx)`` before each sample: the permutation
    of an image in an epoch is then the same whatever the workers, the
    world size or a resume. Outside that loop the stream is MMEngine's
    per-worker seeding (reproducible for a fixed seed and ``num_workers``).

    **Required Keys**:

    - None (the permutation depends on ``input_size`` and ``patch_size``).

    **Added Keys**:

    - permutation (np.ndarray): int64 (N,), a permutation of ``0..N-1``
      (raster order of the patch grid); the first ``cutting_point`` entries
      are the context for ``'mapet'``/``'pim'``.
    - mask (np.ndarray): ``'mim'`` only, bool (N,), True = patch replaced by
      the mask token; it masks ``permutation[:num_masking_patches]``.

    Args:
        input_size (int | Sequence[int]): Image size (h, w) fed to the
            backbone. Defaults to 224.
        patch_size (int | Sequence[int]): Patch size. Defaults to 16.
        mode (str): ``'mapet'``, ``'pim'`` or ``'mim'``. Defaults to
            ``'mapet'``.
        num_masking_patches (int, optional): ``'mim'`` only: the number of
            masked patches. Defaults to None.
        mask_ratio (float, optional): ``'mim'`` only: the masked fraction of
            N (rounded), used when ``num_masking_patches`` is None. If both
            are None, BEiT's 75 of 196 scaled to N.
    """

    def __init__(self,
                 input_size: Union[int, Sequence[int]] = 224,
                 patch_size: Union[int, Sequence[int]] = 16,
                 mode: str = 'mapet',
                 num_masking_patches: Optional[int] = None,
                 mask_ratio: Optional[float] = None) -> None:
        if mode not in MODES:
            raise ValueError(f'Unknown mode {mode!r} for '
                             f'PermutationMaskGenerator; choose one of '
                             f'{MODES}.')
        self.input_size = _pair(input_size, 'input_size')
        self.patch_size = _pair(patch_size, 'patch_size')
        for size, patch in zip(self.input_size, self.patch_size):
            if patch <= 0 or size % patch:
                raise ValueError(
                    f'input_size {self.input_size} is not divisible by '
                    f'patch_size {self.patch_size}; use the backbone\'s '
                    'img_size and patch_size.')
        self.grid = (self.input_size[0] // self.patch_size[0],
                     self.input_size[1] // self.patch_size[1])
        self.num_patches = self.grid[0] * self.grid[1]
        self.mode = mode

        if mode != 'mim':
            if num_masking_patches is not None or mask_ratio is not None:
                raise ValueError(
                    'num_masking_patches/mask_ratio apply to mode="mim" '
                    f'only; mode={mode!r} predicts the targets after the '
                    'backbone\'s cutting_point.')
            self.num_masking_patches = None
            return
        if num_masking_patches is None:
            ratio = BEIT_MASK_RATIO if mask_ratio is None else mask_ratio
            if not 0 < ratio < 1:
                raise ValueError(f'mask_ratio={ratio} must lie in (0, 1).')
            num_masking_patches = int(round(ratio * self.num_patches))
        if not 1 <= num_masking_patches <= self.num_patches - 1:
            raise ValueError(
                f'num_masking_patches={num_masking_patches} must lie in '
                f'[1, {self.num_patches - 1}] for {self.num_patches} '
                'patches.')
        self.num_masking_patches = int(num_masking_patches)

    def transform(self, results: dict) -> dict:
        """Add ``permutation`` (and ``mask`` for ``'mim'``) to ``results``.

        Args:
            results (dict): Result dict from the previous transform.

        Returns:
            dict: ``results`` with the added keys.
        """
        permutation = np.random.permutation(self.num_patches).astype(
            np.int64)
        results['permutation'] = permutation
        if self.mode == 'mim':
            mask = np.zeros(self.num_patches, dtype=bool)
            mask[permutation[:self.num_masking_patches]] = True
            results['mask'] = mask
        return results

    def __repr__(self) -> str:
        repr_str = self.__class__.__name__
        repr_str += f'(input_size={self.input_size}, '
        repr_str += f'patch_size={self.patch_size}, '
        repr_str += f"mode='{self.mode}', "
        repr_str += f'num_patches={self.num_patches}, '
        repr_str += f'num_masking_patches={self.num_masking_patches})'
        return repr_str
