"""Classify an image from its visual-token sequence alone (paper Table 7).

Both backbones take token ids (B, T) int64 (``inputs`` packed from
``results['visual_tokens']`` by ``PackInputs(input_key='visual_tokens')``)
and plug into mmpretrain's ``ImageClassifier`` (``extract_feat`` just calls
the backbone), so heads, losses and metrics are mmpretrain's:

* :class:`TokenMLP`: embedding -> Linear(hidden=192) -> ReLU -> average pool;
  with a ``LinearClsHead`` this is the paper's MLP head.
* :class:`TokenViT`: an mmpretrain ``VisionTransformer`` (e.g. ``deit-tiny``)
  whose patch embedding is a token embedding.
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
from mmengine.model import BaseModule
from mmpretrain.models.backbones import VisionTransformer
from mmpretrain.registry import MODELS
from torch import nn

TokenInput = Union[torch.Tensor, List[torch.Tensor]]


def _as_ids(tokens: TokenInput, vocab_size: int) -> torch.Tensor:
    if isinstance(tokens, (list, tuple)):
        tokens = torch.stack(list(tokens))
    if tokens.dtype.is_floating_point or tokens.ndim != 2:
        raise ValueError('expected token ids (B, T) of an integer dtype, got '
                         f'{tokens.dtype} {tuple(tokens.shape)}; pack '
                         "`visual_tokens` with PackInputs(input_key="
                         "'visual_tokens')")
    return tokens.long()


@MODELS.register_module()
class TokenMLP(BaseModule):
    """Embedding, Linear to ``hidden_dims``, ReLU, average pool over tokens.

    Args:
        vocab_size (int): Token vocabulary.
        embed_dims (int): Embedding width. Defaults to 192.
        hidden_dims (int): Output width of the Linear. Defaults to 192.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 vocab_size: int,
                 embed_dims: int = 192,
                 hidden_dims: int = 192,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, embed_dims)
        self.fc = nn.Linear(embed_dims, hidden_dims)
        self.act = nn.ReLU(inplace=True)

    def forward(self, tokens: TokenInput) -> Tuple[torch.Tensor]:
        """Pooled features ``((B, hidden_dims),)``."""
        x = self.act(self.fc(self.embed(_as_ids(tokens, self.vocab_size))))
        return (x.mean(dim=1), )


class _TokenEmbed(nn.Module):
    """Stands in for ``PatchEmbed``: ids (B, h*w) -> ((B, h*w, C), (h, w))."""

    def __init__(self, vocab_size: int, embed_dims: int,
                 grid: Tuple[int, int]) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dims)
        self.init_out_size = grid
        self.vocab_size = vocab_size

    def forward(self, tokens: TokenInput):
        ids = _as_ids(tokens, self.vocab_size)
        if ids.shape[1] != self.init_out_size[0] * self.init_out_size[1]:
            raise ValueError(f'expected {self.init_out_size} = '
                             f'{self.init_out_size[0] * self.init_out_size[1]}'
                             f' tokens per image, got {ids.shape[1]}')
        return self.embed(ids), self.init_out_size


@MODELS.register_module()
class TokenViT(VisionTransformer):
    """Vision Transformer over token embeddings.

    Args:
        vocab_size (int): Token vocabulary.
        grid_size (int | Sequence[int]): Token grid (h, w). Defaults to 14.
        arch (str | dict): ``VisionTransformer`` arch. Defaults to
            'deit-tiny'.
        **kwargs: Other ``VisionTransformer`` arguments (``out_type``,
            ``drop_path_rate``, ...). ``img_size``/``patch_size`` are derived.
    """

    def __init__(self,
                 vocab_size: int,
                 grid_size: Union[int, Sequence[int]] = 14,
                 arch: Union[str, dict] = 'deit-tiny',
                 **kwargs) -> None:
        grid = (grid_size, grid_size) if isinstance(grid_size, int) \
            else tuple(grid_size)
        # one "patch" per token: a unit patch makes the grid the token grid
        super().__init__(
            arch=arch, img_size=grid, patch_size=1, in_channels=1, **kwargs)
        self.patch_embed = _TokenEmbed(vocab_size, self.embed_dims, grid)
        self.vocab_size = vocab_size
