"""Load one stored view's tokens and apply the identical view to the image."""
import os
from typing import Dict, Optional, Sequence, Union

import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS
from PIL import Image

from mapet.datasets.image_decode import DECODER_ID
from mapet.datasets.token_store import StoreKeyFinder, TokenStoreError
from mapet.datasets.token_views import ViewTokenStore, render_view, view_key


@TRANSFORMS.register_module()
class LoadVisualTokenView(BaseTransform):
    """Pick a stored view, load its tokens and render it on the image.

    Replaces ``LoadVisualTokens`` + ``ResizeEdge`` + ``CenterCrop`` of the
    pre-training pipelines when the token store is a *view store*
    (:mod:`mapet.datasets.token_views`, written by
    ``tools/tokenizers/extract_tokens.py --views``): the view index is
    drawn uniformly from ``views`` with numpy's global RNG (seeded per
    sample by :class:`~mapet.datasets.transforms.PerSampleRNG` in our
    loops), and the image becomes :func:`render_view` of the stored box at
    ``size`` px: the pixels whose tokens were stored, at the backbone's
    resolution. Colour jitter may follow; geometric transforms may not.

    Required Keys: ``img`` (BGR uint8, from ``LoadImageForTokens``: the decoder the
    tokens were extracted with),
    ``img_path``.

    Modified Keys: ``img``, ``img_shape``.

    Added Keys: ``visual_tokens`` (int64 (T,)), ``token_view`` (int64 (5,)
    ``x, y, w, h, flip``), ``token_view_index`` (int).

    Args:
        store (str): View store directory.
        size (int): Output side (the backbone's ``img_size``).
        grid_size (int | Sequence[int]): Expected token grid.
        vocab_size (int): Expected vocabulary size.
        views (Sequence[int], optional): Views to draw from (default all;
            ``[0]`` = centre crop only).
        data_root (str, optional): Root the store keys are relative to;
            None matches by path suffix as ``LoadVisualTokens``.
        interpolation (str): Must be the extraction's. Defaults to
            'bicubic'.
        decoder (str): The image decoder the store must record (that of
            ``LoadImageForTokens``, :mod:`mapet.datasets.image_decode`).
        allow_unrecorded_decoder (bool): Accept a store that records none
            (extracted by an older version). Defaults to False.
    """

    def __init__(self,
                 store: str,
                 size: int,
                 grid_size: Union[int, Sequence[int]] = 14,
                 vocab_size: int = 8192,
                 views: Optional[Sequence[int]] = None,
                 data_root: Optional[str] = None,
                 interpolation: str = 'bicubic',
                 decoder: str = DECODER_ID,
                 allow_unrecorded_decoder: bool = False) -> None:
        self.store_path = os.fspath(store)
        self.store = ViewTokenStore(self.store_path)
        self.store.check(
            grid_size=grid_size,
            vocab_size=vocab_size,
            decoder=decoder,
            allow_unrecorded_decoder=allow_unrecorded_decoder)
        self.store.verify()
        per_image = self.store.views_per_image
        self.views = list(range(per_image)) if views is None else [
            int(v) for v in views
        ]
        bad = [v for v in self.views if not 0 <= v < per_image]
        if bad or not self.views:
            raise ValueError(f'views {self.views} not in [0, {per_image}) '
                             f'of {self.store_path}')
        self.size = int(size)
        self.grid_size = grid_size
        self.vocab_size = vocab_size
        self.data_root = data_root
        self.interpolation = interpolation
        self._find = StoreKeyFinder(self._first_view_row, data_root)

    def _first_view_row(self, relpath: str) -> int:
        return self.store.row(view_key(relpath, 0))

    def _relpath(self, img_path: str) -> Optional[str]:
        return self._find(img_path)[0]

    def transform(self, results: Dict) -> Dict:
        rel = self._relpath(results['img_path'])
        if rel is None:
            raise TokenStoreError(
                f'Image {results["img_path"]} is missing from view store '
                f'{self.store_path}')
        v = self.views[int(np.random.randint(len(self.views)))]
        tokens, view = self.store.get_view(rel, v)
        rgb = Image.fromarray(np.ascontiguousarray(results['img'][..., ::-1]))
        out = np.asarray(
            render_view(rgb, view, self.size, self.interpolation))
        results['img'] = np.ascontiguousarray(out[..., ::-1])
        results['img_shape'] = results['img'].shape[:2]
        results['visual_tokens'] = tokens
        results['token_view'] = view
        results['token_view_index'] = v
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(store={self.store_path!r}, '
                f'size={self.size}, views={self.views})')
