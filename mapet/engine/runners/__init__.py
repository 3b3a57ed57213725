from .dataloader_checks import EmptyDatasetError, PickledAnnotationError
from .jitter_checks import JitterConfigError
from .load_checks import CheckpointMismatchError
from .exact_resume_loop import ExactResumeEpochBasedTrainLoop
from .mapet_flexible_runner import MaPeTFlexibleRunner
from .mapet_runner import MaPeTRunner
from .target_checks import TargetMismatchError

__all__ = [
    'CheckpointMismatchError', 'EmptyDatasetError', 'JitterConfigError',
    'PickledAnnotationError', 'ExactResumeEpochBasedTrainLoop',
    'MaPeTFlexibleRunner', 'MaPeTRunner', 'TargetMismatchError'
]
