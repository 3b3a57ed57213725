"""Colour jitter drawn in the pipeline, applied on the device."""
from typing import Dict, Sequence, Union

import numpy as np
from mmpretrain.datasets.transforms import ColorJitter
from mmpretrain.registry import TRANSFORMS

from mapet.models.utils.color_jitter import JITTER_PARAMS

Factor = Union[float, Sequence[float]]


@TRANSFORMS.register_module()
class DeferredColorJitter(ColorJitter):
    """mmpretrain's ``ColorJitter``, with the pixel work moved to the device.

    It draws exactly what ``ColorJitter`` draws (the same calls on numpy's
    global RNG, so under ``PerSampleRNG`` the same factors for the same
    sample, epoch and seed) and stores them; it leaves ``img`` untouched.
    ``ColorJitterDataPreprocessor`` then applies them to the whole batch on
    the device, with a result equal pixel for pixel to ``ColorJitter``'s
    (pillow backend). A data-loader worker saves the CPU jitter, 1.4-1.6 ms
    per 224 px image on our benchmark machine and most of its time on
    pre-cropped shards (``docs/benchmarks.md``).

    The training runner refuses a pipeline with this transform whose model
    does not use ``ColorJitterDataPreprocessor`` (the jitter would silently
    not happen) or whose ``PackInputs`` does not pack ``color_jitter``, and
    the reverse.

    **Required Keys**:

    - None (``img`` is read by the data preprocessor later).

    **Added Keys**:

    - color_jitter (np.ndarray): float64 (7,): the order of brightness,
      contrast, saturation and hue (a permutation of 0..3), then the
      brightness, contrast and saturation factors (1.0 where disabled).
      Pack it with ``PackInputs(algorithm_keys=[..., 'color_jitter'])``.

    Args:
        brightness (float | Sequence[float]): As ``ColorJitter``. Defaults
            to 0.
        contrast (float | Sequence[float]): As ``ColorJitter``. Defaults
            to 0.
        saturation (float | Sequence[float]): As ``ColorJitter``. Defaults
            to 0.
        hue (float | Sequence[float]): Must be 0: hue jitter runs only on the
            CPU (``ColorJitter``). Defaults to 0.
    """

    def __init__(self,
                 brightness: Factor = 0.,
                 contrast: Factor = 0.,
                 saturation: Factor = 0.,
                 hue: Factor = 0.) -> None:
        super().__init__(
            brightness=brightness,
            contrast=contrast,
            saturation=saturation,
            hue=hue,
            backend='pillow')
        if self.hue is not None:
            raise ValueError(
                f'DeferredColorJitter: hue={hue!r} is not supported on the '
                "device; use dict(type='ColorJitter', ...) in the pipeline "
                'and the plain data preprocessor for hue jitter.')

    def transform(self, results: Dict) -> Dict:
        """Add ``color_jitter``; ``img`` is left as it is."""
        order, brightness, contrast, saturation, _ = self._rand_params()
        params = np.ones(JITTER_PARAMS, dtype=np.float64)
        params[:4] = order
        for i, factor in enumerate((brightness, contrast, saturation)):
            if factor is not None:
                params[4 + i] = factor
        results['color_jitter'] = params
        return results
