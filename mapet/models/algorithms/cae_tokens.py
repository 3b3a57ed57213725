"""CAE on the plain MaPeT ViT with pre-extracted visual tokens (Table 2).

mmpretrain's :class:`~mmpretrain.models.selfsup.CAE` is kept as is (its
regressor/decoder neck ``CAENeck``, ``CAELoss`` and momentum teacher); two
things differ for the paper's fair comparison:

* the encoder is the *same ViT* as MaPeT's (stock
  :class:`mmpretrain.models.VisionTransformer` weights, learnable absolute
  position embeddings, layer scale) instead of BEiT's ViT, so the fine-tuning
  configs load it unchanged: :class:`VisibleTokensViT`;
* the targets are the visual tokens of the masked patches from the token
  store (``data_sample.visual_tokens``) or from a tokenizer module returning
  token ids, instead of DALL-E logits: :class:`TokenCAE`.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmpretrain.models.backbones import VisionTransformer
from mmpretrain.models.selfsup import CAE
from mmpretrain.models.utils import resize_pos_embed
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample


def _stack(data_samples: Sequence[DataSample], key: str,
           device: torch.device) -> torch.Tensor:
    """Stack one per-sample field into a (B, ...) tensor."""
    values = []
    for i, sample in enumerate(data_samples):
        if key not in sample:
            raise KeyError(f'data_samples[{i}] has no `{key}`: the pipeline '
                           f'must produce it (mask: BEiTMaskGenerator; '
                           'visual_tokens: LoadVisualTokens packed with '
                           "PackInputs(algorithm_keys=['visual_tokens'])).")
        value = sample.get(key)
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value)
        values.append(torch.as_tensor(value))
    return torch.stack(values).to(device)


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


@MODELS.register_module()
class TokenCAE(CAE):
    """CAE predicting pre-extracted (or tokenizer-given) visual token ids.

    Same model as :class:`mmpretrain.models.selfsup.CAE` (encoder on visible
    patches, latent regressor, decoder, alignment with the momentum teacher,
    ``CAELoss``); the decoder's cross-entropy targets are token ids:
    ``data_sample.visual_tokens`` (B, N), or ``target_generator(view)``
    returning LongTensor (B, N) when a tokenizer module is configured.

    Args:
        backbone (dict): Encoder config, e.g. :class:`VisibleTokensViT`.
        neck (dict): ``CAENeck`` config (``num_classes`` = vocabulary size).
        head (dict): ``CAEHead`` config (its ``loss_module`` is used).
        target_generator (dict, optional): A tokenizer returning token ids.
            Defaults to None (tokens from the data samples).
        base_momentum (float): Teacher momentum. Defaults to 0.0.
        data_preprocessor (dict, optional): Defaults to None.
        init_cfg (dict | List[dict], optional): Defaults to None.
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 head: dict,
                 target_generator: Optional[dict] = None,
                 base_momentum: float = 0.0,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[Union[List[dict], dict]] = None) -> None:
        super().__init__(
            backbone=backbone,
            neck=neck,
            head=head,
            target_generator=target_generator,
            base_momentum=base_momentum,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        if self.with_target_generator:
            self.target_generator.requires_grad_(False)

    def extract_feat(self, inputs: Union[torch.Tensor, List[torch.Tensor]]):
        """Features of all patches (the fine-tuning path)."""
        if isinstance(inputs, (list, tuple)):
            inputs = inputs[0]
        return self.backbone(inputs)

    def loss(self, inputs: Union[torch.Tensor, List[torch.Tensor]],
             data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        """CAE loss with token-id targets.

        Args:
            inputs (torch.Tensor | List[torch.Tensor]): Images (B, 3, H, W)
                or ``[encoder_view, tokenizer_view]``.
            data_samples (List[DataSample]): With ``mask`` and, without a
                target_generator, ``visual_tokens``.

        Returns:
            Dict[str, torch.Tensor]: ``loss`` (= main + align), ``main``,
            ``align``.
        """
        if isinstance(inputs, (list, tuple)):
            images = inputs[0]
            tokenizer_view = inputs[1] if len(inputs) > 1 else inputs[0]
        else:
            images = tokenizer_view = inputs
        batch = images.shape[0]
        mask = _stack(data_samples, 'mask', images.device)
        mask = mask.reshape(batch, -1).bool()
        if self.with_target_generator:
            with torch.no_grad():
                target = self.target_generator(tokenizer_view)
        else:
            target = _stack(data_samples, 'visual_tokens', images.device)
        target = target.reshape(batch, -1).long()
        if target.shape != mask.shape:
            raise ValueError(f'{target.shape[1]} visual tokens per image but '
                             f'{mask.shape[1]} patches: the token grid must '
                             'equal the patch grid.')

        unmasked = self.backbone(images, mask)
        with torch.no_grad():
            latent_target = self.teacher(images, ~mask)[:, 1:, :]
            self.momentum_update()

        dims = self.backbone.pos_embed.shape[-1]
        pos_embed = self.backbone.pos_embed[:, 1:].expand(batch, -1, -1)
        pos_embed_masked = pos_embed[mask].reshape(batch, -1, dims)
        pos_embed_unmasked = pos_embed[~mask].reshape(batch, -1, dims)
        logits, latent_pred = self.neck(unmasked[:, 1:], pos_embed_masked,
                                        pos_embed_unmasked)
        logits = logits.reshape(-1, logits.shape[-1])
        loss_main, loss_align = self.head.loss_module(
            logits, target[mask], latent_pred, latent_target)
        return dict(
            loss=loss_main + loss_align, main=loss_main, align=loss_align)
