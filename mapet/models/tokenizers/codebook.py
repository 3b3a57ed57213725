"""k-CLIP codebook files and exact nearest-centroid assignment.

Codebook file format (written by ``tools/tokenizers/fit_kclip_codebook.py``):
an uncompressed ``.npz`` archive readable with ``np.load(path,
allow_pickle=False)`` holding

* ``centroids``: float32 array (K, D), C order;
* ``metadata``: a 0-d unicode array with a JSON object (clip model, pretrained
  tag or checkpoint sha256, input size, layer, K, D, normalize, sample count,
  seed, ...) whose ``centroids_sha256`` is the SHA-256 of the centroid bytes
  (float32, little endian, C order).

A sidecar ``<file>.sha256`` (``sha256sum`` format) and a human-readable
``<file>.json`` copy of the metadata are written next to it. A plain ``.npy``
(K, D) float array is accepted too; it carries no metadata or checksum.
"""
import json
import os
import os.path as osp
from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch

from mapet.utils.atomic import (atomic_write, atomic_write_text, checksum_path,
                                verify_checksum, write_checksum)

PathLike = Union[str, os.PathLike]

CODEBOOK_FORMAT = 'mapet-kclip-codebook-v1'
_CENTROIDS_KEY = 'centroids'
_METADATA_KEY = 'metadata'


def centroids_sha256(centroids: np.ndarray) -> str:
    """SHA-256 of a codebook's content, independent of its container.

    Args:
        centroids (np.ndarray): (K, D) array; hashed as little-endian float32
            in C order, the representation the tokenizer computes with.

    Returns:
        str: Hex digest.
    """
    import hashlib
    arr = np.ascontiguousarray(centroids, dtype='<f4')
    return hashlib.sha256(arr.tobytes()).hexdigest()


def save_codebook(path: PathLike, centroids: np.ndarray,
                  metadata: Dict) -> Dict:
    """Write a codebook file atomically with metadata and checksums.

    Args:
        path (str | PathLike): Destination; ``.npz`` is appended if missing.
        centroids (np.ndarray): (K, D) float array.
        metadata (dict): JSON-serialisable description of how the codebook
            was made. ``format``, ``num_centroids``, ``dim`` and
            ``centroids_sha256`` are filled in here.

    Returns:
        dict: The metadata as written.
    """
    path = os.fspath(path)
    if not path.endswith('.npz'):
        path += '.npz'
    centroids = np.ascontiguousarray(centroids, dtype='<f4')
    if centroids.ndim != 2 or 0 in centroids.shape:
        raise ValueError(f'centroids must be (K, D) with K, D >= 1, got '
                         f'{centroids.shape}')
    meta = dict(metadata)
    meta.update(
        format=CODEBOOK_FORMAT,
        num_centroids=int(centroids.shape[0]),
        dim=int(centroids.shape[1]),
        centroids_sha256=centroids_sha256(centroids))
    text = json.dumps(meta, sort_keys=True)
    with atomic_write(path, 'wb') as f:
        np.savez(f, **{
            _CENTROIDS_KEY: centroids,
            _METADATA_KEY: np.array(text)
        })
    write_checksum(path)
    atomic_write_text(
        osp.splitext(path)[0] + '.json',
        json.dumps(meta, indent=2, sort_keys=True) + '\n')
    return meta


