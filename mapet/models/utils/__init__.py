from .data_preprocessor import TokenDataPreprocessor

__all__ = ['TokenDataPreprocessor']
