from .checkpoint_io import (CorruptCheckpointError,  # noqa: F401
                            atomic_save_checkpoint,
                            find_latest_intact_checkpoint, verify_checkpoint)
from .checkpoint_io import activate as _activate_atomic_checkpoints
from .loops import (ExactResumeEpochBasedTrainLoop,  # noqa: F401
                    check_dataset_not_empty)

# `import mapet` => checkpoints are written atomically with a checksum.
_activate_atomic_checkpoints()
