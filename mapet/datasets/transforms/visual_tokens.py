"""Attach pre-extracted visual tokens to a sample."""
import os
import os.path as osp
from typing import Dict, Optional, Sequence, Union

import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS

from mapet.models.tokenizers.codebook import load_codebook
from mapet.datasets.image_decode import DECODER_ID
from mapet.datasets.token_store import (StoreKeyFinder, TokenStore,
                                        TokenStoreError)

_HEX_SHA256_LEN = 64


def _is_hex_sha256(value: str) -> bool:
    return len(value) == _HEX_SHA256_LEN and all(
        c in '0123456789abcdefABCDEF' for c in value)


@TRANSFORMS.register_module()
class LoadVisualTokens(BaseTransform):
    """Load an image's visual tokens from a token store.

    The store is written by ``tools/tokenizers/extract_tokens.py`` and keyed
    by each image's path relative to the data root (see
    :mod:`mapet.extraction.images`). The key is recovered from
    ``results['img_path']`` (mmpretrain datasets set it to
    ``join(data_root, data_prefix, <ann-file path>)``):

    * with ``data_root`` given: ``relpath(img_path, data_root)``;
    * otherwise: the longest trailing run of path components of ``img_path``
      that is a key of the store (e.g. ``train/cat/cat_00001.png`` for
      ``data/demo/train/cat/cat_00001.png``). The stripped prefix is cached,
      so later look-ups are a single binary search.

    The store is checked when the transform is built: it must be complete,
    its arrays must match the SHA-256 in its manifest, and the manifest must
    match ``grid_size``, ``vocab_size``, ``crop`` and, if given,
    ``codebook``; every mismatch is named in the error.

    Required Keys:

    - img_path

    Added Keys:

    - visual_tokens (np.ndarray): int64 (grid_h * grid_w,), row-major over
      the token grid (same order as ViT patches).

    Args:
        store (str): Token store directory.
        grid_size (int | Sequence[int]): Expected token grid (h, w).
            Defaults to 14.
        vocab_size (int): Expected vocabulary size. Defaults to 8192.
        crop (str): Expected crop of the stored tokens (``'center'``: resize
            short side + centre crop, the only crop the extraction writes).
            Defaults to 'center'.
        codebook (str, optional): A codebook file or its ``centroids_sha256``
            hex digest; the store must have been written with it.
        data_root (str, optional): Root the store keys are relative to;
            ``None`` matches by path suffix (see above).
        decoder (str): The image decoder the store must record; the
            pipeline must load images with ``LoadImageForTokens``, which
            uses it (checked before training). Defaults to
            :data:`~mapet.datasets.image_decode.DECODER_ID`.
        allow_unrecorded_decoder (bool): Accept a store whose manifest
            records no decoder (extracted by an older version); only if you
            know its images were decoded the same way. Defaults to False.
    """

    def __init__(self,
                 store: str,
                 grid_size: Union[int, Sequence[int]] = 14,
                 vocab_size: int = 8192,
                 crop: str = 'center',
                 codebook: Optional[str] = None,
                 data_root: Optional[str] = None,
                 decoder: str = DECODER_ID,
                 allow_unrecorded_decoder: bool = False) -> None:
        self.store_path = os.fspath(store)
        self.grid_size = grid_size
        self.vocab_size = vocab_size
        self.crop = crop
        self.codebook = codebook
        self.data_root = data_root
        self.decoder = decoder
        self.allow_unrecorded_decoder = bool(allow_unrecorded_decoder)
        expected_sha = None
        if codebook is not None:
            codebook = os.fspath(codebook)
            if _is_hex_sha256(codebook) and not osp.exists(codebook):
                expected_sha = codebook.lower()
            elif osp.isfile(codebook):
                expected_sha = load_codebook(codebook)[1]['centroids_sha256']
            else:
                raise ValueError(
                    f'LoadVisualTokens(codebook={codebook!r}) is neither a '
                    'codebook file nor a 64-hex-digit centroids_sha256. Pin '
                    'the codebook your token store was extracted with: set '
                    '`codebook_sha256` (VQ-KD: `vqkd_codebook_sha256`) in '
                    'the config to the sha256 fit_kclip_codebook.py printed '
                    '(also manifest.json "tokenizer"/"codebook_sha256" of '
                    f'the store {self.store_path}), or pass the codebook '
                    'file.')
        self.store = TokenStore(self.store_path)
        self.store.check(
            grid_size=grid_size,
            vocab_size=vocab_size,
            crop=crop,
            codebook_sha256=expected_sha,
            decoder=decoder,
            allow_unrecorded_decoder=self.allow_unrecorded_decoder)
        # Checksums against the manifest (once per process, before workers
        # fork): a bit-flipped or swapped array is refused, not trained on.
        self.store.verify()
        self._find = StoreKeyFinder(self.store.row, data_root)

    def _row(self, img_path: str) -> int:
        """Row of ``img_path`` in the store (one binary search), or -1."""
        return self._find(img_path)[1]

    def transform(self, results: Dict) -> Dict:
        """Add ``visual_tokens``.

        Raises:
            TokenStoreError: The image is not in the store.
        """
        img_path = results['img_path']
        row = self._row(img_path)
        if row < 0:
            raise TokenStoreError(
                f'Image {img_path} is missing from token store '
                f'{self.store_path} (keys are paths relative to the data '
                'root, e.g. '
                f'{next(iter(self.store.relpaths()), "<empty>")!r}); '
                'extract tokens for this split/data root')
        results['visual_tokens'] = np.asarray(
            self.store.tokens[row], dtype=np.int64)
        return results

    def __repr__(self) -> str:
        s = (f'{self.__class__.__name__}(store={self.store_path!r}, '
             f'grid_size={self.grid_size!r}, vocab_size={self.vocab_size}, '
             f'crop={self.crop!r}')
        if self.codebook is not None:
            s += f', codebook={self.codebook!r}'
        if self.data_root is not None:
            s += f', data_root={self.data_root!r}'
        return s + ')'
