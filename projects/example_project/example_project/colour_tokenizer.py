"""A tiny, weight-free visual tokenizer: the quantised colour of each patch.

A user-written ``target_generator`` for MaPeT: the token of a patch is its
mean RGB colour quantised to ``levels`` bins per channel, so the vocabulary
has ``levels ** 3`` ids. It needs no download and no token store, which makes
it handy to try MaPeT pre-training on a new, small dataset on a CPU. It is a
much weaker target than k-CLIP or VQ-KD (no semantics, only coarse colour):
use it to check a data/config setup, not to reproduce the paper.
"""
from typing import Any, Dict, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mapet.models.tokenizers.base import FrozenTokenizerMixin
from mmpretrain.registry import MODELS


@MODELS.register_module()
class PatchColourTokenizer(FrozenTokenizerMixin, nn.Module):
    """Token of a patch = its quantised mean RGB colour.

    ``forward(images)`` takes (B, 3, H, W) images normalised with
    ``mean``/``std`` (what MaPeT's data preprocessor feeds the model; ``H``
    and ``W`` multiples of ``patch_size``) and returns LongTensor
    (B, (H / patch_size) * (W / patch_size)) of row-major token ids
    ``r * levels ** 2 + g * levels + b``, where ``r, g, b`` are the patch's
    mean channel values in [0, 1] split into ``levels`` equal bins.

    Args:
        patch_size (int): Pixels per token side; equal to the ViT patch size
            so that the token grid is the patch grid. Defaults to 16.
        levels (int): Bins per colour channel (vocabulary ``levels ** 3``).
            Defaults to 4.
        mean (Sequence[float]): Per-channel RGB mean the images were
            normalised with, on the 0-255 scale (the data preprocessor's
            ``mean``). Defaults to the ImageNet mean.
        std (Sequence[float]): Per-channel RGB std, 0-255 scale (the data
            preprocessor's ``std``). Defaults to the ImageNet std.
        input_size (int): Image side the token-extraction tools
            (``tools/tokenizers/extract_tokens.py``) resize/crop to.
            Defaults to 224.
    """

    def __init__(self,
                 patch_size: int = 16,
                 levels: int = 4,
                 mean: Sequence[float] = (123.675, 116.28, 103.53),
                 std: Sequence[float] = (58.395, 57.12, 57.375),
                 input_size: int = 224) -> None:
        super().__init__()
        if patch_size < 1 or levels < 2:
            raise ValueError('PatchColourTokenizer needs patch_size >= 1 and '
                             f'levels >= 2, got patch_size={patch_size}, '
                             f'levels={levels}.')
        if len(mean) != 3 or len(std) != 3:
            raise ValueError('mean and std need one value per RGB channel, '
                             f'got mean={list(mean)}, std={list(std)}.')
        self.patch_size = patch_size
        self.levels = levels
        self.vocab_size = levels**3
        # FrozenTokenizerMixin attributes (used by tools/tokenizers/*).
        self.stride = patch_size
        self.default_input_size = input_size
        self.mean = tuple(float(m) / 255. for m in mean)
        self.std = tuple(float(s) / 255. for s in std)
        self.register_buffer(
            'pixel_mean', torch.tensor(self.mean).view(1, 3, 1, 1),
            persistent=False)
        self.register_buffer(
            'pixel_std', torch.tensor(self.std).view(1, 3, 1, 1),
            persistent=False)
        self.register_buffer(
            'channel_weight',
            torch.tensor([levels**2, levels, 1]).view(1, 3, 1, 1),
            persistent=False)
        self._freeze()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Row-major token ids, LongTensor (B, h * w)."""
        self._check_images(images)
        rgb = images.float() * self.pixel_std + self.pixel_mean  # [0, 1]
        colour = F.avg_pool2d(rgb, self.patch_size).clamp(0., 1.)
        bins = (colour * self.levels).long().clamp(max=self.levels - 1)
        return (bins * self.channel_weight).sum(1).flatten(1)

    def metadata(self) -> Dict[str, Any]:
        """Description recorded in token store manifests."""
        return dict(
            type=type(self).__name__,
            vocab_size=self.vocab_size,
            patch_size=self.patch_size,
            levels=self.levels)

    def extra_repr(self) -> str:
        return (f'patch_size={self.patch_size}, levels={self.levels}, '
                f'vocab_size={self.vocab_size}')
