"""Visual-token prediction head: MaPeT and PIM (query stream), MIM and BEiT
(masked patches)."""
from typing import Dict, List, Optional, Union

import torch
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS
from torch import nn


@MODELS.register_module()
class VisualTokenHead(BaseModule):
    """Linear classifier over visual tokens and its cross-entropy loss.

    It predicts the token of every target of the query stream (MaPeT, PIM)
    or of every masked patch (MIM, BEiT).

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
        # Token ids outside [0, num_embed) are impossible here: the runner
        # checks head vocabulary = token store = tokenizer when it builds the
        # model and the pipeline (no per-step host sync for it).
        target = target.reshape(-1).long()
        logits = self.cls_head(feats.reshape(-1, feats.shape[-1]))
        loss = self.loss_module(logits, target)
        with torch.no_grad():
            accuracy = (logits.argmax(dim=-1) == target).float().mean() * 100
        return dict(loss=loss, accuracy=accuracy)
