"""Engines behind ``tools/tokenizers/{extract_tokens,fit_kclip_codebook}.py``.

Both split the sorted image list into fixed-size chunks/shards, give chunk
``c`` to rank ``c % world_size`` and write each finished chunk atomically, so
a rerun after an interruption skips what is done and produces the same bytes
whatever the number of processes. Rank 0 merges/fits after a barrier.
"""
import os
import os.path as osp
from collections import deque
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from mapet.utils.atomic import atomic_write
from mapet.datasets import token_store as ts
from mapet.datasets.image_decode import DECODER_ID

from .images import CenterCropImages, ImageRecord, dist_barrier, sorted_unique

FAISS_MISSING = (
    'faiss is not installed: install the `cpu` extra (pip install '
    '"mapet[cpu]", faiss-cpu) or, on CUDA hosts, the `gpu` extra '
    '(pip install "mapet[gpu]", faiss-gpu); never both')


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm
    return tqdm(
        total=total,
        desc=desc,
        unit='img',
        disable=not enabled,
        dynamic_ncols=True)


def _loader(dataset, batch_size: int, num_workers: int,
            pin: bool) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=pin)


def extract_tokens(tokenizer: nn.Module,
                   records: Sequence[ImageRecord],
                   out_dir: str,
                   input_size: Optional[int] = None,
                   crop: str = 'center',
                   chunk_size: int = 1024,
                   batch_size: int = 32,
                   num_workers: int = 2,
                   device: Optional[torch.device] = None,
                   rank: int = 0,
                   world_size: int = 1,
                   dataset_info: Optional[Dict[str, Any]] = None,
                   progress: bool = True) -> Optional[Dict[str, Any]]:
    """Tokenize every image into a token store (resumable, distributed).

    Args:
        tokenizer (nn.Module): A frozen tokenizer (``KClipTokenizer``,
            ``FrozenVQKD``, ``FrozenDALLE``).
        records (Sequence[ImageRecord]): Images (sorted here).
        out_dir (str): Store directory.
        input_size (int, optional): Crop side; defaults to the tokenizer's
            ``default_input_size``.
        crop (str): Only ``'center'`` (resize short side + centre crop).
        chunk_size (int): Images per resumable chunk. Defaults to 1024.
        batch_size (int): Images per forward. Defaults to 32.
        num_workers (int): Dataloader workers. Defaults to 2.
        device (torch.device, optional): Where to run; defaults to the
            tokenizer's device.
        rank (int): This process' rank. Defaults to 0.
        world_size (int): Number of processes. Defaults to 1.
        dataset_info (dict, optional): Extra manifest fields (source, split).
        progress (bool): Show a progress bar on rank 0. Defaults to True.

    Returns:
        dict | None: The manifest on rank 0, None on other ranks.
    """
    if crop != 'center':
        raise ValueError(f"Only crop='center' is supported, got {crop!r}")
    records = sorted_unique(records)
    relpaths = [r.relpath for r in records]
    size, num_tokens, vocab, job = tokenizer_job(
        tokenizer, input_size, crop, relpaths, dataset_info)
    done, rows, todo = plan_chunks(out_dir, job, len(records), chunk_size,
                                   num_tokens, rank, world_size)
    if done is not None:
        return done if rank == 0 else None
    indices = [
        i for c in todo
        for i in range(c * chunk_size, c * chunk_size + rows[c])
    ]
    if device is None:
        device = next(iter(tokenizer.parameters())).device
    tokenizer.to(device)
    dataset = CenterCropImages(records, size, tokenizer.mean, tokenizer.std,
                               tokenizer.interpolation, indices)
    tokenize_chunks(tokenizer, dataset, todo, rows, out_dir, vocab,
                    batch_size, num_workers, device,
                    _progress(len(indices), 'tokens', progress and rank == 0))
    dist_barrier()
    if rank != 0:
        return None
    return ts.merge_store(out_dir, relpaths, chunk_size, num_tokens, job)


def tokenizer_job(tokenizer: nn.Module, input_size: Optional[int],
                  crop: str, relpaths: Sequence[str],
                  dataset_info: Optional[Dict[str, Any]] = None,
                  **extra: Any) -> Tuple[int, int, int, Dict[str, Any]]:
    """Everything that determines the tokens of an extraction.

    Returns:
        tuple: ``(input size, tokens per image, vocabulary, job)``; the job
        is what the store's manifest records and a rerun is compared with.
    """
    size = int(input_size or tokenizer.default_input_size)
    grid = tokenizer.grid_size((size, size))
    vocab = int(tokenizer.vocab_size)
    if vocab > ts.MAX_VOCAB:
        raise ValueError(f'vocab_size {vocab} does not fit the uint16 store '
                         f'(max {ts.MAX_VOCAB})')
    job = dict(
        tokenizer=tokenizer.metadata(),
        grid=list(grid),
        vocab_size=vocab,
        crop=crop,
        # The pixels the tokens were computed from (LoadVisualTokens
        # refuses a store decoded otherwise).
        decoder=DECODER_ID,
        input_size=[size, size],
        interpolation=tokenizer.interpolation,
        mean=list(tokenizer.mean),
        std=list(tokenizer.std),
        dataset=dict(
            fingerprint=ts.dataset_fingerprint(relpaths),
            num_images=len(relpaths),
            **(dataset_info or {})),
        **extra)
    return size, grid[0] * grid[1], vocab, job


