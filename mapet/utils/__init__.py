from .atomic import (atomic_write, atomic_write_bytes, atomic_write_text,
                     sha256_file, verify_checksum, write_checksum)
from .checkpoint import (CorruptCheckpointError, UnsafeCheckpointError,
                         load_checkpoint_file, safe_torch_load)

__all__ = [
    'CorruptCheckpointError', 'UnsafeCheckpointError', 'atomic_write',
    'atomic_write_bytes', 'atomic_write_text', 'load_checkpoint_file',
    'safe_torch_load', 'sha256_file', 'verify_checksum', 'write_checksum'
]
