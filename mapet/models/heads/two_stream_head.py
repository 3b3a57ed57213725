"""Visual-token prediction head for MaPeT / PIM / MIM pre-training."""
from typing import Dict, List, Optional, Union

import torch
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS
from torch import nn


@MODELS.register_module()
class TwoStreamHead(BaseModule):
    """Linear classifier over the query stream and its cross-entropy loss.

    Args:
        embed_dims (int): Feature dimension C of the backbone.
        num_embed (int): Vocabulary size of the visual tokenizer.
        loss (dict): Config of the classification loss (label smoothing 0 in
            pre-training). Defaults to ``dict(type='CrossEntropyLoss')``.
        init_cfg (dict | List[dict], optional): Initialization config.
            Defaults to truncated normal (std 0.02) as BEiT's head.
    """

    def __init__(
        self,
        embed_dims: int,
        num_embed: int,
        loss: dict = dict(type='CrossEntropyLoss'),
        init_cfg: Optional[Union[dict, List[dict]]] = dict(
            type='TruncNormal', layer='Linear', std=0.02, bias=0)
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.num_embed = num_embed
        self.cls_head = nn.Linear(embed_dims, num_embed)
        self.loss_module = MODELS.build(loss)

    def loss(self,
             feats: torch.Tensor,
             target: torch.Tensor,
             index: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Cross-entropy of the predicted visual tokens.

        Args:
            feats (torch.Tensor): Predicting features, (B, T, C) or (K, C).
            target (torch.Tensor): Visual token ids. With ``index``, the
                tokens of every patch, (B, N), raster order; without, already
                aligned with ``feats`` ((B, T) or (K,)).
            index (torch.Tensor, optional): (B, T) patch index predicted by
                each row of ``feats`` (``permutation[:, c:]``).

        Returns:
            Dict[str, torch.Tensor]: ``loss`` and ``accuracy`` (token top-1
            accuracy in percent, detached, logged only).
        """
        if index is not None:
            target = torch.gather(target, 1, index.long())
        if target.shape != feats.shape[:-1]:
            raise ValueError(
                f'Target shape {tuple(target.shape)} does not match the '
                f'predicting features {tuple(feats.shape[:-1])}.')
        target = target.reshape(-1).long()
        outside = (target < 0) | (target >= self.num_embed)
        if target.device.type != 'cpu':
            # As MaPeTViT's permutation check: an asynchronous device-side
            # assertion, so no host sync every step.
            torch._assert_async(
                ~outside.any(),
                f'a visual token id is outside the head vocabulary of '
                f'{self.num_embed} ids; set num_embed to the tokenizer\'s '
                'vocab_size')
        elif bool(outside.any()):
            bad = int(target[outside][0])
            raise ValueError(
                f'Visual token id {bad} is outside the head vocabulary of '
                f'{self.num_embed} ids [0, {self.num_embed - 1}]; set the '
                "head's num_embed to the tokenizer's vocab_size.")
        logits = self.cls_head(feats.reshape(-1, feats.shape[-1]))
        loss = self.loss_module(logits, target)
        with torch.no_grad():
            accuracy = (logits.argmax(dim=-1) == target).float().mean() * 100
        return dict(loss=loss, accuracy=accuracy)
