
from .mapet import MaPeT  # noqa: F401
from .cae_tokens import TokenCAE, VisibleTokensViT  # noqa: F401
