"""``LoadImageForTokens``: decode an image exactly as token extraction did."""
from typing import Dict, Optional

import mmengine.fileio as fileio
import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS

from mapet.datasets.image_decode import (DECODER_ID, DEFAULT_MAX_PIXELS,
                                         decode_image)


@TRANSFORMS.register_module()
class LoadImageForTokens(BaseTransform):
    """Drop-in for ``LoadImageFromFile`` that decodes with mapet's decoder.

    :func:`mapet.datasets.image_decode.decode_image` is also what
    ``tools/tokenizers/extract_tokens.py`` uses, so the pixels the trainer
    sees are the pixels the visual tokens were computed from (EXIF
    orientation, bit depth, palette, grey and CMYK handled identically).
    Pipelines with ``LoadVisualTokens`` must load images with it (checked
    before training).

    Required Keys: ``img_path``.

    Added Keys: ``img`` (uint8 (H, W, 3), BGR like ``LoadImageFromFile``,
    or RGB with ``channel_order='rgb'``; float32 with ``to_float32``),
    ``img_shape``, ``ori_shape``.

    Args:
        to_float32 (bool): Convert to float32. Defaults to False.
        channel_order (str): ``'bgr'`` (mmpretrain's convention, the data
            preprocessor's ``to_rgb=True`` flips it back) or ``'rgb'``.
            Defaults to 'bgr'.
        max_pixels (int, optional): Refuse larger images. Defaults to
            16384**2.
        backend_args (dict, optional): mmengine file backend arguments.
    """

    decoder = DECODER_ID

    def __init__(self,
                 to_float32: bool = False,
                 channel_order: str = 'bgr',
                 max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
                 backend_args: Optional[dict] = None) -> None:
        if channel_order not in ('bgr', 'rgb'):
            raise ValueError(f"LoadImageForTokens: channel_order must be "
                             f"'bgr' or 'rgb', got {channel_order!r}")
        if max_pixels is not None and int(max_pixels) <= 0:
            raise ValueError(f'LoadImageForTokens: max_pixels must be '
                             f'positive or None, got {max_pixels}')
        self.to_float32 = to_float32
        self.channel_order = channel_order
        self.max_pixels = max_pixels
        self.backend_args = None if backend_args is None \
            else dict(backend_args)

    def transform(self, results: Dict) -> Dict:
        """Decode ``results['img_path']``."""
        path = results['img_path']
        data = fileio.get(path, backend_args=self.backend_args) \
            if '://' in str(path) else path
        img = decode_image(data, max_pixels=self.max_pixels)
        if self.channel_order == 'bgr':
            img = np.ascontiguousarray(img[..., ::-1])
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(to_float32={self.to_float32}, '
                f"channel_order='{self.channel_order}', "
                f'max_pixels={self.max_pixels}, decoder={self.decoder!r})')
