"""mapet: MaPeT pre-training and the k-CLIP tokenizer on MMEngine/MMPretrain.

Importing the package registers every component into mmpretrain's
registries, adds a ``mapet`` scope node under them (:mod:`mapet.registry`)
and lists ``mapet`` in mmengine's package table so that configs can inherit
``_base_ = 'mapet::...'``. Nothing else in torch, mmengine, mmcv,
mmpretrain or mmseg changes: the engine behaviour we rely on comes from
components our configs select (``runner_type='mmpretrain.MaPeTRunner'``, loops, hooks).
"""
from mmengine.config.utils import MODULE2PACKAGE

from .version import __version__

# `_base_ = 'mapet::<folder>/<config>.py'`: mmengine resolves such bases
# through this table and the installed package's `.mim/` folder.
MODULE2PACKAGE.setdefault('mapet', 'mapet')

from . import registry  # noqa: E402,F401  (the `mapet` scope node)
from . import datasets, engine, models  # noqa: E402,F401

__all__ = ['__version__']
