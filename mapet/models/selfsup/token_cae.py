"""CAE on the plain MaPeT ViT with pre-extracted visual tokens (Table 2).

mmpretrain's :class:`~mmpretrain.models.selfsup.CAE` is kept as is (its
regressor/decoder neck ``CAENeck``, ``CAELoss`` and momentum teacher); two
things differ for the paper's fair comparison:

* the encoder is the *same ViT* as MaPeT's (stock
  :class:`mmpretrain.models.VisionTransformer` weights, learnable absolute
  position embeddings, layer scale) instead of BEiT's ViT, so the fine-tuning
  configs load it unchanged: :class:`~mapet.models.backbones.VisibleTokensViT`;
* the targets are the visual tokens of the masked patches from the token
  store (``data_sample.visual_tokens``) or from a tokenizer module returning
  token ids, instead of DALL-E logits: :class:`TokenCAE`.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmpretrain.models.selfsup import CAE
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from .targets import (check_generator_vocab, split_views, stack_field,
                      visual_token_targets)


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
        check_generator_vocab(
            getattr(self, 'target_generator', None), self.vocab_size,
            'neck.num_classes')
        if self.with_target_generator:
            self.target_generator.requires_grad_(False)

    @property
    def vocab_size(self) -> int:
        """Number of visual tokens the decoder predicts."""
        return self.neck.head.out_features

    def extract_feat(self, inputs: Union[torch.Tensor, List[torch.Tensor]]):
        """Features of all patches (the fine-tuning path)."""
        return self.backbone(split_views(inputs)[0])

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
        images, tokenizer_view = split_views(inputs)
        batch = images.shape[0]
        mask = stack_field(data_samples, 'mask', images.device)
        mask = mask.reshape(batch, -1).bool()
        target = visual_token_targets(getattr(self, 'target_generator', None),
                                      tokenizer_view,
                                      data_samples, images.device)
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
