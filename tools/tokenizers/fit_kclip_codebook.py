"""Fit the k-CLIP codebook: k-means over sampled CLIP ResNet layer4 features.

Single process::

    python tools/tokenizers/fit_kclip_codebook.py \
        --dataset-config configs/_base_/datasets/<imagenet>.py --split train \
        --work-dir work_dirs/kclip/features \
        --out work_dirs/kclip/kclip_rn50x64_k8192.npz

Several GPUs (images sharded by rank, rank 0 runs k-means)::

    torchrun --nproc_per_node 8 tools/tokenizers/fit_kclip_codebook.py ...

Sampled features are cached as ``<work-dir>/features_XXXXXX.npy`` shards
(written atomically); rerunning the same command after an interruption
resumes. Output: ``<out>.npz`` (``centroids`` (K, D) float32 + JSON
``metadata``; see :mod:`mapet.models.tokenizers.codebook`), ``<out>.npz.sha256`` and
``<out>.json``. Note the cache size: ~2 % of 250 M ImageNet patch features
x 4096 x 4 bytes is ~80 GB for RN50x64.
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional

sys.path.insert(0,
                osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402

from mapet.models.tokenizers.kclip import (  # noqa: E402
    CLIP_MEAN, CLIP_STD, FEATURE_LAYER, ClipResNetTrunk)
from mapet.extraction.cli import (  # noqa: E402
    add_clip_args, add_image_source_args, add_loader_args, list_source_images,
    fraction, positive_int, pretrained_arg)
from mapet.models.tokenizers.codebook import save_codebook  # noqa: E402
from mapet.extraction.engines import (  # noqa: E402
    fit_kmeans, sample_clip_features)
from mapet.extraction.images import init_tool_dist  # noqa: E402


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_image_source_args(p)
    add_clip_args(p)
    p.add_argument('--input-size', type=positive_int, default=448)
    p.add_argument('--interpolation', default='bicubic')
    p.add_argument('--num-centroids', type=positive_int, default=8192)
    p.add_argument('--sample-fraction', type=fraction, default=0.02)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--niter', type=positive_int, default=20)
    p.add_argument('--nredo', type=positive_int, default=5)
    p.add_argument(
        '--max-points-per-centroid', type=positive_int, default=512)
    p.add_argument(
        '--faiss-device', choices=['auto', 'cpu', 'gpu'], default='auto')
    p.add_argument(
        '--shard-size',
        type=positive_int,
        default=1024,
        help='images per cached feature shard')
    add_loader_args(p)
    p.add_argument('--work-dir', required=True, help='feature cache')
    p.add_argument('--out', required=True, help='codebook file (.npz)')
    p.add_argument('--no-progress', action='store_true')
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> Optional[dict]:
    args = parse_args(argv)
    rank, world, device = init_tool_dist()
    records, source = list_source_images(args)
    pretrained = pretrained_arg(args.pretrained)
    # identical random init on every rank when pretrained is 'none'
    torch.manual_seed(args.seed)
    trunk = ClipResNetTrunk(args.clip_model, pretrained)
    job_info = dict(
        clip_model=args.clip_model,
        pretrained=trunk.pretrained_id,
        layer=FEATURE_LAYER,
        **source)
    feats = sample_clip_features(
        trunk,
        records,
        args.work_dir,
        args.input_size,
        CLIP_MEAN,
        CLIP_STD,
        interpolation=args.interpolation,
        normalize=args.normalize,
        fraction=args.sample_fraction,
        seed=args.seed,
        shard_size=args.shard_size,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=device,
        rank=rank,
        world_size=world,
        job_info=job_info,
        progress=not args.no_progress)
    if rank != 0:
        return None
    use_gpu = None if args.faiss_device == 'auto' else \
        args.faiss_device == 'gpu'
    centroids = fit_kmeans(
        feats,
        args.num_centroids,
        niter=args.niter,
        nredo=args.nredo,
        max_points_per_centroid=args.max_points_per_centroid,
        seed=args.seed,
        use_gpu=use_gpu,
        verbose=not args.no_progress)
    meta = save_codebook(
        args.out, centroids,
        dict(
            job_info,
            input_size=args.input_size,
            interpolation=args.interpolation,
            normalize=args.normalize,
            sample_fraction=args.sample_fraction,
            sample_count=int(feats.shape[0]),
            num_images=len(records),
            seed=args.seed,
            kmeans=dict(
                library='faiss',
                metric='L2',
                niter=args.niter,
                nredo=args.nredo,
                max_points_per_centroid=args.max_points_per_centroid)))
    print(f'codebook: K={meta["num_centroids"]} D={meta["dim"]} from '
          f'{meta["sample_count"]} features, sha256 '
          f'{meta["centroids_sha256"]}')
    return meta


if __name__ == '__main__':
    main()
