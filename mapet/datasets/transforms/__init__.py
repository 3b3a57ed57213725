from .deferred_color_jitter import DeferredColorJitter
from .loading import LoadImageForTokens
from .per_sample_rng import PerSampleRNG
from .permutation import RandomPatchPermutation
from .token_views import LoadVisualTokenView
from .visual_tokens import LoadVisualTokens

__all__ = [
    'DeferredColorJitter', 'LoadImageForTokens', 'LoadVisualTokenView',
    'LoadVisualTokens', 'PerSampleRNG', 'RandomPatchPermutation'
]
from .precropped import LoadPrecroppedImage  # noqa: E402,F401
