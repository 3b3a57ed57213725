from .mapet_vit import MaPeTViT
from .token_input import TokenMLP, TokenViT
from .visible_tokens_vit import VisibleTokensViT

__all__ = ['MaPeTViT', 'TokenMLP', 'TokenViT', 'VisibleTokensViT']
