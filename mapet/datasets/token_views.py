"""Augmentation-aware token stores: tokens of several *views* of each image.

A plain token store holds the tokens of one fixed centre crop, so the only
augmentation pre-training can use is colour jitter (geometry would misalign
tokens and patches). A *view store* holds, per image, the tokens of ``V``
geometric views and the views themselves:

* view 0: the centre square (side = the short side of the image);
* view 1: the same, horizontally flipped (``flip=True``);
* views 2..: ``num_crops`` random-resized-crop boxes (torchvision's
  sampling: area fraction in ``scale``, aspect ratio in ``ratio``, log
  uniform), each flipped with probability 0.5 when ``flip=True``.

Every view is rendered by one function, :func:`render_view`: crop the box
``(x, y, w, h)`` from the decoded RGB image, resize it to ``size x size``
(bicubic, PIL), flip if asked. The extraction (at the tokenizer's size) and
the training transform :class:`~mapet.datasets.transforms.LoadVisualTokenView`
(at the backbone's size) both call it with the box stored in the store, so
the tokens of view ``v`` are the tokens of exactly the pixels the backbone
sees for view ``v``.

On disk it is a token store (:mod:`mapet.datasets.token_store`) whose rows
are keyed ``<relpath>#v<NN>`` (one row per image and view; ``crop='views'``
in the manifest), plus ``views.npy``: int64 (rows, 5) = ``x, y, w, h, flip``
in pixels of the original image, row-aligned with ``tokens.npy`` and
checksummed in the manifest (``views_sha256``).
"""
import math
import os.path as osp
import zlib
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from mapet.utils.atomic import sha256_file
from .token_store import TokenStore, TokenStoreError

VIEWS_NAME = 'views.npy'
VIEW_CROP = 'views'
VIEW_SEP = '#v'
_RESAMPLE = {
    'bicubic': Image.BICUBIC,
    'bilinear': Image.BILINEAR,
    'lanczos': Image.LANCZOS,
    'nearest': Image.NEAREST,
}


def view_key(relpath: str, view: int) -> str:
    """Store key of view ``view`` of image ``relpath``."""
    return f'{relpath}{VIEW_SEP}{int(view):02d}'


def num_views(num_crops: int, flip: bool) -> int:
    """Views per image: centre (+ flipped centre) + ``num_crops`` crops."""
    return 1 + int(bool(flip)) + int(num_crops)


def sample_views(relpath: str,
                 width: int,
                 height: int,
                 num_crops: int = 4,
                 flip: bool = True,
                 scale: Sequence[float] = (0.35, 1.0),
                 ratio: Sequence[float] = (3 / 4, 4 / 3),
                 seed: int = 0) -> np.ndarray:
    """The views of one image: int64 (V, 5) rows ``x, y, w, h, flip``.

    Deterministic in ``(seed, relpath, width, height)`` and the settings
    (not in the image order, the process or the batch).
    """
    rng = np.random.default_rng([int(seed), zlib.crc32(relpath.encode())])
    side = min(width, height)
    centre = [(width - side) // 2, (height - side) // 2, side, side]
    views = [centre + [0]]
    if flip:
        views.append(centre + [1])
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(num_crops):
        box = None
        for _ in range(10):
            target = area * rng.uniform(scale[0], scale[1])
            aspect = math.exp(rng.uniform(*log_ratio))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                x = int(rng.integers(0, width - w + 1))
                y = int(rng.integers(0, height - h + 1))
                box = [x, y, w, h]
                break
        if box is None:
            box = list(centre)
        views.append(box + [int(flip and rng.random() < 0.5)])
    return np.asarray(views, dtype=np.int64)


def render_view(img: Image.Image,
                view: Sequence[int],
                size: int,
                interpolation: str = 'bicubic') -> Image.Image:
    """Crop box ``view[:4]`` of ``img``, resize to ``size``, flip if
    ``view[4]``. The one rendering both extraction and training use."""
    x, y, w, h, flip = (int(v) for v in view)
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > img.width or \
            y + h > img.height:
        raise ValueError(
            f'view box {(x, y, w, h)} does not fit a {img.width}x'
            f'{img.height} image: the image differs from the one tokenized')
    out = img.crop((x, y, x + w, y + h)).resize(
        (size, size), _RESAMPLE[interpolation])
    if flip:
        out = out.transpose(Image.FLIP_LEFT_RIGHT)
    return out


class ViewTokenStore(TokenStore):
    """A finished view store (tokens per image and view, and the views).

    Args:
        root (str): Store directory.

    Raises:
        TokenStoreError: Not a view store, or ``views.npy`` is missing or
            does not match ``tokens.npy``.
    """

    def __init__(self, root: str) -> None:
        super().__init__(root)
        if self.crop != VIEW_CROP or 'views' not in self.manifest:
            raise TokenStoreError(
                f'{self.root} is not a view store (crop={self.crop!r}); '
                'extract it with tools/tokenizers/extract_tokens.py '
                '--views ...')
        path = osp.join(self.root, VIEWS_NAME)
        if not osp.isfile(path):
            raise TokenStoreError(f'{self.root}: {VIEWS_NAME} missing')
        self._views: Optional[np.ndarray] = None
        if self.views.shape != (self.num_images, 5):
            raise TokenStoreError(
                f'{self.root}: {VIEWS_NAME} has shape {self.views.shape}, '
                f'expected {(self.num_images, 5)}')

    def __getstate__(self) -> Dict:
        state = super().__getstate__()
        state['_views'] = None
        return state

    @property
    def views(self) -> np.ndarray:
        """(rows, 5) int64 ``x, y, w, h, flip`` of every row."""
        if self._views is None:
            self._views = np.load(
                osp.join(self.root, VIEWS_NAME),
                mmap_mode='r',
                allow_pickle=False)
        return self._views

    @property
    def views_per_image(self) -> int:
        return int(self.manifest['views']['num_views'])

    def verify(self) -> None:
        super().verify()
        digest = sha256_file(osp.join(self.root, VIEWS_NAME))
        if digest != self.manifest.get('views_sha256'):
            raise TokenStoreError(
                f'{VIEWS_NAME} in {self.root} is corrupt: sha256 {digest} != '
                f'manifest {self.manifest.get("views_sha256")}')

    def get_view(self, relpath: str, view: int) -> Tuple[np.ndarray,
                                                         np.ndarray]:
        """``(tokens int64 (T,), view int64 (5,))`` of one image's view."""
        r = self.row(view_key(relpath, view))
        if r < 0:
            raise KeyError(view_key(relpath, view))
        return (np.asarray(self.tokens[r], dtype=np.int64),
                np.asarray(self.views[r], dtype=np.int64))
