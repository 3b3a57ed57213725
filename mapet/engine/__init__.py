
from . import hooks, optimizers  # noqa: F401
from . import runner  # noqa: F401
