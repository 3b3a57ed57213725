"""Custom components of the example downstream project.

Importing this package (``custom_imports=dict(imports=['example_project'])``)
registers them into mmpretrain's registries, next to mapet's own.
"""
from .colour_tokenizer import PatchColourTokenizer

__all__ = ['PatchColourTokenizer']
