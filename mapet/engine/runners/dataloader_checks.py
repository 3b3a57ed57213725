"""Refuse empty datasets when they are built, naming the dataset.

An ImageNet-style annotation file without lines (or a filter that drops
every sample) makes mmengine's ``BaseDataset`` fail while serialising its
data list with ``ValueError: need at least one array to concatenate``,
which names neither the dataset nor the file; with ``serialize_data=False``
or a batch larger than the dataset with ``drop_last=True`` the run
"finishes" without training. :class:`~mapet.engine.runners.MaPeTRunner`
calls these checks when it builds a dataloader.
"""
from typing import Any, List

from mmengine.registry import DATASETS
from torch.utils.data import DataLoader

__all__ = [
    'EmptyDatasetError', 'PickledAnnotationError', 'describe_dataset',
    'full_init_checked', 'check_dataloader_not_empty',
    'refuse_pickled_annotations'
]

# mmengine.load() picks its handler by extension: these run pickle.load.
PICKLE_EXTENSIONS = ('.pkl', '.pickle')


class PickledAnnotationError(ValueError):
    """An annotation file would be unpickled (it can execute code)."""


def refuse_pickled_annotations(dataset: Any) -> None:
    """Refuse a dataset (or a leaf of it) whose ann_file is a pickle.

    mmengine's ``BaseDataset`` reads ``ann_file`` with ``mmengine.load``,
    which unpickles ``.pkl``/``.pickle`` files: loading one from elsewhere
    can run arbitrary code. JSON (mmengine's format: ``metainfo`` +
    ``data_list``) and text lists are read as data.

    Raises:
        PickledAnnotationError: Naming the file and how to convert it.
    """
    for leaf in _leaves(dataset):
        ann_file = str(getattr(leaf, 'ann_file', '') or '')
        if ann_file.lower().endswith(PICKLE_EXTENSIONS):
            raise PickledAnnotationError(
                f'Annotation file {ann_file} of {type(leaf).__name__} is a '
                'pickle: reading it runs pickle.load, which can execute '
                'arbitrary code, so mapet refuses it. Convert it once, from '
                'a file you trust, to JSON (same content: metainfo + '
                'data_list) and point ann_file at the .json:\n'
                '  python -c "import mmengine,sys; mmengine.dump('
                'mmengine.load(sys.argv[1]), sys.argv[2])" '
                f'{ann_file} {ann_file.rsplit(".", 1)[0]}.json')


class EmptyDatasetError(ValueError):
    """A dataset (or a dataloader) has no samples (batches)."""


def describe_dataset(dataset: Any) -> str:
    """``Class, data_root=..., ann_file=..., data_prefix=...``."""
    parts = [type(dataset).__name__]
    for attr in ('data_root', 'ann_file', 'data_prefix'):
        value = getattr(dataset, attr, None)
        if value:
            parts.append(f'{attr}={value!r}')
    return ', '.join(parts)


def _message(dataset: Any) -> str:
    return (f'Dataset is empty ({describe_dataset(dataset)}): no samples '
            'were found. Check data_root/data_prefix/ann_file, that the '
            'annotation file has lines, and that the folder holds images '
            'with a supported extension.')


def _leaves(dataset: Any) -> List[Any]:
    """The leaf datasets of ``dataset`` (unwraps Concat/Repeat/...)."""
    if hasattr(dataset, 'datasets'):
        return [leaf for d in dataset.datasets for leaf in _leaves(d)]
    if hasattr(dataset, 'dataset') and not hasattr(dataset, 'pipeline'):
        return _leaves(dataset.dataset)
    return [dataset]


def full_init_checked(dataset_cfg: dict) -> Any:
    """Build and fully initialise a dataset; name it if it is empty.

    Args:
        dataset_cfg (dict): The dataset config (built lazily, then
            ``full_init`` is called, as mmengine's runner does).

    Returns:
        The initialised dataset.

    Raises:
        EmptyDatasetError: If the dataset (or one of its leaves) is empty.
        PickledAnnotationError: If an annotation file is a pickle.
    """
    cfg = dict(dataset_cfg)
    cfg.setdefault('lazy_init', True)
    dataset = DATASETS.build(cfg)
    refuse_pickled_annotations(dataset)  # before full_init reads it
    if hasattr(dataset, 'full_init'):
        try:
            dataset.full_init()
        except Exception as error:
            for leaf in _leaves(dataset):
                if len(getattr(leaf, 'data_list', None) or []) == 0 and \
                        getattr(leaf, '_fully_initialized', True) is False:
                    raise EmptyDatasetError(_message(leaf)) from error
            raise
    for leaf in _leaves(dataset):
        if len(leaf) == 0:
            raise EmptyDatasetError(_message(leaf))
    return dataset


def check_dataloader_not_empty(dataloader: DataLoader) -> None:
    """Fail early, naming the dataset, if a dataloader yields nothing.

    Args:
        dataloader (DataLoader): The built dataloader.

    Raises:
        EmptyDatasetError: If the dataset or the number of batches is zero.
    """
    dataset = dataloader.dataset
    if len(dataset) == 0:
        raise EmptyDatasetError(_message(dataset))
    if len(dataloader) == 0:
        raise EmptyDatasetError(
            f'The dataloader of {describe_dataset(dataset)} yields no batch: '
            f'{len(dataset)} samples with batch_size='
            f'{dataloader.batch_size} and drop_last=True. Lower the batch '
            'size or add data.')
