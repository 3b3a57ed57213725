from . import backbones, heads, selfsup, tokenizers, utils  # noqa: F401
