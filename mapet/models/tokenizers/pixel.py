"""A control tokenizer: nearest k-means centroid of raw pixel patches.

Not a method of the paper: the objectives study
(``tools/analysis_tools/objective_study.py``) uses it to separate "the
pre-training objective does not learn" from "the targets carry no
information" when no pretrained CLIP tower is available (a randomly
initialised CLIP tower gives k-means clusters of random convolutional
features). Token of a ``stride x stride`` patch = index of the nearest
centroid (squared L2, ties to the lower index) of its normalised pixels,
flattened channel-major (``C, y, x``) after ``pool x pool`` average pooling.
"""
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS
from torch import nn

from .base import FrozenTokenizerMixin
from .codebook import centroids_sha256, load_codebook, nearest_centroid

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def pixel_patch_features(images: torch.Tensor, stride: int,
                         pool: int = 1) -> torch.Tensor:
    """(B, T, 3 * (stride / pool)^2) features of the patches, row-major."""
    if pool > 1:
        images = F.avg_pool2d(images, pool)
        stride //= pool
    b = images.shape[0]
    patches = F.unfold(images.float(), stride, stride=stride)  # (B, D, T)
    return patches.transpose(1, 2).reshape(b, -1, patches.shape[1])


@MODELS.register_module()
class PixelKMeansTokenizer(FrozenTokenizerMixin, nn.Module):
    """Nearest centroid of pooled pixel patches (a control, see module).

    Args:
        codebook (str | np.ndarray): Codebook file or (K, D) centroids.
        stride (int): Pixels per token side. Defaults to 16.
        pool (int): Average pooling before flattening. Defaults to 4.
        input_size (int): Default extraction size. Defaults to 224.
    """

    mean = IMAGENET_MEAN
    std = IMAGENET_STD
    interpolation = 'bicubic'

    def __init__(self,
                 codebook: Union[str, np.ndarray],
                 stride: int = 16,
                 pool: int = 4,
                 input_size: int = 224) -> None:
        super().__init__()
        if isinstance(codebook, np.ndarray):
            centroids = np.ascontiguousarray(codebook, dtype=np.float32)
        else:
            centroids = load_codebook(codebook)[0]
        dim = 3 * (stride // pool)**2
        if stride % pool or centroids.ndim != 2 or centroids.shape[1] != dim:
            raise ValueError(f'codebook of shape {centroids.shape} does not '
                             f'fit stride {stride} / pool {pool} (dim {dim})')
        self.stride = int(stride)
        self.pool = int(pool)
        self.default_input_size = int(input_size)
        self.vocab_size = int(centroids.shape[0])
        self.codebook_sha256 = centroids_sha256(centroids)
        self.register_buffer('codebook', torch.from_numpy(centroids))
        self._freeze()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self._check_images(images)
        feats = pixel_patch_features(images, self.stride, self.pool)
        b, t, d = feats.shape
        return nearest_centroid(feats.reshape(b * t, d),
                                self.codebook).view(b, t)

    def metadata(self) -> Dict[str, Any]:
        return dict(
            type=type(self).__name__,
            stride=self.stride,
            pool=self.pool,
            vocab_size=self.vocab_size,
            codebook_sha256=self.codebook_sha256)
