from . import transforms  # noqa: F401
from .token_store import TokenStore, TokenStoreError

__all__ = ['TokenStore', 'TokenStoreError']
