"""Build an image-folder copy of scikit-learn's bundled handwritten digits.

``sklearn.datasets.load_digits`` ships inside the scikit-learn wheel (UCI
"optical recognition of handwritten digits": 1797 8x8 grey images of 10
digit classes written by 43 people); nothing is downloaded. Images are
upscaled (bicubic) to ``--size`` px, replicated to RGB and split
train / val by a stratified random split fixed by ``--seed`` (chosen once,
before any result; default 50 %).

Output (mmpretrain ``CustomDataset`` layout, as the demo dataset)::

    <out>/{train,val}/<digit>/<digit>_<index>.png
    <out>/meta/{train,val}.txt     "<digit>/<file>.png <label>"
    <out>/meta/classes.txt

Usage::

    python tools/dataset_converters/make_digits_dataset.py --out data/digits
"""
import argparse
import os
import os.path as osp

import numpy as np
from PIL import Image


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', required=True)
    p.add_argument('--size', type=int, default=32)
    p.add_argument('--val-fraction', type=float, default=0.5)
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args(argv)
    from sklearn.datasets import load_digits
    digits = load_digits()
    images, labels = digits.images, digits.target
    rng = np.random.default_rng(a.seed)
    split = np.empty(len(labels), dtype=object)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = int(round(len(idx) * a.val_fraction))
        split[idx[:n_val]] = 'val'
        split[idx[n_val:]] = 'train'
    lines = {'train': [], 'val': []}
    for i, (img, lab) in enumerate(zip(images, labels)):
        grey = (img * (255. / 16.)).astype(np.uint8)
        pil = Image.fromarray(grey).resize((a.size, a.size), Image.BICUBIC)
        rel = f'{lab}/{lab}_{i:04d}.png'
        path = osp.join(a.out, split[i], rel)
        os.makedirs(osp.dirname(path), exist_ok=True)
        pil.convert('RGB').save(path)
        lines[split[i]].append(f'{rel} {lab}')
    os.makedirs(osp.join(a.out, 'meta'), exist_ok=True)
    for s, ls in lines.items():
        with open(osp.join(a.out, 'meta', f'{s}.txt'), 'w') as f:
            f.write('\n'.join(ls) + '\n')
    with open(osp.join(a.out, 'meta', 'classes.txt'), 'w') as f:
        f.write('\n'.join(str(c) for c in range(10)) + '\n')
    print(f'digits: {len(lines["train"])} train / {len(lines["val"])} val '
          f'images, 10 classes, {a.size} px -> {a.out}')


if __name__ == '__main__':
    main()
