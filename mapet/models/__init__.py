from . import algorithms, backbones, heads, tokenizers  # noqa: F401
from . import classifiers  # noqa: F401,E402
