"""Data preprocessor for models whose inputs are visual-token ids."""
from typing import Optional

import torch
from mmengine.model import BaseDataPreprocessor
from mmpretrain.registry import MODELS


@MODELS.register_module()
class TokenDataPreprocessor(BaseDataPreprocessor):
    """Moves token ids to the device and stacks them into (B, T) int64.

    ``ImageClassifier`` passes ``batch_augments`` from its ``train_cfg``;
    pixel mixing (Mixup/CutMix) has no meaning for token ids, so only
    ``None`` is accepted.

    Args:
        batch_augments (dict, optional): Must be None.
    """

    def __init__(self, batch_augments: Optional[dict] = None) -> None:
        super().__init__()
        if batch_augments is not None:
            raise ValueError('batch augments (Mixup/CutMix) cannot be applied '
                             'to token ids; remove train_cfg.augments')

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        inputs = data['inputs']
        if isinstance(inputs, (list, tuple)):
            inputs = torch.stack(list(inputs))
        return dict(
            inputs=inputs.long(), data_samples=data.get('data_samples'))
