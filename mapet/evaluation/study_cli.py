"""Objectives study: MaPeT / PIM / MIM / BEiT / random init, k-NN + linear probe.

With the same tokens, backbone, budget and seeds, pre-train a small ViT with
each objective (``--objectives``), for ``--seeds`` pre-training seeds and
each augmentation condition (``--augments``: ``jitter`` = centre crop +
colour jitter, the paper's recipe; ``views`` = a random stored view of an
augmentation-aware token store + colour jitter), then score every frozen
backbone with the weighted k-NN (k=20, T=0.07) and a linear probe
(``--probe-seeds``). Writes ``<out>/study.json`` (every number, settings,
times) and ``<out>/study.png`` (mean +- std bars per objective and probe).

Demo scale on CPU (see docs/evidence.md for times and results)::

    python tools/analysis_tools/objective_study.py --data-root data/demo \
        --out work_dirs/study/demo --seeds 0 1 2 --epochs 20

The dataset is an mmpretrain ``CustomDataset`` folder with
``meta/{train,val}.txt`` (``<class>/<file> <label>`` lines) and
``train/``, ``val/`` image folders (``tools/dataset_converters/
make_demo_dataset.py``, ``make_digits_dataset.py``).
"""
import argparse

from mapet.evaluation.study import (AUGMENTS, OBJECTIVES,
                                    StudyConfig, run_study)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data-root', required=True, help='dataset folder')
    p.add_argument('--out', required=True, help='output folder')
    p.add_argument('--img-size', type=int, default=48)
    p.add_argument('--patch-size', type=int, default=8)
    p.add_argument('--layers', type=int, default=4, help='ViT depth')
    p.add_argument('--dim', type=int, default=128, help='ViT width')
    p.add_argument('--heads', type=int, default=4)
    p.add_argument('--epochs', type=int, default=20,
                   help='pre-training epochs (same budget for all)')
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--lr', type=float, default=1.5e-3)
    p.add_argument('--warmup-epochs', type=int, default=2)
    p.add_argument('--cutting-point', type=int, default=None,
                   help='MaPeT/PIM context patches (default N/4)')
    p.add_argument('--mask-ratio', type=float, default=0.38,
                   help='MIM/BEiT masked fraction (75/196 as BEiT)')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--probe-seeds', type=int, nargs='+', default=[0, 1])
    p.add_argument('--objectives', nargs='+', default=list(OBJECTIVES),
                   choices=OBJECTIVES)
    p.add_argument('--augments', nargs='+', default=['jitter'],
                   choices=AUGMENTS)
    p.add_argument('--tokenizer', default='kclip-random',
                   choices=['kclip-random', 'pixel'],
                   help='kclip-random: k-means of a randomly initialised '
                   'CLIP RN50 (the demo tokenizer); pixel: k-means of pixel '
                   'patches (a control)')
    p.add_argument('--vocab-size', type=int, default=64)
    p.add_argument('--num-crops', type=int, default=4,
                   help='random-resized-crop views per image in the store')
    p.add_argument('--probe-epochs', type=int, default=100)
    p.add_argument('--probe-lr', type=float, default=4e-3)
    p.add_argument('--probe-centre-only', action='store_true',
                   help='linear probe on centre crops only (default: on the '
                   'stored flip/random-resized-crop views)')
    p.add_argument('--knn-k', type=int, default=20)
    p.add_argument('--knn-temperature', type=float, default=0.07)
    p.add_argument('--tokens-dir', help='codebook + view store folder, '
                   'reused when it exists (default <out>/tokens); only '
                   'share it between runs with the same tokenizer settings')
    p.add_argument('--threads', type=int, default=1,
                   help='torch threads (keep low on shared machines)')
    p.add_argument('--resume', action='store_true',
                   help='reuse the finished runs of an interrupted study '
                   '(<out>/study.json.partial, same settings); e.g. finish '
                   'a study stopped after 2 seeds with --seeds 0 1 --resume')
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    cfg = StudyConfig(
        data_root=a.data_root, out_dir=a.out, img_size=a.img_size,
        patch_size=a.patch_size, num_layers=a.layers, embed_dims=a.dim,
        num_heads=a.heads, epochs=a.epochs, batch_size=a.batch_size,
        lr=a.lr, warmup_epochs=a.warmup_epochs,
        cutting_point=a.cutting_point, mask_ratio=a.mask_ratio,
        seeds=a.seeds, probe_seeds=a.probe_seeds, objectives=a.objectives,
        augments=a.augments, tokenizer=a.tokenizer, vocab_size=a.vocab_size,
        num_crops=a.num_crops, probe_epochs=a.probe_epochs,
        probe_lr=a.probe_lr, probe_views=not a.probe_centre_only,
        knn_k=a.knn_k, knn_temperature=a.knn_temperature,
        threads=a.threads, tokens_dir=a.tokens_dir)
    return run_study(cfg, log=lambda s: print(s, flush=True),
                     resume=a.resume)

