"""Input-pipeline throughput of MaPeT pre-training against the model's.

In one process, on ImageNet-sized JPEGs made from scikit-image's bundled
photographs (500x375, 375x500, 500x333; quality 90) with a real token store
(random tokens, written by ``mapet.datasets.token_store``) and real crop
shards (``mapet.datasets.crop_shards``), it times the training pipelines of

(a) ``configs/_base_/datasets/imagenet_mapet_pretrain.py`` (decode JPEG,
    token look-up, resize + centre crop, colour jitter, permutation, pack);
(b) (c) with mmpretrain's ``ColorJitter`` on the CPU in place of
    ``DeferredColorJitter``: the shards alone;
(c) ``configs/_base_/datasets/imagenet_mapet_pretrain_precropped.py`` (crop
    from the shards, token look-up, jitter drawn but applied on the device
    by ``ColorJitterDataPreprocessor``, permutation, pack),

interleaved, median of ``--rounds`` passes over the images, each sample
inside ``PerSampleRNG``'s seeding as in training, one process with
one thread (a data-loader worker: ``torch.set_num_threads(1)``, OpenCV
threads off as MMEngine sets them), page cache warm, ``default_collate``
included; per transform as well. A worker's images/s is the reciprocal of
its CPU time per image. The device half of (c), the data preprocessor's
batched jitter, is timed here on this CPU with one thread for reference;
``gpu_benchmark.py`` times it on a GPU.

The model side is a FLOP estimate: MaPeT training FLOPs per image = 3 x the
analytic forward count of ``pretrain_step.analytic_mapet_forward_flops``
(ViT-T/S/B, c = 50/50/60, vocab 8192, the last block computing query rows
only; backward = 2 x forward), at ``--mfu`` (default 40 %) of each GPU's
dense bf16 peak (A100 312, H100 989 TFLOP/s). Workers per GPU needed =
ceil(model images/s / worker images/s).

Example::

    python tools/analysis_tools/dataloader_benchmark.py --images 64
"""
import argparse
import json
import math
import os
import os.path as osp
import platform
import statistics
import sys
import tempfile
import time
from typing import Dict, List

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402

GPUS = {'A100': 312e12, 'H100': 989e12}
SIZES = [(500, 375), (375, 500), (500, 333)]  # (w, h), ImageNet-typical
PHOTOS = ('astronaut', 'chelsea', 'coffee', 'rocket',
          'immunohistochemistry', 'retina', 'hubble_deep_field')
CODEBOOK = 'c' * 64


def make_jpegs(data_root: str, count: int, seed: int = 0) -> List[str]:
    """ImageNet-like JPEGs cut from scikit-image's photographs."""
    from PIL import Image
    from skimage import data as skdata
    rng = np.random.default_rng(seed)
    photos = [getattr(skdata, name)() for name in PHOTOS]
    relpaths = []
    for i in range(count):
        photo = photos[i % len(photos)]
        w, h = SIZES[i % len(SIZES)]
        ph, pw = photo.shape[:2]
        # a random box of the target aspect, >= 60 % of the short side
        scale = rng.uniform(0.6, 1.0) * min(pw / w, ph / h)
        bw, bh = int(w * scale), int(h * scale)
        x0 = int(rng.integers(0, pw - bw + 1))
        y0 = int(rng.integers(0, ph - bh + 1))
        img = Image.fromarray(photo[y0:y0 + bh, x0:x0 + bw]).convert('RGB')
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        img = img.resize((w, h), Image.BICUBIC)
        rel = f'train/n{i % 8:08d}/img_{i:05d}.JPEG'
        os.makedirs(osp.dirname(osp.join(data_root, rel)), exist_ok=True)
        img.save(osp.join(data_root, rel), quality=90)
        relpaths.append(rel)
    os.makedirs(osp.join(data_root, 'meta'), exist_ok=True)
    with open(osp.join(data_root, 'meta', 'train.txt'), 'w') as f:
        for i, rel in enumerate(relpaths):
            f.write(f'{rel[len("train/"):]} {i % 8}\n')
    return relpaths


