
from .kclip import KClipTokenizer  # noqa: F401
from .frozen import FrozenDALLE, FrozenVQKD  # noqa: F401
