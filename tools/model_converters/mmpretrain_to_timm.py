"""Export an mmpretrain ``VisionTransformer`` / ``MaPeTViT`` model to timm.

The command line of :mod:`mapet.converters.mmpretrain_to_timm`
(``--help`` lists the flags; that module documents the formats).
"""
from mapet.converters.mmpretrain_to_timm import main

if __name__ == '__main__':
    main()