def make_store(store: str, relpaths: List[str], seed: int = 0) -> None:
    from mapet.datasets.image_decode import DECODER_ID
    from mapet.datasets.token_store import (merge_store, prepare_parts,
                                            write_chunk)
    relpaths = sorted(relpaths)
    rng = np.random.default_rng(seed)
    prepare_parts(store, dict(job='dataloader-benchmark'))
    write_chunk(store, 0, rng.integers(0, 8192, (len(relpaths), 196)), 8192)
    merge_store(
        store, relpaths, len(relpaths), 196,
        dict(grid=[14, 14], vocab_size=8192, crop='center',
             decoder=DECODER_ID, tokenizer=dict(codebook_sha256=CODEBOOK)))


def build_dataset(config: str, data_root: str, store: str, shards: str,
                  cpu_jitter: bool = False):
    from mmengine.config import Config
    from mmpretrain.registry import DATASETS
    cfg = Config.fromfile(osp.join(REPO, config))
    ds = cfg.train_dataloader.dataset
    pipeline = []
    for t in ds.pipeline:
        t = dict(t)
        if t['type'] == 'DeferredColorJitter' and cpu_jitter:
            t['type'] = 'ColorJitter'
        if t['type'] == 'LoadVisualTokens':
            t.update(store=store, codebook=CODEBOOK)
        if t['type'] == 'LoadPrecroppedImage':
            t.update(shards=shards, store=store)
        pipeline.append(t)
    ds.update(data_root=data_root, pipeline=pipeline)
    return DATASETS.build(ds.to_dict())


def time_pass(dataset, batch_size: int, times: Dict[str, float]) -> float:
    """One pass over the dataset; per-transform seconds added to times.

    Each sample's transforms run inside the per-sample seeding of the global
    RNGs that ``PerSampleRNG`` does in a dataloader worker of every
    pre-training run (its cost is the ``PerSampleRNG`` stage).
    """
    from mmengine.dataset import default_collate
    from mapet.datasets.transforms.per_sample_rng import sample_rng_scope
    transforms = dataset.pipeline.transforms
    names = [type(t).__name__ for t in transforms]
    start = time.perf_counter()
    batch = []
    for i in range(len(dataset)):
        results = dataset.get_data_info(i)
        t0 = time.perf_counter()
        with sample_rng_scope(0, 0, i, restore=False):
            seeded = time.perf_counter()
            for name, t in zip(names, transforms):
                t1 = time.perf_counter()
                results = t(results)
                times[name] = times.get(name, 0.) + time.perf_counter() - t1
            done = time.perf_counter()
        times['PerSampleRNG'] = times.get('PerSampleRNG', 0.) + \
            (seeded - t0) + (time.perf_counter() - done)
        batch.append(results)
        if len(batch) == batch_size or i == len(dataset) - 1:
            t0 = time.perf_counter()
            default_collate(batch)
            times['collate'] = times.get('collate', 0.) + \
                time.perf_counter() - t0
            batch = []
    return time.perf_counter() - start


def time_decoders(data_root: str, relpaths: List[str],
                  rounds: int) -> Dict[str, float]:
    """ms per image of mapet's one decoder against cv2's, same JPEGs.

    ``decode_image`` is what both token extraction and training use
    (``mapet/datasets/image_decode.py``); cv2 (``cv2.imread``, mmcv's
    default backend) is the alternative that decides nothing about EXIF or
    bit depth the same way.
    """
    import cv2
    from mapet.datasets.image_decode import decode_image
    paths = [osp.join(data_root, r) for r in relpaths]
    decoders = {
        'decode_image (PIL, EXIF, RGB)': decode_image,
        'cv2.imread (BGR)': lambda p: cv2.imread(p, cv2.IMREAD_COLOR),
    }
    times = {name: [] for name in decoders}
    for _ in range(rounds):
        for name, decode in decoders.items():
            t0 = time.perf_counter()
            for p in paths:
                decode(p)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(v) / len(paths) * 1e3
            for name, v in times.items()}


