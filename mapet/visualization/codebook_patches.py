"""PNG grid of the image patches assigned to chosen visual tokens.

One row per token (the ``--tokens`` given, or the ``--top`` most frequent),
``--per-token`` patches per row, cut from the same centre crop the tokens
were extracted on (paper Figs. 3-5)::

    python tools/visualization/codebook_patches.py \
        --store data/tokens/in1k_kclip/val --image-root data/imagenet \
        --top 8 --out work_dirs/codebook_patches.png

``--title`` writes a caption above the grid (one line per ``\\n``), e.g.
what the tokenizer is: ``tools/demo.py`` states that its CLIP tower is
randomly initialised.
"""
import argparse
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from mapet.datasets.token_store import TokenStore

SCAN_ROWS = 65536  # store rows scanned at a time (bounded memory)
LABEL_WIDTH = 72
PAD = 2
BACKGROUND = (255, 255, 255)
TEXT_COLOUR = (0, 0, 0)
TITLE_LINE = 14  # px per caption line (PIL's default font)


def token_counts(store: TokenStore) -> np.ndarray:
    """Occurrences of every token id over the whole store."""
    counts = np.zeros(store.vocab_size, dtype=np.int64)
    for s in range(0, store.num_images, SCAN_ROWS):
        block = np.asarray(store.tokens[s:s + SCAN_ROWS]).ravel()
        counts += np.bincount(block, minlength=store.vocab_size)
    return counts


def find_occurrences(store: TokenStore, tokens: Sequence[int], per_token: int,
                     seed: int) -> Dict[int, List[Tuple[int, int]]]:
    """Up to ``per_token`` random (row, position) pairs for each token."""
    found: Dict[int, List[Tuple[int, int]]] = {t: [] for t in tokens}
    for s in range(0, store.num_images, SCAN_ROWS):
        block = np.asarray(store.tokens[s:s + SCAN_ROWS])
        for t in tokens:
            rows, pos = np.nonzero(block == t)
            found[t].extend(zip((rows + s).tolist(), pos.tolist()))
    rng = np.random.default_rng(seed)
    out = {}
    for t, occ in found.items():
        pick = rng.permutation(len(occ))[:per_token] if occ else []
        out[t] = [occ[i] for i in sorted(pick)]
    return out


def crop_patch(path: str, size: int, grid: Tuple[int, int], position: int,
               cell_px: int) -> Image.Image:
    """The patch of token ``position`` on the store's centre crop."""
    with Image.open(path) as img:
        img = img.convert('RGB')
        w, h = img.size
        scale = size / min(w, h)
        img = img.resize(
            (max(size, round(w * scale)), max(size, round(h * scale))),
            Image.BICUBIC)
        left = (img.width - size) // 2
        top = (img.height - size) // 2
        gh, gw = grid
        r, c = divmod(position, gw)
        ph, pw = size / gh, size / gw
        box = (round(left + c * pw), round(top + r * ph),
               round(left + (c + 1) * pw), round(top + (r + 1) * ph))
        return img.crop(box).resize((cell_px, cell_px), Image.BICUBIC)


def render(store: TokenStore,
           image_root: str,
           tokens: Sequence[int],
           per_token: int,
           cell_px: int,
           seed: int,
           title: Optional[str] = None) -> Image.Image:
    """The grid image (one row per token), under ``title`` if given."""
    occ = find_occurrences(store, tokens, per_token, seed)
    size = int(store.manifest['input_size'][0])
    relpaths = store.index
    width = LABEL_WIDTH + per_token * (cell_px + PAD)
    title_lines = title.split('\n') if title else []
    top = len(title_lines) * TITLE_LINE + (2 * PAD if title_lines else 0)
    canvas = Image.new('RGB', (width, top + len(tokens) * (cell_px + PAD)),
                       BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(title_lines):
        draw.text((PAD, PAD + i * TITLE_LINE), line, fill=TEXT_COLOUR)
    for i, t in enumerate(tokens):
        y = top + i * (cell_px + PAD)
        draw.text((PAD, y + cell_px // 2), f'#{t}', fill=TEXT_COLOUR)
        for j, (row, pos) in enumerate(occ[t]):
            rel = relpaths[row].decode('utf-8')
            patch = crop_patch(
                osp.join(image_root, rel), size, store.grid, pos, cell_px)
            canvas.paste(patch, (LABEL_WIDTH + j * (cell_px + PAD), y))
    return canvas


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--store', required=True, help='token store directory')
    p.add_argument(
        '--image-root',
        required=True,
        help='data root the store keys are relative to')
    sel = p.add_mutually_exclusive_group()
    sel.add_argument('--tokens', type=int, nargs='+', help='token ids')
    sel.add_argument(
        '--top', type=int, default=8, help='most frequent tokens (default 8)')
    p.add_argument('--per-token', type=int, default=12)
    p.add_argument('--cell', type=int, default=64, help='patch size in px')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument(
        '--title',
        help='caption above the grid (e.g. which tokenizer made the '
        'tokens); a literal \\n starts a new line')
    p.add_argument('--out', required=True, help='PNG file')
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> List[int]:
    args = parse_args(argv)
    store = TokenStore(args.store)
    if args.tokens:
        bad = [t for t in args.tokens if not 0 <= t < store.vocab_size]
        if bad:
            raise ValueError(f'token ids {bad} outside [0, '
                             f'{store.vocab_size})')
        tokens = list(args.tokens)
    else:
        counts = token_counts(store)
        # stable sort: equal counts keep the lower id first
        tokens = np.argsort(-counts, kind='stable')[:args.top].tolist()
    title = args.title.replace('\\n', '\n') if args.title else None
    image = render(store, args.image_root, tokens, args.per_token, args.cell,
                   args.seed, title)
    from mapet.utils.atomic import atomic_write
    with atomic_write(args.out, 'wb') as f:
        image.save(f, format='PNG')
    print(f'wrote {args.out}: tokens {tokens}')
    return tokens

