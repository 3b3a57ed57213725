"""Benchmark one pre-training step of MaPeT against its references.

In one process, interleaved, median of ``--repeats`` runs, for each ViT:

(a) MaPeT: ``MaPeT`` + ``MaPeTViT`` (gathered tokens, one cached boolean
    mask, one attention call per block) + ``VisualTokenHead``;
(b) BEiT: mmpretrain's ``BEiTPretrainViT`` (the same ViT: absolute
    position embeddings, layer scale) + ``BEiTV1Head``, 75 of 196 patches
    masked block-wise (scaled to the patch grid);
(c) naive two-stream, built the way the official code does it: original
    patch order, per-sample dense additive float masks, two attention calls
    per block (same weights as (a));
(d) plain ``VisionTransformer`` with a linear token head on every patch, no
    masks (the machine's dense-ViT throughput);
(e) with ``--with-cp``: (a) with activation checkpointing
    (``MaPeTViT(with_cp=True)``, same weights), reported as its memory
    saving and time cost against (a).

A step is forward, backward and an AdamW update. FLOPs are measured with
``torch.utils.flop_counter.FlopCounterMode``; MaPeT's forward FLOPs are also
compared with the analytic count of the design (content stream
1 + N + (N - c) tokens, query stream N - c tokens). Memory: CUDA peak
allocation on CUDA; on CPU (no allocator statistics) the bytes saved for
backward (activations) are reported for every device.

Example::

    python tools/analysis_tools/pretrain_step.py --archs t s --batch-size 8
"""
import argparse
import copy
import statistics
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmpretrain.datasets.transforms import BEiTMaskGenerator
from mmpretrain.models import BEiTPretrainViT, VisionTransformer
from mmpretrain.models.heads import BEiTV1Head
from mmpretrain.models.utils import resize_pos_embed
from mmpretrain.structures import DataSample
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula

import mapet  # noqa: F401  (registers the components)
from mapet.models.selfsup import MaPeT
from mapet.models.backbones import MaPeTViT

# The paper's T / S / B (Table 8) and cutting points (section 5.1).
ARCHS = {
    't': dict(embed_dims=192, num_layers=12, num_heads=3,
              feedforward_channels=768),
    's': dict(embed_dims=384, num_layers=12, num_heads=6,
              feedforward_channels=1536),
    'b': dict(embed_dims=768, num_layers=12, num_heads=12,
              feedforward_channels=3072),
}
CUTTING_POINTS = {'t': 50, 's': 50, 'b': 60}
LAYER_SCALE = 0.1
DROP_PATH = 0.1
# BEiT masks 75 of 196 patches.
BEIT_MASKED, BEIT_PATCHES = 75, 196


def _register_cpu_sdpa_flops() -> None:
    """Count CPU flash attention, which FlopCounterMode leaves at zero."""
    from torch.utils.flop_counter import (flop_registry,
                                          sdpa_backward_flop_count,
                                          sdpa_flop_count)
    aten = torch.ops.aten
    fwd = getattr(aten, '_scaled_dot_product_flash_attention_for_cpu', None)
    bwd = getattr(aten,
                  '_scaled_dot_product_flash_attention_for_cpu_backward',
                  None)
    if fwd is not None and fwd not in flop_registry:

        @register_flop_formula(fwd)
        def _fwd(query_shape, key_shape, value_shape, *args, **kwargs):
            return sdpa_flop_count(query_shape, key_shape, value_shape)

    if bwd is not None and bwd not in flop_registry:

        @register_flop_formula(bwd)
        def _bwd(grad_out_shape, query_shape, key_shape, value_shape, *args,
                 **kwargs):
            return sdpa_backward_flop_count(grad_out_shape, query_shape,
                                            key_shape, value_shape)


