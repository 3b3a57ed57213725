"""Data preprocessors: visual-token ids, and images jittered on the device."""
from typing import Optional, Sequence, Union

import torch
from mmengine.model import BaseDataPreprocessor
from mmpretrain.models.utils import SelfSupDataPreprocessor
from mmpretrain.registry import MODELS

from .color_jitter import color_jitter_batch


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


@MODELS.register_module()
class ColorJitterDataPreprocessor(SelfSupDataPreprocessor):
    """``SelfSupDataPreprocessor`` that first applies deferred colour jitter.

    The pipeline's ``DeferredColorJitter`` draws each sample's jitter and
    ``PackInputs`` packs it as ``color_jitter``; here the whole batch is
    jittered on the device (:func:`~mapet.models.utils.color_jitter.
    color_jitter_batch`, pixel-identical to mmpretrain's ``ColorJitter``)
    before the usual channel flip and normalisation. Batches without
    ``color_jitter`` (validation) pass unchanged; a *training* batch without
    it is an error, since it would train without the augmentation.

    The jitter is defined on RGB (Pillow's grey weights), so the input order
    is read from the channel flags: with ``to_rgb``/``bgr_to_rgb`` the
    pipeline's images are BGR (mmcv's convention, as ``ColorJitter``
    assumes), otherwise RGB.

    Args:
        mean (Sequence[float], optional): As ``SelfSupDataPreprocessor``.
        std (Sequence[float], optional): As ``SelfSupDataPreprocessor``.
        to_rgb (bool): As ``SelfSupDataPreprocessor``. Defaults to False.
        bgr_to_rgb (bool): As ``SelfSupDataPreprocessor``. Defaults to
            False.
        rgb_to_bgr (bool): As ``SelfSupDataPreprocessor``. Defaults to
            False.
        non_blocking (bool): As ``SelfSupDataPreprocessor``. Defaults to
            False.
    """

    def __init__(self,
                 mean: Optional[Sequence[Union[float, int]]] = None,
                 std: Optional[Sequence[Union[float, int]]] = None,
                 to_rgb: bool = False,
                 bgr_to_rgb: bool = False,
                 rgb_to_bgr: bool = False,
                 non_blocking: bool = False) -> None:
        super().__init__(
            mean=mean,
            std=std,
            to_rgb=to_rgb,
            bgr_to_rgb=bgr_to_rgb,
            rgb_to_bgr=rgb_to_bgr,
            non_blocking=non_blocking)
        self._input_is_bgr = bool(to_rgb or bgr_to_rgb)

    def _jitter(self, inputs: torch.Tensor,
                params: torch.Tensor) -> torch.Tensor:
        """Jitter (B, 3, H, W) inputs in their own channel order."""
        if not self._input_is_bgr:
            return color_jitter_batch(inputs, params)
        flip = [2, 1, 0]
        return color_jitter_batch(inputs[:, flip], params)[:, flip]

    def forward(self, data: dict, training: bool = False) -> dict:
        """Jitter the batch (if its samples carry ``color_jitter``), then
        flip channels and normalise as ``SelfSupDataPreprocessor``."""
        samples = data.get('data_samples') or []
        carried = [s for s in samples if 'color_jitter' in s]
        if carried and len(carried) != len(samples):
            raise ValueError(
                f'{len(carried)} of {len(samples)} samples of the batch carry '
                'color_jitter: every pipeline of the dataset must end with '
                "the same DeferredColorJitter and PackInputs(algorithm_keys="
                "[..., 'color_jitter']).")
        if training and not carried:
            raise ValueError(
                'ColorJitterDataPreprocessor got a training batch without '
                "color_jitter: add dict(type='DeferredColorJitter', ...) to "
                "the train pipeline and 'color_jitter' to PackInputs' "
                'algorithm_keys, or use SelfSupDataPreprocessor.')
        if carried:
            inputs = data['inputs']
            if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4:
                raise ValueError(
                    'ColorJitterDataPreprocessor jitters one stacked (B, 3, '
                    'H, W) batch; use default_collate and a single view.')
            # Stacked on the host: one copy to the device, not B small ones.
            params = torch.stack([
                torch.as_tensor(s.color_jitter, dtype=torch.float64)
                for s in samples
            ])
            data = dict(data)
            data['inputs'] = self._jitter(
                self.cast_data(inputs), self.cast_data(params))
        return super().forward(data, training)
