from .mapet import MaPeT
from .token_cae import TokenCAE

__all__ = ['MaPeT', 'TokenCAE']
