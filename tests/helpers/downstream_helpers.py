"""Shared helpers of the downstream tests (tiny overrides, stand-in data)."""
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
from mmengine.config import Config
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / 'configs'
TINY_DIMS = 64
TINY_ARCH = dict(
    embed_dims=TINY_DIMS,
    num_layers=2,
    num_heads=2,
    feedforward_channels=2 * TINY_DIMS)


def configs_in(folder: str) -> List[Path]:
    """Every (non-_base_) config of ``configs/<folder>``."""
    return sorted((CONFIGS / folder).glob('*.py'))


def load(path: Path) -> Config:
    return Config.fromfile(str(path))


def tiny_vit(backbone: dict, num_layers: int = 2) -> None:
    """Shrink a ViT backbone config in place (64 dims).

    A multi-scale backbone (``out_indices`` with several entries) keeps one
    output per layer: give it as many layers as outputs.
    """
    outs = backbone.get('out_indices', -1)
    if isinstance(outs, (list, tuple)) and len(outs) > 1:
        num_layers = len(outs)
        backbone.out_indices = tuple(range(num_layers))
    backbone.arch = dict(TINY_ARCH, num_layers=num_layers)
    backbone.init_cfg = None
    if backbone.get('frozen_stages', -1) > 0:
        backbone.frozen_stages = num_layers


def sample_image(seed: int, size=(40, 48)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (*size, 3), dtype=np.uint8)


def write_images(paths: Sequence[Path], size=(40, 48)) -> None:
    for i, path in enumerate(paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(sample_image(i, size)).save(path)


def make_food101(root: Path, classes: Sequence[str]) -> Path:
    """Food-101 layout: images/<class>/<id>.jpg, meta/{train,test}.txt."""
    lines: Dict[str, List[str]] = {'train': [], 'test': []}
    for i, name in enumerate(classes):
        for split in lines:
            lines[split].append(f'{name}/{split}{i}')
    write_images([
        root / 'images' / f'{line}.jpg' for split in lines
        for line in lines[split]
    ])
    (root / 'meta').mkdir(parents=True, exist_ok=True)
    for split, items in lines.items():
        (root / 'meta' / f'{split}.txt').write_text('\n'.join(items) + '\n')
    return root


def make_fgvc_aircraft(root: Path, classes: Sequence[str]) -> Path:
    """FGVC-Aircraft layout: data/images/<id>.jpg + variant lists."""
    for split in ('trainval', 'test'):
        ids = [f'{split[:2]}{i:05d}' for i in range(len(classes))]
        write_images([root / 'data' / 'images' / f'{i}.jpg' for i in ids])
        (root / 'data' / f'images_variant_{split}.txt').write_text(''.join(
            f'{i} {c}\n' for i, c in zip(ids, classes)))
    return root


def make_stanford_cars(root: Path, num: int = 4) -> Path:
    """Stanford-Cars layout: cars_annos.mat + car_ims/*.jpg."""
    import mat4py
    names = [f'car_ims/{i:06d}.jpg' for i in range(num)]
    write_images([root / n for n in names])
    mat4py.savemat(
        str(root / 'cars_annos.mat'),
        dict(
            annotations=dict(
                relative_im_path=names,
                **{'class': list(range(1, num + 1))},
                test=[i % 2 for i in range(num)])))
    return root


def make_ade20k(root: Path, num: int = 2, size=(64, 80),
                num_classes: int = 150) -> Path:
    """ADE20K layout: images/<split>/*.jpg, annotations/<split>/*.png.

    Labels are 0 (ignored: ``reduce_zero_label``) .. ``num_classes``.
    """
    rng = np.random.default_rng(0)
    for split in ('training', 'validation'):
        for i in range(num):
            stem = f'ADE_{split}_{i:08d}'
            write_images([root / 'images' / split / f'{stem}.jpg'], size)
            label = rng.integers(0, num_classes + 1, size, dtype=np.uint8)
            path = root / 'annotations' / split / f'{stem}.png'
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(label).save(path)
    return root
