"""Build the small, deterministic demo dataset used by the demo and tests.

Each class is one of scikit-image's *bundled* sample photographs (files that
ship inside the wheel, read straight from ``skimage/data``; nothing is
fetched, so no network access can happen). Crops are cut from the photograph
at random positions and scales and resized to 64-96 px. Train and val crops
come from disjoint vertical strips of each photograph (left part / right
part), so no val pixel was ever seen in training, yet the task stays learnable
(colour, texture and content differ per class): a linear probe beats chance.

Output (mmpretrain ``ImageNet``/``CustomDataset`` layout)::

    <out>/train/<class>/<class>_00000.png
    <out>/val/<class>/<class>_00000.png
    <out>/meta/train.txt          "<class>/<file>.png <label>" per line
    <out>/meta/val.txt
    <out>/meta/classes.txt        one class name per line (label order)
    <out>/meta/fingerprint.json   written last: marks the dataset complete

Usage::

    python tools/dataset_converters/make_demo_dataset.py --out data/demo

The build is idempotent: if ``fingerprint.json`` matches the requested
parameters and every listed file exists, nothing is done. Otherwise the
dataset is built in a temporary sibling folder and moved into place, so a
killed run never leaves a folder that looks complete.
"""
import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import os.path as osp
import shutil
import sys
import tempfile
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

# Bump when the generation procedure changes, so old folders get rebuilt.
GENERATOR_VERSION = 1

# class name -> bundled file in skimage/data. All RGB photographs (or a
# colour micrograph) with distinct content; none needs pooch.
DEFAULT_SOURCES: Dict[str, str] = {
    'astronaut': 'astronaut.png',
    'cat': 'chelsea.png',
    'coffee': 'coffee.png',
    'galaxies': 'hubble_deep_field.jpg',
    'motorcycle': 'motorcycle_left.png',
    'retina': 'retina.jpg',
    'rocket': 'rocket.jpg',
    'tissue': 'ihc.png',
}

#: Fraction of each photograph's width that feeds the train split; val
#: crops come from the remaining right-hand strip.
TRAIN_FRACTION = 0.7


def skimage_data_dir() -> str:
    """Return scikit-image's bundled data folder (raises if not installed)."""
    try:
        import skimage.data
    except ImportError as e:  # pragma: no cover - depends on the env
        raise ImportError(
            'The demo dataset is cut from scikit-image sample images: '
            "install it with `pip install -e .[tests]` or "
            '`pip install scikit-image`.') from e
    return osp.dirname(skimage.data.__file__)


def _load_source(name: str) -> np.ndarray:
    path = osp.join(skimage_data_dir(), name)
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{name} is not bundled with this scikit-image version '
            f'({path} missing); choose other sources.')
    with Image.open(path) as im:
        return np.asarray(im.convert('RGB'))


def _file_sha256(path: str) -> str:
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def fingerprint(sources: Dict[str, str], num_train: int, num_val: int,
                min_size: int, max_size: int, seed: int) -> Dict:
    """Everything that determines the output, including the source bytes."""
    data_dir = skimage_data_dir()
    return dict(
        generator_version=GENERATOR_VERSION,
        sources={
            cls: dict(file=f, sha256=_file_sha256(osp.join(data_dir, f)))
            for cls, f in sources.items()
        },
        num_train_per_class=num_train,
        num_val_per_class=num_val,
        min_size=min_size,
        max_size=max_size,
        train_fraction=TRAIN_FRACTION,
        seed=seed,
    )


