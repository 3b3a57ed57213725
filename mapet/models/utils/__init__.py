from .color_jitter import color_jitter_batch
from .data_preprocessor import (ColorJitterDataPreprocessor,
                                TokenDataPreprocessor)

__all__ = [
    'ColorJitterDataPreprocessor', 'TokenDataPreprocessor',
    'color_jitter_batch'
]
