from .pretrained_load_check import (PretrainedLoadCheckHook,  # noqa: F401
                                    PretrainedLoadReport,
                                    check_pretrained_load)
