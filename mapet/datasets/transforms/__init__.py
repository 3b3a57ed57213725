
from .permutation import PermutationMaskGenerator  # noqa: F401
from .visual_tokens import LoadVisualTokens  # noqa: F401
