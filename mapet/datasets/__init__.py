from . import transforms  # noqa: F401
from .token_store import TokenStore, TokenStoreError
from .token_views import ViewTokenStore

__all__ = ['TokenStore', 'TokenStoreError', 'ViewTokenStore']
