"""Tokenizer speed: nearest-centroid assignment, k-means fitting, extraction.

1. assignment throughput (features/s) for K x D centroids: our exact
   :func:`nearest_centroid` vs ``torch.cdist`` + ``argmin`` on the same data
   (CPU, and CUDA when present), and how often ``cdist`` disagrees with the
   exact float64 answer;
2. k-means fitting time: faiss vs scikit-learn ``MiniBatchKMeans`` on the
   same random sample (same K, iterations, one restart);
3. tokens/s of the token extraction (``extract_tokens``) on the demo data
   with a randomly initialised CLIP ResNet and a random codebook.

    python tools/analysis_tools/tokenizer.py [--data-root data/demo]
"""
import argparse
import os.path as osp
import sys
import tempfile
import time
from typing import Callable, List, Optional, Tuple

import numpy as np
import torch

sys.path.insert(0,
                osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mapet.models.tokenizers.codebook import nearest_centroid  # noqa: E402


def timed(fn: Callable, device: torch.device) -> Tuple[float, object]:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, out


def bench_assignment(num: int, k: int, dim: int, chunk: int,
                     device: torch.device) -> None:
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(num, dim, generator=g).to(device)
    cents = torch.randn(k, dim, generator=g).to(device)

    def cdist_argmin() -> torch.Tensor:
        return torch.cat([
            torch.cdist(feats[s:s + chunk], cents).argmin(dim=1)
            for s in range(0, num, chunk)
        ])

    # warm-up (allocator, kernels) on a small slice
    nearest_centroid(feats[:chunk], cents, chunk)
    torch.cdist(feats[:chunk], cents).argmin(dim=1)
    t_ours, ours = timed(lambda: nearest_centroid(feats, cents, chunk), device)
    t_cdist, ref = timed(cdist_argmin, device)
    disagree = int((ours != ref).sum())
    print(f'[assign/{device.type}] N={num} K={k} D={dim} chunk={chunk}')
    print(f'  exact nearest_centroid : {num / t_ours:12.0f} features/s '
          f'({t_ours:.2f} s)')
    print(f'  torch.cdist + argmin   : {num / t_cdist:12.0f} features/s '
          f'({t_cdist:.2f} s)')
    print(f'  speed ratio ours/cdist : {t_cdist / t_ours:.2f}x; cdist '
          f'disagrees with the exact answer on {disagree}/{num}')


def bench_kmeans(num: int, dim: int, k: int, niter: int) -> None:
    import faiss
    from sklearn.cluster import MiniBatchKMeans
    rng = np.random.default_rng(0)
    # a clustered sample (random blobs) so both have structure to find
    centers = rng.standard_normal((k, dim)).astype(np.float32) * 4
    x = centers[rng.integers(0, k, num)] + rng.standard_normal(
        (num, dim)).astype(np.float32)

    def inertia(c: np.ndarray) -> float:
        index = faiss.IndexFlatL2(dim)
        index.add(np.ascontiguousarray(c, dtype=np.float32))
        d, _ = index.search(x, 1)
        return float(d.mean())

    start = time.perf_counter()
    km = faiss.Kmeans(
        dim,
        k,
        niter=niter,
        nredo=1,
        seed=0,
        max_points_per_centroid=512,
        verbose=False)
    km.train(x)
    t_faiss = time.perf_counter() - start
    start = time.perf_counter()
    mbk = MiniBatchKMeans(
        n_clusters=k,
        max_iter=niter,
        n_init=1,
        batch_size=4096,
        random_state=0).fit(x)
    t_skl = time.perf_counter() - start
    print(f'[kmeans] {num} x {dim} -> {k} centroids, {niter} iterations, '
          f'1 restart')
    print(f'  faiss Kmeans           : {t_faiss:8.2f} s  mean sq. dist '
          f'{inertia(km.centroids):.3f}')
    print(f'  sklearn MiniBatchKMeans: {t_skl:8.2f} s  mean sq. dist '
          f'{inertia(mbk.cluster_centers_):.3f}')
    print(f'  speed ratio faiss/sklearn: {t_skl / t_faiss:.2f}x')


def bench_extract(data_root: str, split: str, clip_model: str, size: int,
                  k: int, batch: int, device: torch.device) -> None:
    import open_clip

    import mapet  # noqa: F401
    from mapet.models.tokenizers import KClipTokenizer
    from mapet.extraction.engines import extract_tokens
    from mapet.extraction.images import list_image_folder
    records = list_image_folder(osp.join(data_root, split))
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        ckpt = osp.join(tmp, 'clip.pt')
        torch.save(open_clip.create_model(clip_model).state_dict(), ckpt)
        codebook = _random_cb(tmp, k, clip_model, ckpt)
        tok = KClipTokenizer(clip_model, ckpt, codebook, input_size=size)
        tok.to(device)
        start = time.perf_counter()
        manifest = extract_tokens(
            tok,
            records,
            osp.join(tmp, 'store'),
            batch_size=batch,
            num_workers=2,
            device=device,
            progress=False)
        elapsed = time.perf_counter() - start
    n_tok = manifest['num_images'] * manifest['num_tokens']
    print(f'[extract/{device.type}] {clip_model} (random init) {size} px, '
          f'K={k}: {manifest["num_images"]} images x '
          f'{manifest["num_tokens"]} tokens in {elapsed:.1f} s')
    print(f'  {n_tok / elapsed:.0f} tokens/s, '
          f'{manifest["num_images"] / elapsed:.2f} images/s')


def _random_cb(tmp: str, k: int, clip_model: str, ckpt: str) -> str:
    from mapet.models.tokenizers.kclip import ClipResNetTrunk
    dim = ClipResNetTrunk(clip_model, ckpt).dim
    path = osp.join(tmp, 'cb.npy')
    np.save(
        path,
        np.random.default_rng(0).standard_normal((k, dim)).astype(np.float32))
    return path


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument(
        '--assign-num',
        type=int,
        default=8192,
        help='features to assign (CPU)')
    p.add_argument('--assign-num-cuda', type=int, default=262144)
    p.add_argument('--k', type=int, default=8192)
    p.add_argument('--dim', type=int, default=4096)
    p.add_argument('--chunk', type=int, default=4096)
    # 200k (the example) takes ~4 min on 2 shared cores; 100k ~2 min
    p.add_argument('--kmeans-num', type=int, default=100000)
    p.add_argument('--kmeans-dim', type=int, default=512)
    p.add_argument('--kmeans-k', type=int, default=1024)
    p.add_argument('--kmeans-niter', type=int, default=20)
    p.add_argument('--data-root', default='data/demo')
    p.add_argument('--split', default='val')
    p.add_argument('--extract-model', default='RN50')
    p.add_argument('--extract-size', type=int, default=448)
    p.add_argument('--extract-k', type=int, default=8192)
    p.add_argument('--batch-size', type=int, default=16)
    p.add_argument(
        '--skip',
        nargs='*',
        default=[],
        choices=['assign', 'kmeans', 'extract'])
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} CPU '
          f'threads, CUDA: {torch.cuda.is_available()}')
    devices = [torch.device('cpu')]
    if torch.cuda.is_available():
        devices.append(torch.device('cuda'))
    if 'assign' not in args.skip:
        for dev in devices:
            num = args.assign_num if dev.type == 'cpu' else \
                args.assign_num_cuda
            bench_assignment(num, args.k, args.dim, args.chunk, dev)
    if 'kmeans' not in args.skip:
        bench_kmeans(args.kmeans_num, args.kmeans_dim, args.kmeans_k,
                     args.kmeans_niter)
    if 'extract' not in args.skip:
        bench_extract(args.data_root, args.split, args.extract_model,
                      args.extract_size, args.extract_k, args.batch_size,
                      devices[-1])


if __name__ == '__main__':
    main()
