from .per_sample_rng import PerSampleRNG
from .permutation import RandomPatchPermutation
from .visual_tokens import LoadVisualTokens

__all__ = ['LoadVisualTokens', 'PerSampleRNG', 'RandomPatchPermutation']
