"""``LoadPrecroppedImage``: the fixed crop from pre-cropped shards."""
import os
from typing import Dict, Optional

import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS

from mapet.datasets.crop_shards import CropShardError, CropShards
from mapet.datasets.image_decode import DECODER_ID
from mapet.datasets.token_store import (StoreKeyFinder, TokenStore,
                                        TokenStoreError)


@TRANSFORMS.register_module()
class LoadPrecroppedImage(BaseTransform):
    """Replace decode + ``ResizeEdge`` + ``CenterCrop`` by a shard look-up.

    The shards (``mapet/datasets/crop_shards.py``, written by
    ``tools/tokenizers/write_crop_shards.py`` from a token store's index)
    hold each image's fixed crop, computed by ``LoadImageForTokens`` +
    ``ResizeEdge(scale=S, edge='short', backend='pillow',
    interpolation='bicubic')`` + ``CenterCrop(S)``; this transform returns
    what those three would return, bit for bit (same ``img`` and shape
    keys), from one memory-mapped row. The image is found by the key
    ``LoadVisualTokens`` uses (``img_path`` relative to ``data_root``, or
    the longest key that is a suffix of ``img_path``).

    Checked when built: the shards are complete, their arrays have the
    manifest's shapes (a truncated file is refused) and checksums
    (``verify``), their crop is ``crop_size`` and, with ``store``, they hold
    the token store's keys in its order, from the same decoder. Errors are
    :class:`~mapet.datasets.crop_shards.CropShardError` naming the problem.

    Required Keys:

    - img_path

    Added Keys:

    - img (np.ndarray): uint8 (S, S, 3), BGR (``channel_order='bgr'``, as
      ``LoadImageForTokens``) or RGB; a writable view of channel-first
      memory (not C-contiguous), so that ``PackInputs`` makes its (3, S, S)
      tensor without a second copy.
    - img_shape (tuple): (S, S).
    - ori_shape (tuple): the original image's (h, w).
    - scale (tuple): the resized (w, h), as ``ResizeEdge`` records it.
    - scale_factor (tuple): (w_scale, h_scale), as ``ResizeEdge``.
    - pad_shape (tuple): (S, S), as ``CenterCrop``.

    Args:
        shards (str): Crop shard directory.
        store (str, optional): Token store the shards must agree with
            (normally the ``LoadVisualTokens`` store of the same pipeline).
        crop_size (int): Expected crop side. Defaults to 224.
        data_root (str, optional): Root the keys are relative to; ``None``
            matches by path suffix (as ``LoadVisualTokens``).
        channel_order (str): ``'bgr'`` (as ``LoadImageForTokens``) or
            ``'rgb'``. Defaults to 'bgr'.
        verify (str): Checksums to recompute when built: ``'full'``,
            ``'sample'`` (index, shapes and up to 8 chunks of crops) or
            ``'none'``. Defaults to 'sample'.
        decoder (str): Image decoder the shards must record. Defaults to
            :data:`~mapet.datasets.image_decode.DECODER_ID`.
    """

    decoder_id = DECODER_ID

    def __init__(self,
                 shards: str,
                 store: Optional[str] = None,
                 crop_size: int = 224,
                 data_root: Optional[str] = None,
                 channel_order: str = 'bgr',
                 verify: str = 'sample',
                 decoder: str = DECODER_ID) -> None:
        if channel_order not in ('bgr', 'rgb'):
            raise ValueError("LoadPrecroppedImage: channel_order must be "
                             f"'bgr' or 'rgb', got {channel_order!r}")
        self.shards_path = os.fspath(shards)
        self.store_path = None if store is None else os.fspath(store)
        self.crop_size = int(crop_size)
        self.data_root = data_root
        self.channel_order = channel_order
        self.verify = verify
        self.decoder = decoder
        self.shards = CropShards(self.shards_path, verify=verify)
        if self.shards.crop_size != self.crop_size:
            raise CropShardError(
                f'Crop shards {self.shards_path} hold {self.shards.crop_size}'
                f' px crops, the pipeline expects crop_size='
                f'{self.crop_size}')
        if self.shards.decoder != decoder:
            raise CropShardError(
                f'Crop shards {self.shards_path} were decoded with '
                f'{self.shards.decoder!r}, the pipeline expects {decoder!r}; '
                'rewrite them with this version')
        if self.store_path is not None:
            try:
                store_obj = TokenStore(self.store_path)
            except TokenStoreError as e:
                raise CropShardError(
                    f'LoadPrecroppedImage(store=...): {e}') from None
            self.shards.check_store(store_obj)
        self._find = StoreKeyFinder(self.shards.row, data_root)

    def _row(self, img_path: str) -> int:
        """Row of ``img_path`` (the rule of ``LoadVisualTokens``) or -1."""
        return self._find(img_path)[1]

    def transform(self, results: Dict) -> Dict:
        """Add the crop and the shape keys.

        Raises:
            CropShardError: The image is not in the shards.
        """
        img_path = results['img_path']
        row = self._row(img_path)
        if row < 0:
            raise CropShardError(
                f'Image {img_path} is missing from crop shards '
                f'{self.shards_path}; write shards for this split/data root')
        crop = self.shards.crops[row]
        if self.channel_order == 'rgb':
            crop = crop[..., ::-1]
        # One copy out of the read-only map, into channel-first memory; the
        # HWC `img` is a view of it, so PackInputs' HWC -> CHW step copies
        # nothing (0.19 -> 0.06 ms per 224 px image, docs/benchmarks.md).
        img = np.ascontiguousarray(crop.transpose(2, 0, 1)).transpose(1, 2, 0)
        ori_h, ori_w, resized_w, resized_h = (
            int(v) for v in self.shards.shapes[row])
        s = self.crop_size
        results['img'] = img
        results['img_shape'] = (s, s)
        results['ori_shape'] = (ori_h, ori_w)
        results['scale'] = (resized_w, resized_h)
        results['scale_factor'] = (resized_w / ori_w, resized_h / ori_h)
        results['pad_shape'] = (s, s)
        return results

    def __repr__(self) -> str:
        s = (f'{self.__class__.__name__}(shards={self.shards_path!r}, '
             f'store={self.store_path!r}, crop_size={self.crop_size}, '
             f"channel_order='{self.channel_order}', "
             f"verify='{self.verify}'")
        if self.data_root is not None:
            s += f', data_root={self.data_root!r}'
        return s + ')'
