"""The CAE baseline's encoder: a ViT that can encode only visible patches.

It is the *same ViT* as MaPeT's (stock
:class:`mmpretrain.models.VisionTransformer` weights, learnable absolute
position embeddings, layer scale) instead of BEiT's ViT, so the fine-tuning
configs load a CAE-pretrained encoder unchanged (paper Table 2).
"""
from typing import Optional, Tuple, Union

import torch
from mmpretrain.models.backbones import VisionTransformer
from mmpretrain.models.utils import resize_pos_embed
from mmpretrain.registry import MODELS


@MODELS.register_module()
class VisibleTokensViT(VisionTransformer):
    """``VisionTransformer`` that can encode only the visible patches (CAE).

    Without ``mask`` it is exactly :class:`VisionTransformer` (same
    ``state_dict``, same forward). With ``mask`` (B, N) bool, True =
    masked, it embeds all patches, adds their position embeddings, keeps the
    visible ones (every image must have the same number) after the CLS token,
    runs the blocks and the final norm, and returns a tensor
    (B, 1 + N_visible, C), as CAE expects.

    Args:
        **kwargs: Arguments of :class:`mmpretrain.models.VisionTransformer`.
    """

    def forward(self,
                x: torch.Tensor,
                mask: Optional[torch.Tensor] = None
                ) -> Union[Tuple[torch.Tensor], torch.Tensor]:
        """Encode all patches (``mask=None``) or the visible ones only.

        Args:
            x (torch.Tensor): Images (B, 3, H, W).
            mask (torch.Tensor, optional): Bool (B, N) or (B, h, w), True =
                masked (dropped). Defaults to None.

        Returns:
            tuple | torch.Tensor: ``VisionTransformer`` outputs without
            ``mask``; otherwise (B, 1 + N_visible, C).
        """
        if mask is None:
            return super().forward(x)
        if not self.with_cls_token:
            raise ValueError('VisibleTokensViT needs with_cls_token=True.')
        batch = x.shape[0]
        x, grid = self.patch_embed(x)
        mask = mask.reshape(batch, -1).bool()
        if mask.shape[1] != x.shape[1]:
            raise ValueError(f'`mask` has {mask.shape[1]} entries per image '
                             f'but the image has {x.shape[1]} patches.')
        visible = (~mask).sum(1)
        if not bool((visible == visible[0]).all()):
            raise ValueError('Every image must keep the same number of '
                             f'visible patches, got {visible.tolist()}.')
        pos = resize_pos_embed(
            self.pos_embed,
            self.patch_resolution,
            grid,
            mode=self.interpolate_mode,
            num_extra_tokens=self.num_extra_tokens)
        x = x + pos[:, self.num_extra_tokens:]
        x = x[~mask].reshape(batch, int(visible[0]), -1)
        cls_token = self.cls_token.expand(batch, -1, -1) + pos[:, :1]
        x = self.drop_after_pos(torch.cat((cls_token, x), dim=1))
        x = self.pre_norm(x)
        for layer in self.layers:
            x = layer(x)
        if self.final_norm:
            x = self.ln1(x)
        return x
