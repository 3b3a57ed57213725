"""Offline extraction: fitting the k-CLIP codebook and writing token stores.

The resumable, ``torchrun``-distributed engines behind
``tools/tokenizers/*.py`` (not registered components):

* :mod:`.images`: image listing (folder or mmpretrain dataset config) and the
  fixed centre-crop preprocessing of the extraction tools.
* :mod:`.engines`: codebook fitting and token extraction.
* :mod:`.cli`: the command-line flags and image listing those tools share.

The codebook math lives with the tokenizers
(:mod:`mapet.models.tokenizers.codebook`), the token store with the datasets
(:mod:`mapet.datasets.token_store`).
"""
