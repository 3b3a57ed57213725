
from .two_stream_head import TwoStreamHead  # noqa: F401
