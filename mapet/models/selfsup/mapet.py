"""The MaPeT self-supervised algorithm (and its PIM / MIM baselines)."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmpretrain.models.selfsup import BaseSelfSupervisor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from torch import nn

from .targets import (check_generator_vocab, split_views, stack_field,
                      visual_token_targets)


@MODELS.register_module()
class MaPeT(BaseSelfSupervisor):
    """Masked and Permuted pre-training (modes of ``MaPeTViT``).

    The pre-training objective follows ``backbone.mode``: ``'mapet'`` and
    ``'pim'`` predict the visual tokens of the targets
    ``permutation[:, c:]`` from the query stream; ``'mim'`` predicts the
    tokens of the masked patches.

    Targets come from ``target_generator`` (a frozen tokenizer module whose
    ``forward(images)`` returns LongTensor (B, T) row-major token ids and
    which has ``vocab_size``) when given, else from the pre-extracted
    ``data_sample.visual_tokens``.

    Args:
        backbone (dict): ``MaPeTViT`` config.
        head (dict): ``VisualTokenHead`` config.
        target_generator (dict | nn.Module, optional): Frozen tokenizer.
            With it, ``inputs`` may be ``[backbone_view, tokenizer_view]``.
            Defaults to None.
        data_preprocessor (dict | nn.Module, optional): Defaults to
            ``SelfSupDataPreprocessor``.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 backbone: dict,
                 head: dict,
                 target_generator: Optional[Union[dict, nn.Module]] = None,
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(
            backbone=backbone,
            head=head,
            target_generator=target_generator,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        if not hasattr(self.backbone, 'mode'):
            raise TypeError('MaPeT needs a MaPeTViT backbone (with `mode`), '
                            f'got {type(self.backbone).__name__}.')
        check_generator_vocab(
            getattr(self, 'target_generator', None), self.vocab_size,
            'head.num_embed')
        if self.with_target_generator:
            self.target_generator.requires_grad_(False)
            self.target_generator.eval()

    @property
    def vocab_size(self) -> int:
        """Number of visual tokens the head predicts."""
        return self.head.num_embed

    def train(self, mode: bool = True) -> 'MaPeT':
        """Set train mode; the tokenizer always stays in eval mode."""
        super().train(mode)
        if self.with_target_generator:
            self.target_generator.eval()
        return self

    def extract_feat(self, inputs: torch.Tensor) -> Tuple[torch.Tensor]:
        """Features of the plain ViT path (no permutation, no mask)."""
        return self.backbone(split_views(inputs)[0])

    def _targets(self, images: torch.Tensor, tokenizer_view: torch.Tensor,
                 data_samples: Sequence[DataSample]) -> torch.Tensor:
        target = visual_token_targets(getattr(self, 'target_generator', None),
                                      tokenizer_view,
                                      data_samples, images.device)
        grid = self.backbone.patch_grid(images.shape[-2:])
        num_patches = grid[0] * grid[1]
        if target.shape[1] != num_patches:
            raise ValueError(
                f'The token grid has {target.shape[1]} tokens per image but '
                f'the backbone sees a {grid[0]}x{grid[1]} patch grid '
                f'({num_patches} patches) for {tuple(images.shape[-2:])} '
                'images; the tokenizer grid (LoadVisualTokens grid_size, '
                'tokenizer input size) must equal the patch grid.')
        return target

    def loss(self, inputs: Union[torch.Tensor, List[torch.Tensor]],
             data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        """Pre-training loss.

        Args:
            inputs (torch.Tensor | List[torch.Tensor]): Images (B, 3, H, W),
                or ``[backbone_view, tokenizer_view]``.
            data_samples (List[DataSample]): With ``permutation`` (and
                ``mask`` for ``'mim'``, ``visual_tokens`` without a
                target_generator).

        Returns:
            Dict[str, torch.Tensor]: ``loss`` and ``accuracy`` (logged only:
            MMEngine sums the keys that contain ``loss``).
        """
        images, tokenizer_view = split_views(inputs)
        target = self._targets(images, tokenizer_view, data_samples)

        if self.backbone.mode == 'mim':
            mask = stack_field(data_samples, 'mask', images.device)
            mask = mask.reshape(mask.shape[0], -1).bool()
            feats = self.backbone(images, mask=mask)[-1]
            return self.head.loss(feats[mask], target[mask])

        permutation = stack_field(data_samples, 'permutation',
                                   images.device).long()
        feats = self.backbone(images, permutation=permutation)[-1]
        index = permutation[:, self.backbone.cutting_point:]
        return self.head.loss(feats, target, index)

    def get_layer_depth(self, param_name: str) -> Tuple[int, int]:
        """Layer-wise depth of a parameter, delegated to the backbone.

        Args:
            param_name (str): The name of the parameter.

        Returns:
            Tuple[int, int]: The layer depth and the number of depths.
        """
        return self.backbone.get_layer_depth(param_name, 'backbone.')
