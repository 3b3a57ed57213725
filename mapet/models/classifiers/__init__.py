from .tokens_as_input import TokenDataPreprocessor, TokenMLP, TokenViT  # noqa: F401,E501
