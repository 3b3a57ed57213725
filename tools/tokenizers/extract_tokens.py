"""Pre-extract visual tokens of every image of a split into a token store.

k-CLIP::

    python tools/tokenizers/extract_tokens.py \
        --dataset-config <config> --split train \
        --codebook work_dirs/kclip/kclip_rn50x64_k8192.npz \
        --out data/imagenet/visual_tokens/kclip_rn50x64_k8192

Any tokenizer, from a config file holding ``tokenizer = dict(type=...)``
(e.g. ``configs/_base_/tokenizers/vqkd_beitv2.py``)::

    python tools/tokenizers/extract_tokens.py --image-folder data/demo \
        --tokenizer-config configs/_base_/tokenizers/dalle.py --out ...

Several GPUs: ``torchrun --nproc_per_node 8 tools/tokenizers/extract_tokens.py
...`` (chunks shared round-robin by rank; rank 0 merges and verifies).
Rerunning the same command after an interruption resumes and produces the
same bytes. See :mod:`mapet.datasets.token_store` for the format.
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional

sys.path.insert(0,
                osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402

import mapet  # noqa: E402,F401  (registers the tokenizers)
from mapet.extraction.cli import (  # noqa: E402
    add_clip_args, add_image_source_args, add_loader_args, list_source_images,
    non_negative_int, positive_int, pretrained_arg)
from mapet.extraction.engines import extract_tokens  # noqa: E402
from mapet.extraction.images import init_tool_dist  # noqa: E402


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_image_source_args(p)
    tok = p.add_mutually_exclusive_group(required=True)
    tok.add_argument(
        '--tokenizer-config',
        help='python config file with `tokenizer = dict(...)`')
    tok.add_argument('--codebook', help='k-CLIP codebook (KClipTokenizer)')
    add_clip_args(p)
    p.add_argument(
        '--input-size', type=positive_int,
        help="crop side; default: the tokenizer's")
    p.add_argument('--chunk-size', type=positive_int, default=1024)
    add_loader_args(p)
    p.add_argument(
        '--seed',
        type=int,
        default=0,
        help='seeds randomly initialised weights, so every rank '
        'and rerun builds the same tokenizer (tests only)')
    p.add_argument(
        '--views',
        type=non_negative_int,
        default=None,
        metavar='NUM_CROPS',
        help='write a view store (augmentation-aware): per image the centre '
        'crop, its horizontal flip (unless --no-flip) and NUM_CROPS '
        'random-resized-crop boxes, tokens and boxes both stored '
        '(mapet/datasets/token_views.py); train with LoadVisualTokenView')
    p.add_argument('--no-flip', action='store_true',
                   help='with --views: no flipped views')
    p.add_argument('--crop-scale', type=float, nargs=2, default=(0.35, 1.0),
                   help='with --views: area fraction range of the crops')
    p.add_argument('--out', required=True, help='token store directory')
    p.add_argument('--no-progress', action='store_true')
    return p.parse_args(argv)


def build_tokenizer_from_args(args: argparse.Namespace):
    """Tokenizer from ``--tokenizer-config`` or the k-CLIP flags."""
    from mmengine.config import Config
    from mmpretrain.registry import MODELS
    if args.tokenizer_config:
        cfg = Config.fromfile(args.tokenizer_config)
        if 'tokenizer' not in cfg:
            raise KeyError(f'{args.tokenizer_config} defines no `tokenizer`')
        cfg = cfg['tokenizer']
    else:
        cfg = dict(
            type='KClipTokenizer',
            clip_model=args.clip_model,
            pretrained=pretrained_arg(args.pretrained),
            codebook=args.codebook,
            normalize=args.normalize)
        if args.input_size:
            cfg['input_size'] = args.input_size
    return MODELS.build(cfg)


def main(argv: Optional[List[str]] = None) -> Optional[dict]:
    args = parse_args(argv)
    rank, world, device = init_tool_dist()
    records, info = list_source_images(args)
    torch.manual_seed(args.seed)
    tokenizer = build_tokenizer_from_args(args)
    kwargs = dict(input_size=args.input_size)
    if args.views is not None:
        from mapet.extraction.views import extract_view_tokens
        engine = extract_view_tokens
        kwargs.update(
            num_crops=args.views,
            flip=not args.no_flip,
            scale=args.crop_scale,
            seed=args.seed)
    else:
        engine = extract_tokens
    manifest = engine(
        tokenizer,
        records,
        args.out,
        **kwargs,
        chunk_size=args.chunk_size,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=device,
        rank=rank,
        world_size=world,
        dataset_info=info,
        progress=not args.no_progress)
    if manifest is not None:
        print(f'token store: {manifest["num_images"]} images x '
              f'{manifest["num_tokens"]} tokens (grid {manifest["grid"]}, '
              f'vocab {manifest["vocab_size"]})')
    return manifest


if __name__ == '__main__':
    main()
