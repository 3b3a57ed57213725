"""Command-line pieces shared by the tokenizer tools (``tools/tokenizers/``).

Both tools read images from an mmpretrain dataset config or a folder, can
build a CLIP ResNet trunk (``--clip-model``, ``--pretrained``,
``--normalize``) and load images with a torch ``DataLoader``.
"""
import argparse
from typing import List, Optional, Tuple

from .images import ImageRecord, list_dataset_config, list_image_folder


def positive_int(value: str) -> int:
    """argparse type: an integer >= 1 (argparse names the flag)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'{value!r} is not an integer') from None
    if number < 1:
        raise argparse.ArgumentTypeError(
            f'must be a positive integer (>= 1), got {number}')
    return number


def non_negative_int(value: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'{value!r} is not an integer') from None
    if number < 0:
        raise argparse.ArgumentTypeError(f'must be >= 0, got {number}')
    return number


def fraction(value: str) -> float:
    """argparse type: a float in (0, 1]."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{value!r} is not a number') \
            from None
    if not 0.0 < number <= 1.0:
        raise argparse.ArgumentTypeError(
            f'must be in (0, 1], got {number}')
    return number


def add_image_source_args(parser: argparse.ArgumentParser) -> None:
    """``--dataset-config`` | ``--image-folder``, ``--split``,
    ``--data-root``."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument('--dataset-config', help='mmpretrain config file')
    src.add_argument('--image-folder', help='folder of images (recursive)')
    parser.add_argument(
        '--split',
        default='train',
        help='<split>_dataloader.dataset of the config')
    parser.add_argument('--data-root', help='override the dataset data_root')


def add_clip_args(parser: argparse.ArgumentParser) -> None:
    """``--clip-model``, ``--pretrained``, ``--normalize`` (k-CLIP)."""
    parser.add_argument('--clip-model', default='RN50x64')
    parser.add_argument(
        '--pretrained',
        default='openai',
        help="open_clip tag, checkpoint file, or 'none' (random "
        'init: meaningless codebook and tokens, for tests only)')
    parser.add_argument(
        '--normalize',
        action='store_true',
        help='L2-normalise features (official code: no)')


def add_loader_args(parser: argparse.ArgumentParser) -> None:
    """``--batch-size``, ``--num-workers``."""
    parser.add_argument('--batch-size', type=positive_int, default=32)
    parser.add_argument('--num-workers', type=non_negative_int, default=4)


def pretrained_arg(value: str) -> Optional[str]:
    """The ``--pretrained`` value, ``None`` for ``'none'``."""
    return None if value.lower() == 'none' else value


def list_source_images(
        args: argparse.Namespace) -> Tuple[List[ImageRecord], dict]:
    """Images named by :func:`add_image_source_args`'s flags, and where they
    come from (``dict(source='config', split=...)`` or
    ``dict(source='folder')``)."""
    if args.dataset_config:
        records = list_dataset_config(args.dataset_config, args.split,
                                      args.data_root)
        return records, dict(source='config', split=args.split)
    return list_image_folder(args.image_folder), dict(source='folder')