def load_codebook(path: PathLike) -> Tuple[np.ndarray, Dict]:
    """Load a codebook file (ours, ``.npz``) or a plain ``.npy`` (K, D).

    Checksums are verified where the file carries them: the sidecar
    ``<file>.sha256`` when present and, for our ``.npz``, the embedded
    ``centroids_sha256``. Nothing is unpickled (``allow_pickle=False``).

    Args:
        path (str | PathLike): Codebook file.

    Returns:
        tuple[np.ndarray, dict]: float32 centroids (K, D) and metadata (for a
        plain ``.npy`` only ``num_centroids``, ``dim`` and
        ``centroids_sha256``).

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: Wrong shape, non-finite values or a checksum mismatch.
    """
    path = os.fspath(path)
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'Codebook file {path} not found: fit one with '
            'tools/tokenizers/fit_kclip_codebook.py or pass a (K, D) .npy')
    if osp.isfile(checksum_path(path)):
        verify_checksum(path)
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                if _CENTROIDS_KEY not in loaded.files:
                    raise ValueError(
                        f'{path} has no {_CENTROIDS_KEY!r} array (keys: '
                        f'{loaded.files}); it is not a k-CLIP codebook file')
                centroids = loaded[_CENTROIDS_KEY]
                meta = (
                    json.loads(str(loaded[_METADATA_KEY]))
                    if _METADATA_KEY in loaded.files else {})
        else:
            centroids, meta = loaded, {}
    except ValueError as e:
        if 'k-CLIP codebook file' in str(e):
            raise
        raise ValueError(
            f'Codebook {path} cannot be read as a .npz/.npy array file '
            f'({e}); it is empty, truncated, a text file or a pickle. Pass '
            'the .npz written by fit_kclip_codebook.py or a (K, D) float '
            '.npy.') from None
    except (OSError, EOFError) as e:
        raise ValueError(
            f'Codebook {path} is truncated or corrupt ({e}); re-fit or '
            're-copy it.') from None
    if not isinstance(meta, dict):
        raise ValueError(f'Codebook {path}: its metadata is not a JSON '
                         'object; the file was edited. Re-fit it.')
    if centroids.ndim != 2 or not np.issubdtype(centroids.dtype, np.floating):
        raise ValueError(f'Codebook {path} must be a (K, D) float array, got '
                         f'{centroids.dtype} {centroids.shape}')
    if 0 in centroids.shape:
        raise ValueError(
            f'Codebook {path} has K={centroids.shape[0]} centroids of '
            f'dimension D={centroids.shape[1]}: it is empty. Re-fit it with '
            '--num-centroids >= 1 on enough images.')
    centroids = np.ascontiguousarray(centroids, dtype=np.float32)
    if not np.isfinite(centroids).all():
        raise ValueError(f'Codebook {path} contains NaN or inf values')
    digest = centroids_sha256(centroids)
    expected = meta.get('centroids_sha256')
    if expected is not None and expected != digest:
        raise ValueError(
            f'Codebook {path} is corrupt: centroids sha256 {digest} differs '
            f'from the recorded {expected}; re-fit or re-copy it')
    meta = dict(meta)
    meta.update(
        num_centroids=int(centroids.shape[0]),
        dim=int(centroids.shape[1]),
        centroids_sha256=digest)
    return centroids, meta


