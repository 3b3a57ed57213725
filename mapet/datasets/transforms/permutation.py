"""Per-image patch permutation for MaPeT / PIM pre-training."""
from typing import Sequence, Tuple, Union

import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS


def _pair(value: Union[int, Sequence[int]], name: str) -> Tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if len(value) != 2:
        raise ValueError(f'{name} must be an int or (h, w), got {value!r}.')
    return int(value[0]), int(value[1])


@TRANSFORMS.register_module()
class RandomPatchPermutation(BaseTransform):
    """Sample one permutation of the patch indices per image.

    The output is the same for MaPeT and PIM (the pre-training mode is the
    backbone's ``mode``, set once in the model config), and the payload per
    image is N small integers: the attention masks are built once on the
    model side (see ``MaPeTViT``), never per sample. The MIM baseline uses a
    mask generator instead (mmpretrain's ``SimMIMMaskGenerator``).

    Randomness comes from numpy's global RNG, like mmpretrain's
    ``BEiTMaskGenerator``. Under the pre-training loop
    (``ExactResumeEpochBasedTrainLoop``) the pipeline runs inside
    :class:`~mapet.datasets.transforms.PerSampleRNG`, which seeds that RNG
    from ``(seed, epoch, sample_idx)`` before each sample: the permutation
    of an image in an epoch is then the same whatever the workers, the
    world size or a resume.

    **Required Keys**:

    - None (the permutation depends on ``input_size`` and ``patch_size``).

    **Added Keys**:

    - permutation (np.ndarray): int64 (N,), a permutation of ``0..N-1``
      (raster order of the patch grid); the first ``cutting_point`` entries
      (a backbone setting) are the context.

    Args:
        input_size (int | Sequence[int]): Image size (h, w) fed to the
            backbone. Defaults to 224.
        patch_size (int | Sequence[int]): Patch size. Defaults to 16.
    """

    def __init__(self,
                 input_size: Union[int, Sequence[int]] = 224,
                 patch_size: Union[int, Sequence[int]] = 16) -> None:
        self.input_size = _pair(input_size, 'input_size')
        self.patch_size = _pair(patch_size, 'patch_size')
        for size, patch in zip(self.input_size, self.patch_size):
            if patch <= 0 or size <= 0 or size % patch:
                raise ValueError(
                    f'input_size {self.input_size} is not a positive '
                    f'multiple of patch_size {self.patch_size}; use the '
                    "backbone's img_size and patch_size.")
        self.grid = (self.input_size[0] // self.patch_size[0],
                     self.input_size[1] // self.patch_size[1])
        self.num_patches = self.grid[0] * self.grid[1]

    def transform(self, results: dict) -> dict:
        """Add ``permutation`` to ``results``.

        Args:
            results (dict): Result dict from the previous transform.

        Returns:
            dict: ``results`` with the added key.
        """
        results['permutation'] = np.random.permutation(
            self.num_patches).astype(np.int64)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(input_size={self.input_size}, '
                f'patch_size={self.patch_size}, '
                f'num_patches={self.num_patches})')
