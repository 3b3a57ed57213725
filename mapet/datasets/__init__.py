from . import transforms  # noqa: F401
from . import robust_loading, sample_rng  # noqa: F401
from .robust_loading import SafeLoadImageFromFile  # noqa: F401
from .sample_rng import PerSampleRNG  # noqa: F401
from . import empty_check  # noqa: F401
