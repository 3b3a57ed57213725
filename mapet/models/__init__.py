from . import algorithms, backbones, heads, tokenizers  # noqa: F401
