from .per_sample_rng import PerSampleRNG
from .permutation import RandomPatchPermutation
from .token_views import LoadVisualTokenView
from .visual_tokens import LoadVisualTokens

__all__ = [
    'LoadVisualTokenView', 'LoadVisualTokens', 'PerSampleRNG',
    'RandomPatchPermutation'
]
