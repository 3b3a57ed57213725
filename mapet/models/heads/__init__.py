from .visual_token_head import VisualTokenHead

__all__ = ['VisualTokenHead']