class NaiveTwoStream(nn.Module):
    """Official-style two-stream forward over a ``MaPeTViT``'s weights.

    Tokens stay in raster order; every sample carries its own dense additive
    float masks (content (Lh, Lh) and query (T, Lh)), built on the CPU as a
    data pipeline would, and every block runs two attention calls (content
    stream, then query stream with full ``qkv`` projections).

    Args:
        backbone (MaPeTViT): Provides weights, ``mode`` and cutting point.
    """

    def __init__(self, backbone: MaPeTViT) -> None:
        super().__init__()
        self.backbone = backbone

    @staticmethod
    def build_masks(permutation: torch.Tensor, cutting_point: int, mode: str,
                    num_extra_tokens: int) -> Tuple[torch.Tensor, ...]:
        """Per-sample additive masks in raster order (0 = visible).

        Content tokens are [CLS, patches in raster order, (mapet) mask
        tokens of the targets in rank order]; query rows are the targets in
        rank order.
        """
        batch, num_patches = permutation.shape
        c = cutting_point
        rank = torch.argsort(permutation, dim=1)
        extra = torch.full((batch, num_extra_tokens), -1)
        tok_rank = torch.cat([extra, rank], dim=1)  # (B, E + N)
        tgt_rank = torch.arange(c, num_patches).expand(batch, -1)
        lim = tok_rank.clamp(min=c - 1)
        content = [tok_rank[:, None, :] <= lim[:, :, None]]
        query = [tok_rank[:, None, :] < tgt_rank[:, :, None]]
        if mode == 'mapet':
            num_targets = num_patches - c
            content = [
                torch.cat(
                    [content[0], tgt_rank[:, None, :] > tok_rank[:, :, None]],
                    dim=2),
                torch.cat([(tok_rank < c)[:, None, :].expand(
                    -1, num_targets, -1),
                           torch.ones(batch, num_targets, num_targets,
                                      dtype=torch.bool)],
                          dim=2)
            ]
            query = [
                torch.cat(
                    [query[0], tgt_rank[:, None, :] >= tgt_rank[:, :, None]],
                    dim=2)
            ]
        content_mask = torch.cat(content, dim=1)
        query_mask = torch.cat(query, dim=1)
        neg = float('-inf')
        return (torch.zeros(content_mask.shape).masked_fill(~content_mask,
                                                           neg),
                torch.zeros(query_mask.shape).masked_fill(~query_mask, neg))

    @staticmethod
    def _attention(layer: nn.Module, q_in: torch.Tensor, kv_in: torch.Tensor,
                   mask: torch.Tensor) -> torch.Tensor:
        attn = layer.attn
        batch = q_in.shape[0]
        heads, head_dims = attn.num_heads, attn.head_dims

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(batch, t.shape[1], 3, heads,
                             head_dims).permute(2, 0, 3, 1, 4)

        q = split(attn.qkv(q_in))[0]
        _, k, v = split(attn.qkv(kv_in))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None])
        out = out.transpose(1, 2).reshape(batch, -1, attn.embed_dims)
        return attn.out_drop(attn.gamma1(attn.proj_drop(attn.proj(out))))

    def forward(self, x: torch.Tensor, permutation: torch.Tensor,
                content_mask: torch.Tensor,
                query_mask: torch.Tensor) -> torch.Tensor:
        """Return the query stream after the final norm, targets in rank
        order (same layout as ``MaPeTViT``)."""
        bb = self.backbone
        c = bb.cutting_point
        batch = x.shape[0]
        x, patch_resolution = bb.patch_embed(x)
        pos = resize_pos_embed(bb.pos_embed, bb.patch_resolution,
                               patch_resolution, bb.interpolate_mode,
                               bb.num_extra_tokens)
        pos_patch = pos[:, bb.num_extra_tokens:].expand(batch, -1, -1)
        index = permutation[:, c:, None].expand(-1, -1, x.shape[-1])
        mask_tokens = bb.mask_token + torch.gather(pos_patch, 1, index)
        h = bb._with_extra(x + pos_patch, pos)
        if bb.mode == 'mapet':
            h = torch.cat([h, mask_tokens], dim=1)
        g = mask_tokens
        content_mask = content_mask.to(x.device, non_blocking=True)
        query_mask = query_mask.to(x.device, non_blocking=True)
        for layer in bb.layers:
            hn, gn = layer.ln1(h), layer.ln1(g)
            h, g = (h + self._attention(layer, hn, hn, content_mask),
                    g + self._attention(layer, gn, hn, query_mask))
            h = layer.ffn(layer.ln2(h), identity=h)
            g = layer.ffn(layer.ln2(g), identity=g)
        return bb.ln1(g) if bb.final_norm else g


