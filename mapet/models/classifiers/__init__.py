from .tokens_as_input import (TokenDataPreprocessor, TokenMLP,  # noqa: F401
                              TokenViT)
