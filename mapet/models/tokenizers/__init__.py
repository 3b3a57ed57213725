from .codebook import (centroids_sha256, load_codebook, nearest_centroid,
                       save_codebook)
from .frozen import FrozenDALLE, FrozenVQKD
from .kclip import KClipTokenizer
from .pixel import PixelKMeansTokenizer

__all__ = [
    'FrozenDALLE', 'FrozenVQKD', 'KClipTokenizer', 'PixelKMeansTokenizer',
    'centroids_sha256',
    'load_codebook', 'nearest_centroid', 'save_codebook'
]