def plan_chunks(out_dir: str, job: Dict[str, Any], num_rows: int,
                chunk_size: int, num_tokens: int, rank: int,
                world_size: int
                ) -> Tuple[Optional[Dict[str, Any]], List[int], List[int]]:
    """Resume planning shared by token and view extraction.

    Returns:
        tuple: ``(manifest, rows, todo)``. ``manifest`` is not None when
        ``out_dir`` already holds the finished store of this job (a rerun:
        nothing to do); ``rows[c]`` is the number of rows of chunk ``c``;
        ``todo`` the chunks this rank still has to write.
    """
    done = ts.finished_manifest(out_dir, job)
    if done is not None:
        if rank == 0:
            print(f'{out_dir}: already complete for this extraction; '
                  'nothing to do.', flush=True)
        return done, [], []
    if rank == 0:
        ts.prepare_parts(out_dir, dict(job, chunk_size=chunk_size))
    dist_barrier()
    if rank != 0:
        ts.prepare_parts(out_dir, dict(job, chunk_size=chunk_size))
    rows = [
        min(chunk_size, num_rows - c * chunk_size)
        for c in range(ts.num_chunks(num_rows, chunk_size))
    ]
    todo = [
        c for c in range(len(rows)) if c % world_size == rank
        and not ts.chunk_done(out_dir, c, rows[c], num_tokens)
    ]
    return None, rows, todo


def tokenize_chunks(tokenizer: nn.Module, dataset, todo: Sequence[int],
                    rows: Sequence[int], out_dir: str, vocab: int,
                    batch_size: int, num_workers: int, device: torch.device,
                    bar) -> None:
    """Tokenize ``dataset`` in order and write chunk by chunk.

    ``dataset`` serves the rows of the chunks ``todo`` in that order;
    chunk ``c`` has ``rows[c]`` rows. A chunk is written (atomically) as
    soon as its rows are tokenized, so a kill loses at most the chunk in
    progress. Shared by token and view extraction.
    """
    pending = deque(todo)
    buf: List[np.ndarray] = []
    buffered = 0
    with torch.no_grad():
        for images, _ in _loader(dataset, batch_size, num_workers,
                                 device.type == 'cuda'):
            ids = tokenizer(images.to(device, non_blocking=True))
            buf.append(ids.cpu().numpy())
            buffered += ids.shape[0]
            bar.update(ids.shape[0])
            while pending and buffered >= rows[pending[0]]:
                c = pending.popleft()
                block = np.concatenate(buf)
                ts.write_chunk(out_dir, c, block[:rows[c]], vocab)
                rest = block[rows[c]:]
                buf, buffered = ([rest] if len(rest) else []), len(rest)
    bar.close()


def _check_or_write_job(path: str, job: Dict[str, Any]) -> None:
    diff = ts.record_job(path, job)
    if diff:
        raise ValueError(
            f'{osp.dirname(path)} caches features of another run '
            f'(differs in: {", ".join(diff)}); use another --work-dir')


def _shard_path(work_dir: str, shard: int) -> str:
    return osp.join(work_dir, f'features_{shard:06d}.npy')


def _keep_mask(seed: int, image_index: int, num_tokens: int,
               fraction: float) -> np.ndarray:
    # One generator per image: the sample does not depend on batching,
    # world size or resumption.
    rng = np.random.default_rng([seed, image_index])
    return rng.random(num_tokens) < fraction


