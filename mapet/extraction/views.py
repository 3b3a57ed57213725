"""Extraction of a view store (tokens of several views per image).

See :mod:`mapet.datasets.token_views` for the views and the format. The
engine is :func:`mapet.extraction.engines.extract_tokens`'s (fixed chunks,
round-robin ranks, atomic chunk files, resumable, same bytes at any process
count) over one row per (image, view), keyed ``<relpath>#v<NN>``; rank 0
also writes ``views.npy`` (the boxes, from image headers) before merging.
"""
import os.path as osp
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from mapet.datasets.image_decode import decode_image, oriented_size
from mapet.datasets import token_store as ts
from mapet.datasets.token_views import (VIEW_CROP, VIEWS_NAME, num_views,
                                        render_view, sample_views, view_key)
from mapet.utils.atomic import atomic_write, sha256_file
from .engines import (_progress, plan_chunks, tokenize_chunks,
                      tokenizer_job)
from .images import ImageRecord, dist_barrier, sorted_unique


class ViewImages(Dataset):
    """One item per (image, view): the view rendered at ``size``, normalised.

    Args:
        records (Sequence[ImageRecord]): Images.
        size (int): Output side in pixels.
        mean, std (Sequence[float]): Normalisation (0-1 scale).
        view_cfg (dict): ``num_crops``, ``flip``, ``scale``, ``ratio``,
            ``seed`` of :func:`sample_views`.
        interpolation (str): Resize interpolation. Defaults to 'bicubic'.
        rows (Sequence[tuple], optional): ``(image index, view)`` to serve.
    """

    def __init__(self,
                 records: Sequence[ImageRecord],
                 size: int,
                 mean: Sequence[float],
                 std: Sequence[float],
                 view_cfg: Dict[str, Any],
                 interpolation: str = 'bicubic',
                 rows: Optional[Sequence[Tuple[int, int]]] = None) -> None:
        self.records = records
        self.size = int(size)
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)
        self.view_cfg = dict(view_cfg)
        self.interpolation = interpolation
        v = num_views(view_cfg['num_crops'], view_cfg['flip'])
        self.rows = list(rows) if rows is not None else [
            (i, k) for i in range(len(records)) for k in range(v)
        ]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, int]:
        idx, k = self.rows[i]
        rec = self.records[idx]
        # The trainer's decoder (EXIF, bit depth, colour order): the view's
        # tokens come from the pixels LoadVisualTokenView will crop.
        img = Image.fromarray(decode_image(rec.path))
        view = sample_views(rec.relpath, img.width, img.height,
                            **self.view_cfg)[k]
        out = render_view(img, view, self.size, self.interpolation)
        x = torch.from_numpy(np.asarray(out, dtype=np.float32) / 255.)
        x = (x.permute(2, 0, 1) - self.mean) / self.std
        return x, i


def image_views(records: Sequence[ImageRecord],
                view_cfg: Dict[str, Any]) -> np.ndarray:
    """(num_images * V, 5) views of every image, row order (image, view);
    reads only image headers."""
    out = []
    for rec in records:
        w, h = oriented_size(rec.path)
        out.append(sample_views(rec.relpath, w, h, **view_cfg))
    return np.concatenate(out).astype(np.int64)


def extract_view_tokens(tokenizer: nn.Module,
                        records: Sequence[ImageRecord],
                        out_dir: str,
                        num_crops: int = 4,
                        flip: bool = True,
                        scale: Sequence[float] = (0.35, 1.0),
                        ratio: Sequence[float] = (3 / 4, 4 / 3),
                        seed: int = 0,
                        input_size: Optional[int] = None,
                        chunk_size: int = 1024,
                        batch_size: int = 32,
                        num_workers: int = 2,
                        device: Optional[torch.device] = None,
                        rank: int = 0,
                        world_size: int = 1,
                        dataset_info: Optional[Dict[str, Any]] = None,
                        progress: bool = True) -> Optional[Dict[str, Any]]:
    """Tokenize ``V`` views of every image into a view store.

    Args mirror :func:`~mapet.extraction.engines.extract_tokens`, plus the
    views: ``num_crops`` random-resized crops (area fraction ``scale``,
    aspect ``ratio``), ``flip`` (flipped centre view, random flips of the
    crops) and ``seed``.

    Returns:
        dict | None: The manifest on rank 0, None elsewhere.
    """
    images = sorted_unique(records)
    view_cfg = dict(
        num_crops=int(num_crops),
        flip=bool(flip),
        scale=[float(s) for s in scale],
        ratio=[float(r) for r in ratio],
        seed=int(seed))
    v = num_views(num_crops, flip)
    # one row per (image, view), in the byte order of the keys
    rows = sorted(((i, k) for i in range(len(images)) for k in range(v)),
                  key=lambda r: view_key(images[r[0]].relpath, r[1]).encode())
    keys = [view_key(images[i].relpath, k) for i, k in rows]
    size, num_tokens, vocab, job = tokenizer_job(
        tokenizer, input_size, VIEW_CROP, [r.relpath for r in images],
        dataset_info, views=dict(view_cfg, num_views=v))
    done, sizes, todo = plan_chunks(out_dir, job, len(rows), chunk_size,
                                    num_tokens, rank, world_size)
    if done is not None:
        return done if rank == 0 else None
    serve = [
        rows[j] for c in todo
        for j in range(c * chunk_size, c * chunk_size + sizes[c])
    ]
    if device is None:
        device = next(iter(tokenizer.buffers()), torch.empty(0)).device
    tokenizer.to(device)
    dataset = ViewImages(images, size, tokenizer.mean, tokenizer.std,
                         view_cfg, tokenizer.interpolation, serve)
    tokenize_chunks(
        tokenizer, dataset, todo, sizes, out_dir, vocab, batch_size,
        num_workers, device,
        _progress(len(serve), 'view tokens', progress and rank == 0))
    dist_barrier()
    if rank != 0:
        return None
    per_image = image_views(images, view_cfg).reshape(len(images), v, 5)
    views = np.stack([per_image[i, k] for i, k in rows])
    views_path = osp.join(out_dir, VIEWS_NAME)
    with atomic_write(views_path, 'wb') as f:
        np.save(f, np.ascontiguousarray(views, dtype=np.int64))
    job['views_sha256'] = sha256_file(views_path)
    return ts.merge_store(out_dir, keys, chunk_size, num_tokens, job)