def analytic_mapet_forward_flops(arch: dict, num_patches: int,
                                 cutting_point: int, patch_dims: int,
                                 vocab: int,
                                 last_query_only: bool) -> int:
    """Per-sample FLOPs (2 x multiply-adds) of the MaPeT design.

    Content stream 1 + N + T tokens with qkv, query stream T tokens with q
    only; keys/values from the content stream.

    With ``last_query_only`` the last block computes only the query rows
    (the content stream's final output is discarded).
    """
    dim, ffn, layers = (arch['embed_dims'], arch['feedforward_channels'],
                        arch['num_layers'])
    targets = num_patches - cutting_point
    content = 1 + num_patches + targets
    rows = content + targets

    def block(q_rows: int, kv_rows: int) -> int:
        linear = q_rows * dim * dim + kv_rows * 2 * dim * dim  # q, k v
        linear += q_rows * (dim * dim + 2 * dim * ffn)  # proj, FFN
        attention = 2 * q_rows * kv_rows * dim  # QK^T and AV
        return 2 * (linear + attention)

    total = (layers - 1) * block(rows, content)
    total += block(targets if last_query_only else rows, content)
    total += 2 * num_patches * patch_dims * dim  # patch embedding
    total += 2 * targets * dim * vocab  # head
    return total


class Case:
    """One benchmarked training step."""

    def __init__(self, name: str, module: nn.Module,
                 step_loss: Callable[[], torch.Tensor]) -> None:
        self.name = name
        self.module = module
        self.step_loss = step_loss
        self.optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)
        self.times: List[float] = []

    def step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.step_loss().backward()
        self.optimizer.step()


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _saved_bytes(fn: Callable[[], torch.Tensor]) -> int:
    """Bytes of the tensors autograd saves for backward during ``fn``."""
    seen: Dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = fn()
    del loss
    return sum(seen.values())


def build_cases(key: str, batch: int, img_size: int, patch_size: int,
                vocab: int, device: torch.device,
                cutting_point: Optional[int],
                with_cp: bool = False) -> Tuple[List[Case], dict]:
    arch = ARCHS[key]
    c = cutting_point or CUTTING_POINTS[key]
    grid = img_size // patch_size
    num_patches = grid * grid
    vit_kwargs = dict(
        arch=arch,
        img_size=img_size,
        patch_size=patch_size,
        drop_path_rate=DROP_PATH,
        layer_scale_init_value=LAYER_SCALE)
    images = torch.randn(batch, 3, img_size, img_size, device=device)
    tokens = torch.randint(vocab, (batch, num_patches), device=device)
    perms = torch.stack([torch.randperm(num_patches) for _ in range(batch)])

    mapet_model = MaPeT(
        backbone=dict(type='MaPeTViT', cutting_point=c, **vit_kwargs),
        head=dict(
            type='VisualTokenHead', embed_dims=arch['embed_dims'],
            num_embed=vocab)).to(device)
    samples = []
    for i in range(batch):
        sample = DataSample()
        sample.set_field(perms[i].to(device), 'permutation')
        sample.set_field(tokens[i], 'visual_tokens')
        samples.append(sample)

    def mapet_loss() -> torch.Tensor:
        return mapet_model.loss(images, samples)['loss']

    naive_backbone = copy.deepcopy(mapet_model.backbone)
    naive = NaiveTwoStream(naive_backbone)
    naive_head = copy.deepcopy(mapet_model.head)
    naive_all = nn.ModuleList([naive, naive_head])
    # Built on the CPU per sample, as the official data pipeline does.
    content_mask, query_mask = NaiveTwoStream.build_masks(
        perms, c, 'mapet', naive_backbone.num_extra_tokens)
    if device.type == 'cuda':
        content_mask, query_mask = (content_mask.pin_memory(),
                                    query_mask.pin_memory())
    perms_dev = perms.to(device)

    def naive_loss() -> torch.Tensor:
        feats = naive(images, perms_dev, content_mask, query_mask)
        return naive_head.loss(feats, tokens, perms_dev[:, c:])['loss']

    beit_backbone = BEiTPretrainViT(
        use_abs_pos_emb=True,
        use_rel_pos_bias=False,
        use_shared_rel_pos_bias=False,
        **vit_kwargs).to(device)
    beit_head = BEiTV1Head(
        embed_dims=arch['embed_dims'],
        num_embed=vocab,
        loss=dict(type='CrossEntropyLoss')).to(device)
    beit_all = nn.ModuleList([beit_backbone, beit_head])
    masked = int(round(BEIT_MASKED * num_patches / BEIT_PATCHES))
    generator = BEiTMaskGenerator(
        input_size=grid, num_masking_patches=masked)
    beit_mask = torch.from_numpy(
        np.stack([generator({})['mask'] for _ in range(batch)])).bool().to(
            device)

    def beit_loss() -> torch.Tensor:
        # BEiTV1Head.loss minus its argmax over one-hot DALL-E logits.
        feats = beit_backbone(images, beit_mask)[0][:, 1:]
        mask = beit_mask.flatten(1)
        logits = beit_head.cls_head(feats[mask])
        return beit_head.loss_module(logits, tokens[mask])

    plain_backbone = VisionTransformer(out_type='raw', **vit_kwargs)
    plain_head = nn.Linear(arch['embed_dims'], vocab)
    plain_all = nn.ModuleList([plain_backbone, plain_head]).to(device)

    def plain_loss() -> torch.Tensor:
        feats = plain_backbone(images)[0][:, 1:]
        return F.cross_entropy(
            plain_head(feats).flatten(0, 1), tokens.flatten())

    extra = []
    if with_cp:
        cp_model = copy.deepcopy(mapet_model)
        cp_model.backbone.with_cp = True

        def mapet_cp_loss() -> torch.Tensor:
            return cp_model.loss(images, samples)['loss']

        extra.append(Case('mapet_cp', cp_model, mapet_cp_loss))

    cases = extra + [
        Case('mapet', mapet_model, mapet_loss),
        Case('beit', beit_all, beit_loss),
        Case('naive', naive_all, naive_loss),
        Case('plain', plain_all, plain_loss),
    ]
    meta = dict(
        arch=arch,
        cutting_point=c,
        num_patches=num_patches,
        patch_dims=3 * patch_size * patch_size,
        beit_masked=masked,
        naive_mask_bytes_per_sample=(content_mask[0].numel() +
                                     query_mask[0].numel()) *
        content_mask.element_size(),
        mapet_bytes_per_sample=perms[0].numel() * perms.element_size())
    return cases, meta


