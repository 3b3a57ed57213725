from .pretrained_load_check import (PretrainedLoadCheckHook,  # noqa: F401
                                    PretrainedLoadReport,
                                    check_pretrained_load)
from .exact_resume import ExactResumeHook  # noqa: F401
from .nan_guard import NaNGuardHook, NonFiniteLossError  # noqa: F401
from .safe_checkpoint import SafeCheckpointHook  # noqa: F401
