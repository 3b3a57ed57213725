"""CUDA figures for docs/benchmarks.md (run on a GPU node; one process).

For ViT-T/S/B it times one pre-training step (forward, backward, AdamW) of
MaPeT, BEiT and a plain ViT (the same cases as ``pretrain_step.py``) at
batch 32 and 128 per GPU, in fp16 (GradScaler) and bf16 autocast, eager and
``torch.compile``-d, and reports images/s, peak memory, achieved TFLOP/s
(FLOPs counted with ``FlopCounterMode`` on the eager step) and MFU against
the device's dense bf16 peak. Then the k-CLIP tokenizer (CLIP RN50x64 trunk
+ nearest centroid of 8192, 448 px, random weights: same cost) images/s.
Every ratio is against a baseline of the same run (MaPeT / BEiT, compiled /
eager, bf16 / fp16). Last, the device half of the pre-cropped pipeline:
``ColorJitterDataPreprocessor`` (batched colour jitter + normalisation) on
224 px uint8 batches, images/s, against the plain ``SelfSupDataPreprocessor``
of the same batch.

    python tools/analysis_tools/gpu_benchmark.py --out work_dirs/gpu_bench.json
    # quick check of the script itself (ViT-T, batch 32, a few steps):
    python tools/analysis_tools/gpu_benchmark.py --quick

``--peak-tflops`` overrides the bf16 peak (dense, no sparsity) looked up from
the device name.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import pretrain_step as ps  # noqa: E402

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity), vendor data sheets.
BF16_PEAK_TFLOPS = {
    'H200': 989.0, 'H100 SXM': 989.0, 'H100 80GB HBM3': 989.0,
    'H100 PCIe': 756.0, 'H100 NVL': 835.0, 'H100': 989.0, 'GH200': 989.0,
    'A100': 312.0, 'A800': 312.0, 'L40S': 362.0, 'L40': 181.0,
    'A10G': 70.0, 'A10': 125.0, 'RTX 4090': 165.0, 'RTX 3090': 71.0,
    'V100': 125.0,  # fp16 tensor cores; V100 has no bf16 units
    'T4': 65.0,
}


def bf16_peak(name: str) -> float:
    for key in sorted(BF16_PEAK_TFLOPS, key=len, reverse=True):
        if key in name:
            return BF16_PEAK_TFLOPS[key]
    return float('nan')


def time_step(step: Callable[[], None], warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = (torch.cuda.Event(enable_timing=True),
                      torch.cuda.Event(enable_timing=True))
        start.record()
        step()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def bench_models(args, device, peak_tflops) -> List[Dict]:
    rows = []
    for key in args.archs:
        for batch in args.batch_sizes:
            for dtype_name in args.dtypes:
                dtype = getattr(torch, dtype_name)
                for compiled in args.compile_modes:
                    torch.manual_seed(0)
                    cases, meta = ps.build_cases(key, batch, 224, 16, 8192,
                                                 device, None)
                    cases = [c for c in cases if c.name in args.models]
                    for case in cases:
                        scaler = torch.amp.GradScaler(
                            'cuda', enabled=dtype == torch.float16)
                        loss_fn = case.step_loss
                        if compiled == 'compiled':
                            loss_fn = torch.compile(loss_fn)

                        def step(case=case, loss_fn=loss_fn, scaler=scaler):
                            case.optimizer.zero_grad(set_to_none=True)
                            with torch.autocast('cuda', dtype=dtype):
                                loss = loss_fn()
                            scaler.scale(loss).backward()
                            scaler.step(case.optimizer)
                            scaler.update()

                        case.module.train()
                        try:
                            torch.cuda.reset_peak_memory_stats(device)
                            sec = time_step(step, args.warmup, args.repeats)
                            peak = torch.cuda.max_memory_allocated(device)
                        except torch.cuda.OutOfMemoryError:
                            rows.append(dict(arch=key, batch=batch,
                                             dtype=dtype_name, mode=compiled,
                                             model=case.name, oom=True))
                            torch.cuda.empty_cache()
                            continue
                        with FlopCounterMode(display=False) as counter:
                            case.step()  # eager fp32 step: the FLOP count
                        flops = counter.get_total_flops()
                        tflops = flops / sec / 1e12
                        rows.append(dict(
                            arch=key, batch=batch, dtype=dtype_name,
                            mode=compiled, model=case.name,
                            step_ms=sec * 1e3, images_per_s=batch / sec,
                            peak_gib=peak / 2**30, step_tflop=flops / 1e12,
                            tflops=tflops, mfu=tflops / peak_tflops))
                        print(json.dumps(rows[-1]), flush=True)
                    del cases
                    torch.cuda.empty_cache()
    return rows


def bench_kclip(args, device) -> List[Dict]:
    from mapet.models.tokenizers import KClipTokenizer
    from mapet.models.tokenizers.kclip import ClipResNetTrunk
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        dim = ClipResNetTrunk(args.clip_model, None).dim
        path = osp.join(tmp, 'cb.npy')
        np.save(path, np.random.default_rng(0).standard_normal(
            (8192, dim)).astype(np.float32))
        tok = KClipTokenizer(args.clip_model, None, path,
                             input_size=args.clip_size).to(device).eval()
        for dtype_name in args.dtypes:
            dtype = getattr(torch, dtype_name)
            images = torch.randn(args.clip_batch, 3, args.clip_size,
                                 args.clip_size, device=device)

            def step():
                with torch.no_grad(), torch.autocast('cuda', dtype=dtype):
                    tok(images)

            torch.cuda.reset_peak_memory_stats(device)
            sec = time_step(step, args.warmup, args.repeats)
            rows.append(dict(
                tokenizer=f'k-CLIP {args.clip_model} {args.clip_size}px',
                dtype=dtype_name, batch=args.clip_batch,
                images_per_s=args.clip_batch / sec,
                peak_gib=torch.cuda.max_memory_allocated(device) / 2**30))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def bench_device_jitter(args, device) -> List[Dict]:
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    import mapet  # noqa: F401  (registers)
    norm = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                to_rgb=True)
    rng = np.random.default_rng(0)
    rows = []
    for batch in args.batch_sizes:
        inputs = torch.from_numpy(rng.integers(
            0, 256, (batch, 3, 224, 224), dtype=np.uint8))
        samples = []
        for _ in range(batch):
            params = np.concatenate([rng.permutation(4),
                                     rng.uniform(0.6, 1.4, 3)])
            samples.append(DataSample(color_jitter=params))
        data = dict(inputs=inputs, data_samples=samples)
        rates = {}
        for kind in ('SelfSupDataPreprocessor',
                     'ColorJitterDataPreprocessor'):
            pre = MODELS.build(dict(type=kind, **norm)).to(device)
            sec = time_step(lambda: pre(data, training=True), args.warmup,
                            args.repeats)
            rates[kind] = batch / sec
        rows.append(dict(preprocessor_batch=batch, **{
            f'{k}_images_per_s': v for k, v in rates.items()},
            jitter_over_plain_time=rates['SelfSupDataPreprocessor'] /
            rates['ColorJitterDataPreprocessor']))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def ratios(rows: List[Dict]) -> List[str]:
    """Same-run ratios: MaPeT/BEiT, compiled/eager, bf16/fp16 (images/s)."""
    index = {(r['arch'], r['batch'], r['dtype'], r['mode'], r['model']): r
             for r in rows if not r.get('oom')}
    out = []
    for (a, b, d, m, model), r in sorted(index.items()):
        if model == 'mapet' and (a, b, d, m, 'beit') in index:
            out.append(f'ViT-{a.upper()} b{b} {d} {m}: MaPeT/BEiT images/s '
                       f'{r["images_per_s"] / index[a, b, d, m, "beit"]["images_per_s"]:.3f}')  # noqa: E501
        if m == 'compiled' and (a, b, d, 'eager', model) in index:
            out.append(f'ViT-{a.upper()} b{b} {d} {model}: compiled/eager '
                       f'{r["images_per_s"] / index[a, b, d, "eager", model]["images_per_s"]:.3f}')  # noqa: E501
        if d == 'bfloat16' and (a, b, 'float16', m, model) in index:
            out.append(f'ViT-{a.upper()} b{b} {m} {model}: bf16/fp16 '
                       f'{r["images_per_s"] / index[a, b, "float16", m, model]["images_per_s"]:.3f}')  # noqa: E501
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--archs', nargs='+', default=['t', 's', 'b'])
    p.add_argument('--batch-sizes', nargs='+', type=int, default=[32, 128])
    p.add_argument('--dtypes', nargs='+', default=['float16', 'bfloat16'])
    p.add_argument('--compile-modes', nargs='+', default=['eager',
                                                          'compiled'])
    p.add_argument('--models', nargs='+', default=['mapet', 'beit', 'plain'])
    p.add_argument('--clip-model', default='RN50x64')
    p.add_argument('--clip-size', type=int, default=448)
    p.add_argument('--clip-batch', type=int, default=64)
    p.add_argument('--no-kclip', action='store_true')
    p.add_argument('--warmup', type=int, default=5)
    p.add_argument('--repeats', type=int, default=20)
    p.add_argument('--peak-tflops', type=float, default=None)
    p.add_argument('--quick', action='store_true',
                   help='ViT-T, batch 32, bf16, 3 steps: checks the script')
    p.add_argument('--out', default=None, help='write all rows as JSON')
    args = p.parse_args()
    if args.quick:
        args.archs, args.batch_sizes, args.dtypes = ['t'], [32], ['bfloat16']
        args.warmup, args.repeats, args.clip_batch = 2, 3, 8
    if not torch.cuda.is_available():
        raise SystemExit('gpu_benchmark.py needs CUDA; the CPU figures come '
                         'from pretrain_step.py and dataloader_benchmark.py')
    ps._register_cpu_sdpa_flops()
    device = torch.device('cuda')
    name = torch.cuda.get_device_name(device)
    peak = args.peak_tflops or bf16_peak(name)
    print(f'device={name} bf16_peak={peak} TFLOP/s torch={torch.__version__} '
          f'date={time.strftime("%Y-%m-%d")}', flush=True)
    rows = bench_models(args, device, peak)
    kclip = [] if args.no_kclip else bench_kclip(args, device)
    jitter = bench_device_jitter(args, device)
    lines = ratios(rows)
    print('\n'.join(lines))
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(dict(device=name, bf16_peak_tflops=peak,
                           torch=torch.__version__, steps=rows, kclip=kclip,
                           device_jitter=jitter, ratios=lines), f, indent=1)


if __name__ == '__main__':
    main()
