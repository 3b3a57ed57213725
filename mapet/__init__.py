"""mapet: MaPeT pre-training and the k-CLIP tokenizer on MMEngine/MMPretrain.

Importing the package registers every component into mmpretrain's registries.
"""
from .version import __version__  # noqa: F401
from . import datasets, engine, models, utils  # noqa: F401,E402

__all__ = ['__version__']