def run(args: argparse.Namespace) -> None:
    _register_cpu_sdpa_flops()
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    print(f'device={device} torch={torch.__version__} '
          f'threads={torch.get_num_threads()} batch={args.batch_size} '
          f'img={args.img_size} vocab={args.vocab}')
    for key in args.archs:
        cases, meta = build_cases(key, args.batch_size, args.img_size,
                                  args.patch_size, args.vocab, device,
                                  args.cutting_point, args.with_cp)
        for case in cases:
            case.module.train()
            for _ in range(args.warmup):
                case.step()
        # Interleaved: every round times each case once.
        for _ in range(args.repeats):
            for case in cases:
                _sync(device)
                start = time.perf_counter()
                case.step()
                _sync(device)
                case.times.append(time.perf_counter() - start)

        stats = {}
        for case in cases:
            with FlopCounterMode(display=False) as counter:
                case.step()
            step_flops = counter.get_total_flops()
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                case.step_loss()
            fwd_flops = counter.get_total_flops()
            if device.type == 'cuda':
                torch.cuda.reset_peak_memory_stats(device)
                case.step()
                peak = torch.cuda.max_memory_allocated(device)
            else:
                peak = None
            saved = _saved_bytes(case.step_loss)
            if case.name == 'mapet_cp':
                # Checkpoint keeps each block's input alive outside autograd's
                # saved tensors: one (B, 1 + N + 2T, C) fp32 tensor per block.
                targets = meta['num_patches'] - meta['cutting_point']
                saved += (meta['arch']['num_layers'] * args.batch_size *
                          (1 + meta['num_patches'] + 2 * targets) *
                          meta['arch']['embed_dims'] * 4)
            median = statistics.median(case.times)
            stats[case.name] = dict(
                time=median,
                step_flops=step_flops,
                fwd_flops=fwd_flops,
                flops_per_s=step_flops / median,
                peak=peak,
                saved=saved)

        print(f'\n== ViT-{key.upper()} ({meta["arch"]["embed_dims"]} dims), '
              f'N={meta["num_patches"]}, c={meta["cutting_point"]}, '
              f'BEiT masked={meta["beit_masked"]}, median of '
              f'{args.repeats} interleaved steps')
        header = (f'{"step":<7}{"time ms":>10}{"GFLOP step":>12}'
                  f'{"GFLOP fwd":>11}{"GFLOP/s":>10}{"saved MB":>10}')
        if device.type == 'cuda':
            header += f'{"peak MB":>10}'
        print(header)
        for name, s in stats.items():
            line = (f'{name:<7}{s["time"] * 1e3:>10.1f}'
                    f'{s["step_flops"] / 1e9:>12.2f}'
                    f'{s["fwd_flops"] / 1e9:>11.2f}'
                    f'{s["flops_per_s"] / 1e9:>10.1f}'
                    f'{s["saved"] / 2**20:>10.1f}')
            if s['peak'] is not None:
                line += f'{s["peak"] / 2**20:>10.1f}'
            print(line)

        m, b, n, p = (stats[k] for k in ('mapet', 'beit', 'naive', 'plain'))
        design = analytic_mapet_forward_flops(
            meta['arch'], meta['num_patches'], meta['cutting_point'],
            meta['patch_dims'], args.vocab,
            last_query_only=False) * args.batch_size
        trimmed = analytic_mapet_forward_flops(
            meta['arch'], meta['num_patches'], meta['cutting_point'],
            meta['patch_dims'], args.vocab,
            last_query_only=True) * args.batch_size
        time_ratio = m['time'] / b['time']
        flop_ratio = m['step_flops'] / b['step_flops']
        checks = [
            ('MaPeT/BEiT time', time_ratio, None),
            ('MaPeT/BEiT FLOPs', flop_ratio, None),
            ('(time ratio)/(FLOP ratio)', time_ratio / flop_ratio,
             '<= 1.15'),
            ('MaPeT FLOP/s / plain ViT FLOP/s',
             m['flops_per_s'] / p['flops_per_s'], '>= 0.85'),
            ('MaPeT fwd FLOPs / analytic design', m['fwd_flops'] / design,
             '<= 1.05'),
            ('MaPeT fwd FLOPs / analytic as implemented',
             m['fwd_flops'] / trimmed, None),
            ('MaPeT time / naive time', m['time'] / n['time'], '<= 1.0'),
        ]
        print(f'analytic MaPeT forward GFLOP: design {design / 1e9:.3f}, '
              f'as implemented (last block query rows only) '
              f'{trimmed / 1e9:.3f}; measured {m["fwd_flops"] / 1e9:.3f}')
        print(f'per-sample payload: MaPeT {meta["mapet_bytes_per_sample"]} B '
              f'(permutation), naive '
              f'{meta["naive_mask_bytes_per_sample"] / 2**10:.1f} KiB '
              '(float masks)')
        for label, value, target in checks:
            verdict = ''
            if target is not None:
                op, bound = target.split()
                ok = value <= float(bound) if op == '<=' else \
                    value >= float(bound)
                verdict = f'  target {target}: {"PASS" if ok else "FAIL"}'
            print(f'{label:<44}{value:>8.3f}{verdict}')
        if 'mapet_cp' in stats:
            k = stats['mapet_cp']
            print('activation checkpointing (with_cp=True vs False):')
            print(f'{"  time cost (cp time / time)":<44}'
                  f'{k["time"] / m["time"]:>8.3f}')
            print(f'{"  saved-for-backward bytes (cp / no cp)":<44}'
                  f'{k["saved"] / m["saved"]:>8.3f}')
            if k['peak'] is not None:
                print(f'{"  CUDA peak memory (cp / no cp)":<44}'
                      f'{k["peak"] / m["peak"]:>8.3f}')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--archs', nargs='+', default=['t', 's'],
                        choices=sorted(ARCHS))
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--patch-size', type=int, default=16)
    parser.add_argument('--vocab', type=int, default=8192)
    parser.add_argument(
        '--cutting-point',
        type=int,
        default=None,
        help='override the paper cutting point (50 / 50 / 60 for T / S / B)')
    parser.add_argument(
        '--with-cp',
        action='store_true',
        help='also time MaPeT with activation checkpointing (with_cp=True) '
        'and report its memory saving and time cost')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--device',
        default='cuda' if torch.cuda.is_available() else 'cpu')
    args = parser.parse_args()
    if args.repeats < 5:
        parser.error('--repeats must be >= 5 (median of at least 5 runs).')
    return args


if __name__ == '__main__':
    run(parse_args())
