"""Refuse empty datasets when they are built, naming the dataset.

An ImageNet-style annotation file without lines (or a filter that drops
every sample) makes MMEngine's ``BaseDataset`` fail while serialising the
data list with ``ValueError: need at least one array to concatenate``,
which names neither the dataset nor the file. :func:`activate` (run by
``import mapet``) wraps ``BaseDataset._serialize_data`` so that such a
dataset raises :class:`EmptyDatasetError` naming its class, data root,
annotation file and data prefix instead. Datasets built with
``serialize_data=False`` are caught later by
:func:`mapet.engine.runner.check_dataset_not_empty` (training loop).
"""
from mmengine.dataset import BaseDataset

__all__ = ['EmptyDatasetError', 'describe_dataset', 'activate']


class EmptyDatasetError(ValueError):
    """A dataset has no samples."""


def describe_dataset(dataset) -> str:
    """``Class, data_root=..., ann_file=..., data_prefix=...``."""
    parts = [type(dataset).__name__]
    for attr in ('data_root', 'ann_file', 'data_prefix'):
        value = getattr(dataset, attr, None)
        if value:
            parts.append(f'{attr}={value!r}')
    return ', '.join(parts)


def empty_dataset_message(dataset) -> str:
    """The error message for an empty ``dataset``."""
    return (f'Dataset is empty ({describe_dataset(dataset)}): no samples '
            'were found. Check data_root/data_prefix/ann_file, that the '
            'annotation file has lines, and that the folder holds images '
            'with a supported extension.')


_ORIGINAL = BaseDataset._serialize_data


def _serialize_data(self):
    if len(self.data_list) == 0:
        raise EmptyDatasetError(empty_dataset_message(self))
    return _ORIGINAL(self)


def activate() -> None:
    """Install the check (idempotent)."""
    BaseDataset._serialize_data = _serialize_data


activate()
