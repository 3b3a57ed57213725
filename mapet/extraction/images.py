"""Image lists and the fixed centre-crop preprocessing of the token tools.

Every image is identified by its path **relative to the data root**, POSIX
separators:

* image folder: relative to the folder given (``--image-folder``), found
  recursively;
* mmpretrain dataset config: relative to the dataset's ``data_root``
  (e.g. ``train/n01440764/n01440764_10026.JPEG`` for ImageNet with
  ``data_prefix='train'``); when a dataset has no ``data_root``, relative to
  its image prefix (``data_prefix['img_path']``).

:class:`~mapet.datasets.transforms.LoadVisualTokens` finds the key again
from ``results['img_path']`` (see its docstring).
"""
import os
import os.path as osp
from dataclasses import dataclass
from datetime import timedelta
from typing import List, Optional, Sequence, Tuple

import torch
from PIL import Image
from torch.utils.data import Dataset

from mapet.datasets.image_decode import decode_image

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif',
                  '.tiff', '.webp')
# Collectives of the tools wait for the slowest rank's whole extraction.
DIST_TIMEOUT = timedelta(hours=12)


@dataclass(frozen=True)
class ImageRecord:
    """One image: its key (relative path) and where to read it."""
    relpath: str
    path: str


def _posix_rel(path: str, root: str) -> str:
    return osp.relpath(path, root).replace(os.sep, '/')


def sorted_unique(records: Sequence[ImageRecord]) -> List[ImageRecord]:
    """Sort by relative path; refuse duplicate keys."""
    out = sorted(records, key=lambda r: r.relpath.encode('utf-8'))
    for a, b in zip(out, out[1:]):
        if a.relpath == b.relpath:
            raise ValueError(f'Image {a.relpath!r} is listed twice')
    if not out:
        raise ValueError('No images found')
    return out


def _check_utf8_name(path: str) -> None:
    """Token-store keys are UTF-8 paths: refuse names that are not."""
    try:
        path.encode('utf-8')
    except UnicodeEncodeError:
        raise ValueError(
            f'Image file name {os.fsencode(path)!r} is not valid UTF-8: '
            'token store keys are UTF-8 relative paths, and the trainer '
            'would not find this image again. Rename it to UTF-8 (e.g. '
            '`convmv -f latin1 -t utf8 -r --notest DIR`).') from None


def list_image_folder(root: str) -> List[ImageRecord]:
    """All images under ``root`` (recursive), keyed relative to ``root``."""
    if not osp.isdir(root):
        raise FileNotFoundError(f'Image folder {root} does not exist')
    records = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(IMG_EXTENSIONS):
                path = osp.join(dirpath, name)
                _check_utf8_name(path)
                records.append(ImageRecord(_posix_rel(path, root), path))
    return sorted_unique(records)


def list_dataset_config(config: str,
                        split: str = 'train',
                        data_root: Optional[str] = None) -> List[ImageRecord]:
    """Images of ``<split>_dataloader.dataset`` of an mmpretrain config.

    Args:
        config (str): Config file.
        split (str): ``train``, ``val`` or ``test``. Defaults to 'train'.
        data_root (str, optional): Overrides the dataset's ``data_root``.
    """
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import DATASETS

    import mmpretrain.datasets  # noqa: F401  (registers dataset classes)

    cfg = Config.fromfile(config)
    key = f'{split}_dataloader'
    if key not in cfg or 'dataset' not in cfg[key]:
        raise KeyError(f'{config} has no {key}.dataset')
    ds_cfg = cfg[key]['dataset'].copy()
    if data_root is not None:
        ds_cfg['data_root'] = data_root
    ds_cfg['pipeline'] = []
    ds_cfg['lazy_init'] = True
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        dataset = DATASETS.build(ds_cfg)
    # No annotation file is unpickled (it can execute code).
    from mapet.engine.runners.dataloader_checks import \
        refuse_pickled_annotations
    refuse_pickled_annotations(dataset)
    if hasattr(dataset, 'full_init'):
        dataset.full_init()
    if not hasattr(dataset, 'get_data_info'):
        raise TypeError(f'{type(dataset).__name__} is not a BaseDataset')
    root = dataset.data_root or dataset.data_prefix.get('img_path', '')
    records = []
    for i in range(len(dataset)):
        path = dataset.get_data_info(i)['img_path']
        _check_utf8_name(path)
        records.append(ImageRecord(_posix_rel(path, root or '.'), path))
    return sorted_unique(records)


class CenterCropImages(Dataset):
    """Resize the short side to ``size`` then centre-crop ``size x size``,
    normalise with ``mean``/``std`` (0-1 scale). Yields ``(image, index)``.

    Args:
        records (Sequence[ImageRecord]): Images.
        size (int): Output side in pixels.
        mean (Sequence[float]): Per-channel mean (0-1 scale).
        std (Sequence[float]): Per-channel std (0-1 scale).
        interpolation (str): ``bicubic``, ``bilinear`` or ``lanczos``.
        indices (Sequence[int], optional): Subset of ``records`` to serve.
    """

    def __init__(self,
                 records: Sequence[ImageRecord],
                 size: int,
                 mean: Sequence[float],
                 std: Sequence[float],
                 interpolation: str = 'bicubic',
                 indices: Optional[Sequence[int]] = None) -> None:
        from torchvision import transforms as T
        self.records = records
        self.indices = list(range(len(records))) if indices is None \
            else list(indices)
        mode = T.InterpolationMode[interpolation.upper()]
        self.transform = T.Compose([
            T.Resize(size, interpolation=mode),
            T.CenterCrop(size),
            T.ToTensor(),
            T.Normalize(mean, std),
        ])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, int]:
        idx = self.indices[i]
        # The trainer's LoadImageForTokens decodes with the same function.
        img = Image.fromarray(decode_image(self.records[idx].path))
        return self.transform(img), idx


def init_tool_dist() -> Tuple[int, int, torch.device]:
    """Join the ``torchrun`` process group if there is one.

    Returns:
        tuple: ``(rank, world_size, device)``; ``cuda:LOCAL_RANK`` when CUDA
        is available, else CPU (gloo).
    """
    import torch.distributed as dist
    world = int(os.environ.get('WORLD_SIZE', '1'))
    rank = int(os.environ.get('RANK', '0'))
    cuda = torch.cuda.is_available()
    device = torch.device(
        f'cuda:{int(os.environ.get("LOCAL_RANK", "0"))}' if cuda else 'cpu')
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(
            'nccl' if cuda else 'gloo', timeout=DIST_TIMEOUT)
    return rank, world, device


def dist_barrier() -> None:
    """Barrier when a process group is active (no-op otherwise)."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