def sample_clip_features(trunk: nn.Module,
                         records: Sequence[ImageRecord],
                         work_dir: str,
                         input_size: int,
                         mean: Sequence[float],
                         std: Sequence[float],
                         interpolation: str = 'bicubic',
                         normalize: bool = False,
                         fraction: float = 0.02,
                         seed: int = 0,
                         shard_size: int = 1024,
                         batch_size: int = 32,
                         num_workers: int = 2,
                         device: Optional[torch.device] = None,
                         rank: int = 0,
                         world_size: int = 1,
                         job_info: Optional[Dict[str, Any]] = None,
                         progress: bool = True) -> Optional[np.ndarray]:
    """Stream images through the CLIP trunk and cache a random sample of
    patch features in shards (``work_dir/features_XXXXXX.npy``).

    ``trunk`` is a :class:`~mapet.models.tokenizers.kclip.ClipResNetTrunk`;
    its ``patch_features`` is the same code the tokenizer runs, so the
    codebook is fitted on exactly the features it will assign.

    Each patch feature is kept with probability ``fraction``, drawn from a
    generator seeded by ``(seed, image index)``.

    Returns:
        np.ndarray | None: All sampled features (float32, (S, D)) on rank 0,
        None elsewhere.
    """
    records = sorted_unique(records)
    n = len(records)
    relpaths = [r.relpath for r in records]
    job = dict(
        job_info or {},
        input_size=input_size,
        normalize=normalize,
        fraction=fraction,
        seed=seed,
        shard_size=shard_size,
        interpolation=interpolation,
        dataset_fingerprint=ts.dataset_fingerprint(relpaths),
        num_images=n)
    os.makedirs(work_dir, exist_ok=True)
    if rank == 0:
        _check_or_write_job(osp.join(work_dir, 'job.json'), job)
    dist_barrier()
    if rank != 0:
        _check_or_write_job(osp.join(work_dir, 'job.json'), job)
    num_shards = ts.num_chunks(n, shard_size)
    todo = [
        s for s in range(num_shards)
        if s % world_size == rank and not osp.isfile(_shard_path(work_dir, s))
    ]
    indices = [
        i for s in todo
        for i in range(s * shard_size, min(n, (s + 1) * shard_size))
    ]
    if device is None:
        device = next(trunk.parameters()).device
    trunk.to(device).eval()
    dataset = CenterCropImages(records, input_size, mean, std, interpolation,
                               indices)
    pending = deque(todo)
    kept: List[np.ndarray] = []
    bar = _progress(len(indices), 'features', progress and rank == 0)
    with torch.no_grad():
        for images, idx in _loader(dataset, batch_size, num_workers,
                                   device.type == 'cuda'):
            feats = trunk.patch_features(
                images.to(device, non_blocking=True), normalize)
            feats = feats.cpu().numpy()
            for f, i in zip(feats, idx.tolist()):
                s = pending[0]
                kept.append(f[_keep_mask(seed, i, f.shape[0], fraction)])
                last = min(n, (s + 1) * shard_size) - 1
                if i == last:
                    with atomic_write(_shard_path(work_dir, s), 'wb') as fh:
                        np.save(fh, np.concatenate(kept).astype(np.float32))
                    kept = []
                    pending.popleft()
            bar.update(len(idx))
    bar.close()
    dist_barrier()
    if rank != 0:
        return None
    missing = [
        s for s in range(num_shards)
        if not osp.isfile(_shard_path(work_dir, s))
    ]
    if missing:
        raise RuntimeError(f'feature shards missing: {missing[:5]}; rerun to '
                           'resume')
    # fill one preallocated array from memory-mapped shards: at ImageNet
    # scale the sample is ~80 GB and must not be held twice
    shards = [
        np.load(_shard_path(work_dir, s), mmap_mode='r', allow_pickle=False)
        for s in range(num_shards)
    ]
    dim = max(sh.shape[1] for sh in shards)
    out = np.empty((sum(len(sh) for sh in shards), dim), dtype=np.float32)
    pos = 0
    for sh in shards:
        out[pos:pos + len(sh)] = sh
        pos += len(sh)
    return out


def fit_kmeans(features: np.ndarray,
               num_centroids: int,
               niter: int = 20,
               nredo: int = 5,
               max_points_per_centroid: int = 512,
               seed: int = 0,
               use_gpu: Optional[bool] = None,
               verbose: bool = True) -> np.ndarray:
    """faiss k-means (L2); GPU when available unless ``use_gpu=False``.

    Returns:
        np.ndarray: (K, D) float32 centroids.
    """
    try:
        import faiss
    except ImportError as e:
        raise ImportError(FAISS_MISSING) from e
    x = np.ascontiguousarray(features, dtype=np.float32)
    if x.shape[0] < num_centroids:
        raise ValueError(
            f'{x.shape[0]} sampled features cannot make {num_centroids} '
            'centroids: raise --sample-fraction, use more images or lower '
            '--num-centroids')
    gpus = faiss.get_num_gpus() if hasattr(faiss, 'get_num_gpus') else 0
    if use_gpu is None:
        use_gpu = gpus > 0
    kmeans = faiss.Kmeans(
        x.shape[1],
        num_centroids,
        niter=niter,
        nredo=nredo,
        seed=seed,
        max_points_per_centroid=max_points_per_centroid,
        gpu=bool(use_gpu),
        verbose=verbose,
        spherical=False)
    kmeans.train(x)
    return np.ascontiguousarray(kmeans.centroids, dtype=np.float32)
