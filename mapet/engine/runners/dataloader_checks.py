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
    'EmptyDatasetError', 'describe_dataset', 'full_init_checked',
    'check_dataloader_not_empty'
]


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
    """
    cfg = dict(dataset_cfg)
    cfg.setdefault('lazy_init', True)
    dataset = DATASETS.build(cfg)
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
