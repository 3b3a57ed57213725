"""Tokenizer tooling shared by the models, transforms and ``tools/``.

* :mod:`.codebook`: k-CLIP codebook files and exact nearest-centroid search.
* :mod:`.token_store`: the on-disk token store (memory-mapped tokens, index,
  manifest) and its writer.
* :mod:`.images`: image listing (folder or mmpretrain dataset config) and the
  fixed centre-crop preprocessing used by the extraction tools.
* :mod:`.extraction`: the resumable, ``torchrun``-distributed engines behind
  ``tools/tokenizers/*.py``.
* :mod:`.cli`: the command-line flags and image listing those tools share.
"""
from .codebook import (CODEBOOK_FORMAT, centroids_sha256, load_codebook,
                       nearest_centroid, save_codebook)
from .token_store import TokenStore, TokenStoreError

__all__ = [
    'CODEBOOK_FORMAT', 'centroids_sha256', 'load_codebook', 'nearest_centroid',
    'save_codebook', 'TokenStore', 'TokenStoreError'
]
