"""Test-only frozen tokenizer for the core training test (custom_imports).

Token of a patch = argmax of a fixed random linear projection of its pixels:
deterministic, no weights to download, ``vocab_size`` as the real ones.
"""
import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS
from torch import nn


@MODELS.register_module()
class CoreTinyTokenizer(nn.Module):
    """Frozen random patch tokenizer.

    Args:
        vocab_size (int): Number of token ids. Defaults to 16.
        patch_size (int): Pixels per token side. Defaults to 8.
        seed (int): Seed of the projection. Defaults to 0.
    """

    def __init__(self,
                 vocab_size: int = 16,
                 patch_size: int = 8,
                 seed: int = 0) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.patch_size = patch_size
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer(
            'weight',
            torch.randn(vocab_size, 3, patch_size, patch_size, generator=gen))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Row-major token ids, LongTensor (B, h * w)."""
        logits = F.conv2d(images, self.weight, stride=self.patch_size)
        return logits.flatten(2).argmax(1)
