from .dataloader_checks import EmptyDatasetError
from .exact_resume_loop import ExactResumeEpochBasedTrainLoop
from .mapet_runner import MaPeTRunner
from .target_checks import TargetMismatchError

__all__ = [
    'EmptyDatasetError', 'ExactResumeEpochBasedTrainLoop', 'MaPeTRunner',
    'TargetMismatchError'
]
