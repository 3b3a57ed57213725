"""mapet: MaPeT pre-training and the k-CLIP tokenizer on MMEngine/MMPretrain.

Importing the package registers every component into mmpretrain's registries.
"""
import warnings

from .version import __version__  # noqa: F401

# onedl-mmcv is pure Python (no compiled ops); mmcv warns on every import that
# its deformable attention is missing. Nothing in MaPeT uses it.
warnings.filterwarnings(
    'ignore', message='Fail to import ``MultiScaleDeformableAttention``')

from . import datasets, engine, models, utils  # noqa: F401,E402

__all__ = ['__version__']
