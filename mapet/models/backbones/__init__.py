
from .mapet_vit import MaPeTViT  # noqa: F401
