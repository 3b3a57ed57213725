"""Write pre-cropped image shards beside a token store.

The images and their order come from the token store's ``index.npy``, so
row i of the shards is row i of the tokens::

    python tools/tokenizers/write_crop_shards.py \
        --store data/imagenet/visual_tokens/kclip_rn50x64_k8192 \
        --data-root data/imagenet \
        --out data/imagenet/crops/center224 --workers 8

Each chunk is flushed and marked atomically; rerunning the same command
after an interruption resumes. The arrays are published by atomic renames
and ``manifest.json`` last (format: :mod:`mapet.datasets.crop_shards`).
Use them with ``configs/_base_/datasets/imagenet_mapet_pretrain_precropped.py``
(``LoadPrecroppedImage``). ``--verify DIR`` re-hashes finished shards.

About 150 KB per image at 224 px (193 GB for ImageNet-1k train).
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional

sys.path.insert(0,
                osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mapet.datasets.crop_shards import (  # noqa: E402
    DEFAULT_CHUNK_SIZE, CropShardError, CropShards, write_crop_shards)
from mapet.datasets.token_store import TokenStore  # noqa: E402


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--store', help='finished token store (gives the images '
                   'and their order)')
    p.add_argument('--data-root', help='root the store keys are relative to')
    p.add_argument('--out', help='shard directory to write')
    p.add_argument('--crop-size', type=int, default=224)
    p.add_argument('--chunk-size', type=int, default=DEFAULT_CHUNK_SIZE,
                   help='images per resumable chunk')
    p.add_argument('--workers', type=int, default=0,
                   help='decoding processes (0: this process)')
    p.add_argument('--verify', metavar='DIR',
                   help='only re-hash finished shards DIR (all bytes); with '
                   '--store also check they match that store')
    args = p.parse_args(argv)
    if args.verify is None and not (args.store and args.data_root
                                    and args.out):
        p.error('--store, --data-root and --out are required (or --verify)')
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        if args.verify is not None:
            shards = CropShards(args.verify, verify='full')
            if args.store:
                shards.check_store(TokenStore(args.store))
            print(f'OK: {shards.num_images} crops of {shards.crop_size} px '
                  f'in {args.verify}')
            return 0

        def progress(done: int, total: int) -> None:
            print(f'chunk {done}/{total}', flush=True)

        manifest = write_crop_shards(
            args.store,
            args.data_root,
            args.out,
            crop_size=args.crop_size,
            chunk_size=args.chunk_size,
            workers=args.workers,
            progress=progress)
    except CropShardError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(f'wrote {manifest["num_images"]} crops of '
          f'{manifest["crop_size"]} px to {args.out} (crops sha256 '
          f'{manifest["crops_sha256"]})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
