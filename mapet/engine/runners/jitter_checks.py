"""Check, once before training, that deferred colour jitter is applied.

``DeferredColorJitter`` (pipeline) only draws the jitter; the model's
``ColorJitterDataPreprocessor`` applies it. With one half missing a run
would train without its only augmentation, or fail at the first step, so
the runner checks both halves when it builds the training loop.
"""
from typing import Any

from mmpretrain.datasets.transforms import PackInputs

from mapet.datasets.transforms import DeferredColorJitter
from mapet.models.utils import ColorJitterDataPreprocessor
from .target_checks import flatten_transforms, leaf_pipelines

__all__ = ['JitterConfigError', 'check_deferred_jitter']


class JitterConfigError(ValueError):
    """Deferred colour jitter is drawn but not applied, or the reverse."""


def check_deferred_jitter(model: Any, dataset: Any) -> None:
    """Raise unless pipeline and data preprocessor agree on the jitter.

    Args:
        model: The (unwrapped) model.
        dataset: The training dataset.

    Raises:
        JitterConfigError: Naming the missing half and the config fix.
    """
    preprocessor = getattr(model, 'data_preprocessor', None)
    applies = isinstance(preprocessor, ColorJitterDataPreprocessor)
    for pipeline in leaf_pipelines(dataset):
        transforms = list(flatten_transforms(pipeline))
        draws = any(isinstance(t, DeferredColorJitter) for t in transforms)
        packs = any(
            isinstance(t, PackInputs) and 'color_jitter' in t.algorithm_keys
            for t in transforms)
        if draws and not applies:
            raise JitterConfigError(
                'The training pipeline has DeferredColorJitter, but the '
                f'model\'s data preprocessor is {type(preprocessor).__name__}'
                ', which would never apply it. Set model.data_preprocessor = '
                "dict(type='ColorJitterDataPreprocessor', ...) or use "
                "ColorJitter in the pipeline.")
        if draws and not packs:
            raise JitterConfigError(
                'The training pipeline has DeferredColorJitter, but no '
                "PackInputs packs its 'color_jitter'; add 'color_jitter' to "
                'PackInputs(algorithm_keys=...).')
        if applies and not draws:
            raise JitterConfigError(
                'The model uses ColorJitterDataPreprocessor, but the training '
                'pipeline has no DeferredColorJitter to draw the jitter; add '
                "dict(type='DeferredColorJitter', ...) before PackInputs or "
                'use SelfSupDataPreprocessor.')