def _unit_roundoff(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps / 2


@torch.no_grad()
def nearest_centroid(
        features: torch.Tensor,
        centroids: torch.Tensor,
        chunk_size: int = 4096,
        centroid_norms: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Exact nearest centroid under squared L2, ties to the lower index.

    Two stages per chunk of ``chunk_size`` rows, so memory stays bounded by
    ``chunk_size x K``:

    1. A float32 GEMM evaluates ``d_hat = |x|^2 - 2 x.c + |c|^2`` (TF32/bf16
       matmul shortcuts disabled). Its rounding error is at most
       ``E = 2 * gamma_(D+3) * (|x| + max|c|)^2`` (the classic dot-product
       bound with ``gamma_n = n u / (1 - n u)``, doubled for safety), so
       the true minimiser satisfies ``d_hat <= min(d_hat) + 2 E``: those
       are the candidates.
    2. Those candidates (usually one per row) are re-scored in float64 as
       ``((x - c) ** 2).sum()`` and the lowest index among the minima wins.

    The result therefore equals a brute-force float64 ``argmin`` of
    ``((x - c) ** 2).sum(-1)`` with ties to the lower index: the expansion
    trick alone (float32 or float64) can reorder near-ties, this cannot.

    Args:
        features (Tensor): (N, D) features (any float dtype).
        centroids (Tensor): (K, D) float32 centroids on the same device.
        chunk_size (int): Rows per chunk. Defaults to 4096.
        centroid_norms (Tensor, optional): Precomputed float64 ``|c|``.

    Returns:
        Tensor: (N,) int64 indices.

    Raises:
        ValueError: On a non-finite (NaN/inf) feature row or centroid: it
            has no nearest centroid, and the index returned would be
            garbage (or out of the vocabulary).
    """
    if features.ndim != 2 or centroids.ndim != 2:
        raise ValueError(
            'features and centroids must be 2-D, got '
            f'{tuple(features.shape)} and {tuple(centroids.shape)}')
    if features.shape[1] != centroids.shape[1]:
        raise ValueError(
            f'Feature dimension {features.shape[1]} does not match the '
            f'codebook dimension {centroids.shape[1]}')
    num, dim = features.shape
    num_centroids = centroids.shape[0]
    device = features.device
    centroids = centroids.to(device=device, dtype=torch.float32)
    if centroid_norms is None:
        centroid_norms = centroids.double().norm(dim=1)
    c_norm = centroid_norms.to(device=device, dtype=torch.float64)
    # A centroid with a NaN/inf entry has a NaN/inf norm (a float64 norm of
    # finite float32 values cannot overflow): K values to check, not K x D.
    if not bool(torch.isfinite(c_norm).all()):
        raise ValueError(
            'nearest_centroid: the codebook holds non-finite (NaN/inf) '
            'centroids; refit it, or check that the right file was loaded.')
    c_sq = (c_norm**2).float()
    c_max = c_norm.max()
    n_ops = dim + 3
    u = _unit_roundoff(torch.float32)
    gamma = 2 * n_ops * u / (1 - n_ops * u)
    out = torch.empty(num, dtype=torch.long, device=device)
    prev_precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision('highest')
    try:
        for start in range(0, num, chunk_size):
            x = features[start:start + chunk_size]
            x32 = x.float()
            finite = torch.isfinite(x32).all(dim=1)
            if not bool(finite.all()):
                bad = (~finite).nonzero()[:, 0] + start
                raise ValueError(
                    f'nearest_centroid: {bad.numel()} feature row(s) in the '
                    f'chunk of rows [{start}, {start + x.shape[0]}) are not '
                    f'finite (NaN/inf, or beyond the float32 range), first '
                    f'at row {int(bad[0])}; the nearest centroid is '
                    'undefined. Likely a diverged or corrupt feature '
                    'extractor checkpoint, an unnormalised input, or an '
                    'fp16 overflow: check the features before tokenizing.')
            x_norm = x.double().norm(dim=1)
            # d_hat = |x|^2 - 2 x.c + |c|^2, in place to bound memory.
            d_hat = torch.addmm(
                c_sq.unsqueeze(0), x32, centroids.t(), alpha=-2.0)
            d_hat += (x_norm**2).float().unsqueeze(1)
            # per-row bound with the largest centroid norm: one (rows,)
            # vector instead of a rows x K error matrix
            margin = 2 * gamma * (x_norm + c_max)**2
            thresh = d_hat.amin(dim=1).double() + margin
            candidates = d_hat <= thresh.float().unsqueeze(1)
            del d_hat
            rows, cols = candidates.nonzero(as_tuple=True)
            n_rows = x.shape[0]
            counts = torch.bincount(rows, minlength=n_rows)
            if bool(counts.eq(1).all()):
                # exactly one candidate in every row (rows come sorted):
                # it is the answer. The per-row check matters: a row
                # without candidates plus a row with two would also total
                # n_rows and shift the ids onto the wrong rows.
                out[start:start + n_rows] = cols
                continue
            empty = counts.eq(0)
            if bool(empty.any()):
                # Cannot happen for finite x unless d_hat overflows
                # float32: re-score such rows against every centroid.
                candidates[empty] = True
                rows, cols = candidates.nonzero(as_tuple=True)
            best = _refine(x, centroids, rows, cols, num_centroids, chunk_size)
            out[start:start + x.shape[0]] = best
    finally:
        torch.set_float32_matmul_precision(prev_precision)
    return out


def _refine(x: torch.Tensor, centroids: torch.Tensor, rows: torch.Tensor,
            cols: torch.Tensor, num_centroids: int,
            pair_chunk: int) -> torch.Tensor:
    """Float64 re-scoring of candidate (row, centroid) pairs."""
    n_rows = x.shape[0]
    dist = torch.empty(rows.numel(), dtype=torch.float64, device=x.device)
    for s in range(0, rows.numel(), pair_chunk):
        r, c = rows[s:s + pair_chunk], cols[s:s + pair_chunk]
        diff = x[r].double() - centroids[c].double()
        dist[s:s + pair_chunk] = (diff * diff).sum(dim=1)
    row_min = torch.full((n_rows, ),
                         float('inf'),
                         dtype=torch.float64,
                         device=x.device)
    row_min.scatter_reduce_(0, rows, dist, reduce='amin')
    masked = torch.where(dist == row_min[rows], cols,
                         torch.full_like(cols, num_centroids))
    best = torch.full((n_rows, ),
                      num_centroids,
                      dtype=torch.long,
                      device=x.device)
    best.scatter_reduce_(0, rows, masked, reduce='amin')
    return best