def time_device_jitter(dataset, batch_size: int, rounds: int) -> float:
    """ms per image of the data preprocessor's batched jitter (this CPU)."""
    from mmengine.dataset import default_collate
    from mmpretrain.registry import MODELS
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(
        REPO, 'configs/_base_/datasets/imagenet_mapet_pretrain_precropped.py'))
    preprocessor = MODELS.build(cfg.data_preprocessor)
    batch = default_collate([dataset[i] for i in range(
        min(batch_size, len(dataset)))])
    preprocessor(batch, training=True)  # warm-up
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        preprocessor(batch, training=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / len(batch['inputs']) * 1e3


def model_rates(mfu: float) -> Dict[str, Dict[str, float]]:
    from pretrain_step import (ARCHS, CUTTING_POINTS,
                               analytic_mapet_forward_flops)
    out = {}
    for key in 'tsb':
        fwd = analytic_mapet_forward_flops(
            ARCHS[key], 196, CUTTING_POINTS[key], 3 * 16 * 16, 8192,
            last_query_only=True)
        rates = {gpu: mfu * peak / (3 * fwd) for gpu, peak in GPUS.items()}
        out[f'ViT-{key.upper()}'] = dict(fwd_gflop=fwd / 1e9,
                                         train_gflop=3 * fwd / 1e9, **rates)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--images', type=int, default=64)
    p.add_argument('--rounds', type=int, default=5)
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--mfu', type=float, default=0.4)
    p.add_argument('--target-workers', type=int, default=8)
    p.add_argument('--work-dir', help='keep the data here (default: temp)')
    p.add_argument('--json', help='also write the figures as JSON')
    args = p.parse_args()

    torch.set_num_threads(1)
    import cv2
    cv2.setNumThreads(0)
    import mapet  # noqa: F401  (registers)
    from mapet.datasets.crop_shards import write_crop_shards

    tmp = None
    if args.work_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix='dl_bench_')
        args.work_dir = tmp.name
    data_root = osp.join(args.work_dir, 'data')
    store = osp.join(args.work_dir, 'tokens')
    shards = osp.join(args.work_dir, 'crops')
    relpaths = make_jpegs(data_root, args.images)
    jpeg_kb = statistics.mean(
        os.path.getsize(osp.join(data_root, r)) for r in relpaths) / 1e3
    make_store(store, relpaths)
    t0 = time.perf_counter()
    write_crop_shards(store, data_root, shards, chunk_size=64)
    write_ms = (time.perf_counter() - t0) / args.images * 1e3
    crop_kb = 224 * 224 * 3 / 1e3

    paths = {
        'JPEG (imagenet_mapet_pretrain)': build_dataset(
            'configs/_base_/datasets/imagenet_mapet_pretrain.py', data_root,
            store, shards),
        'pre-cropped, CPU ColorJitter': build_dataset(
            'configs/_base_/datasets/imagenet_mapet_pretrain_precropped.py',
            data_root, store, shards, cpu_jitter=True),
        'pre-cropped + device jitter (imagenet_mapet_pretrain_precropped)':
        build_dataset(
            'configs/_base_/datasets/imagenet_mapet_pretrain_precropped.py',
            data_root, store, shards),
    }
    for ds in paths.values():  # warm-up: page cache, memory maps
        time_pass(ds, args.batch_size, {})
    totals = {k: [] for k in paths}
    stages = {k: {} for k in paths}
    for _ in range(args.rounds):
        for name, ds in paths.items():
            totals[name].append(time_pass(ds, args.batch_size, stages[name]))

    device_jitter_ms = time_device_jitter(paths[list(paths)[-1]],
                                          args.batch_size, args.rounds)
    decoder_ms = time_decoders(data_root, relpaths, args.rounds)
    n = args.images
    per_worker = {k: n / statistics.median(v) for k, v in totals.items()}
    models = model_rates(args.mfu)
    base = next(iter(per_worker.values()))
    print(f'# {n} JPEGs ({", ".join(f"{w}x{h}" for w, h in SIZES)}, mean '
          f'{jpeg_kb:.0f} KB), batch {args.batch_size}, median of '
          f'{args.rounds} interleaved passes, 1 thread per worker')
    print(f'machine: {platform.processor() or platform.machine()}, '
          f'{os.cpu_count()} CPUs, torch {torch.__version__}')
    print('\n## CPU time per image by step (ms, mean over passes)\n')
    for name in paths:
        parts = ', '.join(f'{k} {v / (n * args.rounds) * 1e3:.2f}'
                          for k, v in stages[name].items())
        print(f'- {name}: {parts}')
    print(f'\nwriting the crop shards: {write_ms:.1f} ms per image once '
          f'(in the token store\'s order); {crop_kb:.1f} KB per image on '
          f'disk vs {jpeg_kb:.0f} KB JPEG')
    print('\nJPEG decoders, same files, ms per image (x mapet\'s): ' +
          ', '.join(f'{k} {v:.2f} (x{v / next(iter(decoder_ms.values())):.2f})'
                    for k, v in decoder_ms.items()))
    print('\nbatched jitter of ColorJitterDataPreprocessor (the device half '
          f'of the last pipeline) on this CPU, 1 thread: '
          f'{device_jitter_ms:.2f} ms per image')
    print('\n## Images/s per worker\n')
    print('| pipeline | ms / image | images/s per worker | x JPEG path |')
    print('|---|---|---|---|')
    for name, rate in per_worker.items():
        print(f'| {name} | {1e3 / rate:.2f} | {rate:.0f} | '
              f'{rate / base:.2f} |')
    print(f'\n## Model images/s per GPU (FLOP estimate: {args.mfu:.0%} MFU '
          'of dense bf16 peak, A100 312 / H100 989 TFLOP/s, training = 3 x '
          'forward FLOPs)\n')
    print('| model | fwd GFLOP / image | train GFLOP / image | A100 img/s | '
          'H100 img/s |')
    print('|---|---|---|---|---|')
    for m, r in models.items():
        print(f'| {m} | {r["fwd_gflop"]:.2f} | {r["train_gflop"]:.2f} | '
              f'{r["A100"]:.0f} | {r["H100"]:.0f} |')
    print('\n## CPU workers needed per GPU (ceil(model img/s / worker '
          f'img/s); * = more than {args.target_workers})\n')
    cols = [(m, g) for m in models for g in GPUS]
    print('| pipeline | ' + ' | '.join(f'{m} {g}' for m, g in cols) + ' |')
    print('|---|' + '---|' * len(cols))
    needed = {}
    for name, rate in per_worker.items():
        row = {}
        for m, g in cols:
            row[f'{m} {g}'] = math.ceil(models[m][g] / rate)
        needed[name] = row
        print(f'| {name} | ' + ' | '.join(
            f'{v}{"*" if v > args.target_workers else ""}'
            for v in row.values()) + ' |')
    print('\nRead bandwidth per GPU at the model rate (MB/s), JPEG / crops: ' +
          ', '.join(f'{m} {g} {models[m][g] * jpeg_kb / 1e3:.0f} / '
                    f'{models[m][g] * crop_kb / 1e3:.0f}' for m, g in cols))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(per_worker=per_worker, models=models,
                           workers_needed=needed, jpeg_kb=jpeg_kb,
                           device_jitter_cpu_ms=device_jitter_ms,
                           decoder_ms=decoder_ms,
                           write_ms_per_image=write_ms), f, indent=1)
    if tmp is not None:
        tmp.cleanup()


if __name__ == '__main__':
    main()
