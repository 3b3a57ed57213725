
from .atomic import (atomic_write, atomic_write_bytes,  # noqa: F401
                     atomic_write_text, sha256_file, verify_checksum,
                     write_checksum)
from .checkpoint import UnsafeCheckpointError, safe_torch_load  # noqa: F401
from .checkpoint import activate as _activate_safe_checkpoints

# `import mapet` => checkpoints load with weights_only=True, never fallback.
_activate_safe_checkpoints()
from .config_utils import register_config_package  # noqa: E402

# `_base_ = 'mapet::...'` in configs outside this repository.
register_config_package()