def _crops(img: np.ndarray, x0: int, x1: int, num: int, min_size: int,
           max_size: int, rng: np.random.Generator) -> Iterator[Image.Image]:
    """Random square crops inside columns [x0, x1), resized to 64-96 px."""
    h = img.shape[0]
    max_side = min(x1 - x0, h)
    min_side = min(max_side, max(min_size, max_side // 4))
    for _ in range(num):
        side = int(rng.integers(min_side, max_side + 1))
        top = int(rng.integers(0, h - side + 1))
        left = int(rng.integers(x0, x1 - side + 1))
        out = int(rng.integers(min_size, max_size + 1))
        crop = Image.fromarray(img[top:top + side, left:left + side])
        crop = crop.resize((out, out), Image.BICUBIC)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        yield crop


def _build(out: str, fp: Dict, sources: Dict[str, str]) -> None:
    classes = sorted(sources)
    os.makedirs(osp.join(out, 'meta'))
    for split in ('train', 'val'):
        lines: List[str] = []
        num = fp[f'num_{split}_per_class']
        for label, cls in enumerate(classes):
            img = _load_source(sources[cls])
            w = img.shape[1]
            cut = int(round(w * TRAIN_FRACTION))
            x0, x1 = (0, cut) if split == 'train' else (cut, w)
            # One stream per (class, split): adding a class does not change
            # the crops of the others.
            rng = np.random.default_rng(
                [fp['seed'], label, 0 if split == 'train' else 1])
            folder = osp.join(out, split, cls)
            os.makedirs(folder)
            for i, crop in enumerate(
                    _crops(img, x0, x1, num, fp['min_size'], fp['max_size'],
                           rng)):
                rel = f'{cls}/{cls}_{i:05d}.png'
                crop.save(osp.join(out, split, rel), optimize=False)
                lines.append(f'{rel} {label}')
        with open(osp.join(out, 'meta', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
    with open(osp.join(out, 'meta', 'classes.txt'), 'w') as f:
        f.write('\n'.join(classes) + '\n')
    # Written last: its presence (with matching content) means complete.
    with open(osp.join(out, 'meta', 'fingerprint.json'), 'w') as f:
        json.dump(fp, f, indent=2, sort_keys=True)


def is_complete(out: str, fp: Dict) -> bool:
    """Whether ``out`` holds a finished build with fingerprint ``fp``."""
    fp_file = osp.join(out, 'meta', 'fingerprint.json')
    try:
        with open(fp_file) as f:
            if json.load(f) != fp:
                return False
        for split in ('train', 'val'):
            with open(osp.join(out, 'meta', f'{split}.txt')) as f:
                rels = [line.split()[0] for line in f if line.strip()]
            if len(rels) != fp[f'num_{split}_per_class'] * len(fp['sources']):
                return False
            if not all(osp.isfile(osp.join(out, split, r)) for r in rels):
                return False
    except (OSError, ValueError, IndexError):
        return False
    return True


@contextlib.contextmanager
def _lock(path: str) -> Iterator[None]:
    """Inter-process lock so parallel test sessions build only once."""
    with open(path, 'a') as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def make_demo_dataset(out: str = 'data/demo',
                      num_train_per_class: int = 40,
                      num_val_per_class: int = 10,
                      min_size: int = 64,
                      max_size: int = 96,
                      seed: int = 0,
                      sources: Optional[Dict[str, str]] = None,
                      force: bool = False) -> str:
    """Build (or reuse) the demo dataset in ``out``.

    Args:
        out (str): Output folder. Defaults to 'data/demo'.
        num_train_per_class (int): Train crops per class. Defaults to 40.
        num_val_per_class (int): Val crops per class. Defaults to 10.
        min_size (int): Smallest output side in px. Defaults to 64.
        max_size (int): Largest output side in px. Defaults to 96.
        seed (int): Random seed. Defaults to 0.
        sources (dict, optional): class name -> file in ``skimage/data``.
            Defaults to :data:`DEFAULT_SOURCES`.
        force (bool): Rebuild even if a complete build exists.

    Returns:
        str: The absolute output folder.
    """
    if not 1 <= min_size <= max_size:
        raise ValueError(f'need 1 <= min_size <= max_size, got '
                         f'{min_size}, {max_size}')
    sources = dict(DEFAULT_SOURCES if sources is None else sources)
    out = osp.abspath(out)
    parent = osp.dirname(out)
    os.makedirs(parent, exist_ok=True)
    fp = fingerprint(sources, num_train_per_class, num_val_per_class,
                     min_size, max_size, seed)
    with _lock(osp.join(parent, f'.{osp.basename(out)}.lock')):
        if not force and is_complete(out, fp):
            return out
        tmp = tempfile.mkdtemp(prefix=f'.{osp.basename(out)}.tmp-', dir=parent)
        try:
            build_dir = osp.join(tmp, 'build')
            _build(build_dir, fp, sources)
            if osp.lexists(out):
                # Stale/incomplete: move aside first so `out` is never a
                # mix of two builds.
                os.replace(out, osp.join(tmp, 'old'))
            os.replace(build_dir, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Build the deterministic demo ImageNet-format dataset '
        'from scikit-image sample photographs (no download).')
    parser.add_argument('--out', default='data/demo', help='output folder')
    parser.add_argument('--num-train-per-class', type=int, default=40)
    parser.add_argument('--num-val-per-class', type=int, default=10)
    parser.add_argument('--min-size', type=int, default=64)
    parser.add_argument('--max-size', type=int, default=96)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--force', action='store_true', help='rebuild even if complete')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Tuple[str, int]:
    args = parse_args(argv)
    out = make_demo_dataset(
        args.out,
        num_train_per_class=args.num_train_per_class,
        num_val_per_class=args.num_val_per_class,
        min_size=args.min_size,
        max_size=args.max_size,
        seed=args.seed,
        force=args.force)
    with open(osp.join(out, 'meta', 'classes.txt')) as f:
        num_classes = sum(1 for line in f if line.strip())
    print(f'demo dataset ready: {out} ({num_classes} classes)')
    return out, num_classes


if __name__ == '__main__':
    main(sys.argv[1:])
