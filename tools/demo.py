"""The main job: MaPeT end to end on the embedded demo photographs (CPU).

``make demo`` runs this script. Each step is the real tool a user runs at
ImageNet scale, called as a subprocess with its own progress bar or log:

1. ``tools/dataset_converters/make_demo_dataset.py``: 8 classes of crops of
   scikit-image's bundled photographs -> ``data/demo`` (no download);
2. ``tools/tokenizers/fit_kclip_codebook.py``: k-CLIP codebook (k-means over
   CLIP RN50 layer4 features). No weights can be fetched here, so the CLIP
   tower is RANDOMLY INITIALISED (seeded): the tokens are k-means clusters of
   random conv features, not CLIP semantics. Real use: ``--pretrained openai``
   here and in step 3;
3. ``tools/tokenizers/extract_tokens.py``: token store of the train split;
4. ``tools/train.py configs/demo/mapet_vit-t6-p16_demo.py``: MaPeT
   pre-training of a 6-layer ViT on those tokens;
5. ``tools/train.py`` with ``configs/demo/vit-t6-p16_linear_demo.py``:
   linear probes of the pre-trained backbone and of a randomly initialised
   one, one per probe seed (``--probe-seeds``, default 0 1; for the random
   backbone the seed also draws its weights). The console shows the
   ``PretrainedLoadCheckHook`` report (every backbone tensor loaded and
   verified; only the pre-training's ``mask_token`` left over) after
   mmengine's generic "do not match exactly" warning. ``tools/test.py``
   re-scores the first pre-trained probe from its saved checkpoint;
6. ``tools/analysis_tools/knn_eval.py`` with
   ``configs/demo/vit-t6-p16_knn_demo.py``: weighted k-NN (k = 20,
   T = 0.07, no trained parameter) of both backbones on the same val split;
7. ``tools/visualization/codebook_patches.py`` (its title says the tokenizer
   tower is random) and a loss-curve plot.

Every number printed is computed by this run; the summary (val size, chance
level, seeds, linear probe mean +- std and per seed, k-NN) also goes to
``work_dirs/demo/summary.json``. One pre-training seed (the config's
``randomness.seed = 0``): the demo shows the pipeline, the multi-seed
evidence is docs/evidence.md.

Usage (from the repository root; paths are fixed, as in the demo configs)::

    python tools/demo.py [--probe-seeds 0 1]

``python tools/demo.py --print-settings`` prints the fixed settings the demo
configs must agree with (JSON) and exits.
"""
import argparse
import glob
import json
import math
import os
import os.path as osp
import statistics
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _read_load_report(log_file: str) -> Optional[Dict]:
    from mapet.utils.run_logs import read_load_report
    return read_load_report(log_file)


def run(cmd: List[str], log_file: Optional[str] = None) -> float:
    """Run one tool from the repository root (``mapet.utils.run_logs``;
    imported here so that ``--print-settings`` stays light)."""
    from mapet.utils import run_logs
    return run_logs.run(cmd, log_file, cwd=REPO)
PRETRAIN_CFG = 'configs/demo/mapet_vit-t6-p16_demo.py'
PROBE_CFG = 'configs/demo/vit-t6-p16_linear_demo.py'
KNN_CFG = 'configs/demo/vit-t6-p16_knn_demo.py'
# Must agree with the demo configs: CLIP input 192 px -> 6x6 token grid,
# matching the ViT's 96 px / patch 16; vocabulary = number of centroids.
CLIP_MODEL = 'RN50'
CLIP_INPUT = 192
NUM_CENTROIDS = 128
SEED = 0
PRETRAIN_SEEDS = (0, )  # the demo pre-training config's randomness.seed
PROBE_SEEDS = (0, 1)
# The demo configs read their data and token store from these paths.
WORK_DIR = 'work_dirs/demo'
DATA_ROOT = 'data/demo'


def banner(text: str) -> None:
    print(f'\n{"=" * 78}\n{text}\n{"=" * 78}', flush=True)


def last_checkpoint(work_dir: str) -> str:
    """The newest ``epoch_<n>.pth`` of a training run (by epoch number)."""
    ckpts = sorted(glob.glob(osp.join(REPO, work_dir, 'epoch_*.pth')),
                   key=lambda p: int(p.rsplit('_', 1)[1][:-4]))
    if not ckpts:
        raise SystemExit(f'training wrote no checkpoint in {work_dir}')
    return ckpts[-1]


def read_scalars(work_dir: str) -> List[Dict]:
    """Per-iteration training scalars that mmengine's LocalVisBackend wrote."""
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                      'scalars.json')))
    if not files:
        raise SystemExit(f'No scalars.json under {work_dir}: did training '
                         'log anything?')
    with open(files[-1], encoding='utf-8') as f:
        return [json.loads(line) for line in f if line.strip()]


def read_test_metrics(work_dir: str) -> Dict:
    """Metrics that ``tools/test.py`` wrote (``<timestamp>/<timestamp>.json``)."""
    files = sorted(glob.glob(osp.join(work_dir, '*', '*.json')))
    files = [f for f in files if not f.endswith('scalars.json')]
    if not files:
        raise SystemExit(f'No test metrics under {work_dir}.')
    with open(files[-1], encoding='utf-8') as f:
        return json.load(f)


def epoch_mean(rows: List[Dict], key: str, epoch: int,
               iters_per_epoch: int) -> float:
    values = [r[key] for r in rows if key in r and
              (r['iter'] - 1) // iters_per_epoch == epoch]
    return sum(values) / len(values)


def plot_loss_curve(rows: List[Dict], out: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = [r for r in rows if 'loss' in r]
    iters = [r['iter'] for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    ax[0].plot(iters, [r['loss'] for r in rows], color='tab:blue')
    ax[0].set(xlabel='iteration', ylabel='cross-entropy',
              title='MaPeT pre-training loss (demo)')
    ax[1].plot(iters, [r['accuracy'] for r in rows], color='tab:green')
    ax[1].set(xlabel='iteration', ylabel='%',
              title='target-token accuracy (query stream)')
    for a in ax:
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def read_final_val(work_dir: str, key: str = 'accuracy/top1') -> float:
    """The validation metric a training run logged at its end."""
    rows = [r for r in read_scalars(work_dir) if key in r]
    if not rows:
        raise SystemExit(f'No {key} in the scalars of {work_dir}: did the '
                         'probe validate at its last epoch?')
    return float(rows[-1][key])


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample std (0 for one value)."""
    values = list(values)
    return (statistics.mean(values),
            statistics.stdev(values) if len(values) > 1 else 0.0)


def count_lines(path: str) -> int:
    with open(path, encoding='utf-8') as f:
        return sum(1 for line in f if line.strip())


def settings() -> Dict[str, object]:
    """The fixed settings the demo configs must agree with."""
    return dict(
        CLIP_MODEL=CLIP_MODEL,
        CLIP_INPUT=CLIP_INPUT,
        NUM_CENTROIDS=NUM_CENTROIDS,
        SEED=SEED,
        PRETRAIN_SEEDS=list(PRETRAIN_SEEDS),
        PROBE_SEEDS=list(PROBE_SEEDS),
        WORK_DIR=WORK_DIR,
        DATA_ROOT=DATA_ROOT,
        PRETRAIN_CFG=PRETRAIN_CFG,
        PROBE_CFG=PROBE_CFG,
        KNN_CFG=KNN_CFG)


TOKENIZER_TITLE = (
    'k-CLIP tokens of a RANDOMLY INITIALISED CLIP RN50 (no weights offline):'
    '\\nclusters of random conv features, not CLIP semantics. '
    'Top {top} tokens, demo train split.')


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--print-settings',
        action='store_true',
        help='print the fixed settings (JSON) the demo configs must agree '
        'with, and exit')
    parser.add_argument(
        '--probe-seeds',
        type=int,
        nargs='+',
        default=list(PROBE_SEEDS),
        help='linear-probe seeds (randomness.seed) per backbone; default '
        '%(default)s')
    args = parser.parse_args(argv)
    if args.print_settings:
        print(json.dumps(settings(), indent=2))
        return
    probe_seeds = list(dict.fromkeys(args.probe_seeds))
    py = sys.executable
    work, data = WORK_DIR, DATA_ROOT
    os.makedirs(osp.join(REPO, work), exist_ok=True)
    timings: Dict[str, float] = {}
    t0 = time.time()

    banner('1/7 demo dataset (scikit-image photographs, no download)')
    timings['dataset'] = run([
        py, 'tools/dataset_converters/make_demo_dataset.py', '--out', data
    ])
    n_train = count_lines(osp.join(REPO, data, 'meta', 'train.txt'))
    n_val = count_lines(osp.join(REPO, data, 'meta', 'val.txt'))
    num_classes = count_lines(osp.join(REPO, data, 'meta', 'classes.txt'))
    chance = 100.0 / num_classes

    codebook = osp.join(work, f'kclip_{CLIP_MODEL.lower()}_k{NUM_CENTROIDS}.npz')
    banner('2/7 k-CLIP codebook: k-means over CLIP RN50 layer4 features\n'
           '!!! The CLIP tower is RANDOMLY INITIALISED (no weights can be '
           'fetched here):\n!!! tokens are clusters of random conv features. '
           'For real use replace\n!!! `--pretrained none` by `--pretrained '
           'openai` in both fit_kclip_codebook.py and\n!!! extract_tokens.py '
           '(and RN50 by RN50x64 at 448 px).')
    timings['fit_codebook'] = run([
        py, 'tools/tokenizers/fit_kclip_codebook.py', '--image-folder',
        osp.join(data, 'train'), '--clip-model', CLIP_MODEL, '--pretrained',
        'none', '--input-size', str(CLIP_INPUT), '--num-centroids',
        str(NUM_CENTROIDS), '--sample-fraction', '0.5', '--nredo', '1',
        '--seed', str(SEED), '--work-dir',
        osp.join(work, 'kclip_features'), '--out', codebook
    ])

    store = osp.join(work, 'tokens_train')
    banner('3/7 token store of the train split (same random CLIP tower: '
           '`--pretrained openai` for real use)')
    timings['extract_tokens'] = run([
        py, 'tools/tokenizers/extract_tokens.py', '--image-folder',
        osp.join(data, 'train'), '--codebook', codebook, '--clip-model',
        CLIP_MODEL, '--pretrained', 'none', '--input-size', str(CLIP_INPUT),
        '--seed', str(SEED), '--out', store
    ])

    pre_dir = osp.join(work, 'pretrain')
    banner(f'4/7 MaPeT pre-training ({PRETRAIN_CFG}, seed '
           f'{PRETRAIN_SEEDS[0]})')
    timings['pretrain'] = run([
        py, 'tools/train.py', PRETRAIN_CFG, '--work-dir', pre_dir,
        '--cfg-options', f'randomness.seed={PRETRAIN_SEEDS[0]}'
    ], log_file=osp.join(REPO, work, 'pretrain.log'))
    pretrained = osp.relpath(last_checkpoint(pre_dir), REPO)

    linear: Dict[str, List[float]] = {}
    load_report = None
    retest = None
    for name, init in (('pretrained', pretrained), ('random_init', None)):
        linear[name] = []
        init_opt = (f'model.backbone.init_cfg.checkpoint={init}'
                    if init else 'model.backbone.init_cfg=None')
        for seed in probe_seeds:
            banner(f'5/7 linear probe, {name.replace("_", " ")} backbone, '
                   f'probe seed {seed} ({PROBE_CFG})')
            probe_dir = osp.join(work, f'probe_{name}_s{seed}')
            log_file = osp.join(REPO, work, f'probe_{name}_s{seed}_train.log')
            common = ['--cfg-options', init_opt, f'randomness.seed={seed}']
            timings[f'probe_{name}_s{seed}_train'] = run(
                [py, 'tools/train.py', PROBE_CFG, '--work-dir', probe_dir] +
                common, log_file=log_file)
            linear[name].append(read_final_val(osp.join(REPO, probe_dir)))
            if init is None:
                continue
            report = _read_load_report(log_file)
            if report is None:
                raise SystemExit(
                    'the probe log has no PretrainedLoadCheckHook report: '
                    f'were the pre-trained weights loaded? ({log_file})')
            print(f'verified load: {report["loaded_tensors"]} backbone '
                  f'tensors from {report["checkpoint"]} (missing '
                  f'{report["missing"]}; unexpected, ignored: '
                  f'{report["unexpected"]} = the pre-training-only mask '
                  'token that mmengine\'s "do not match exactly" warning '
                  'names)', flush=True)
            load_report = load_report or report
            if retest is None:
                # the saved probe re-scored by tools/test.py
                test_dir = osp.join(work, f'probe_{name}_s{seed}_test')
                timings[f'probe_{name}_s{seed}_test'] = run(
                    [py, 'tools/test.py', PROBE_CFG,
                     osp.relpath(last_checkpoint(probe_dir), REPO),
                     '--work-dir', test_dir] + common,
                    log_file=osp.join(REPO, work,
                                      f'probe_{name}_s{seed}_test.log'))
                retest = read_test_metrics(
                    osp.join(REPO, test_dir))['accuracy/top1']
                if abs(retest - linear[name][-1]) > 1e-3:
                    print(f'WARNING: tools/test.py scores the saved probe '
                          f'{retest:.2f} %, training ended at '
                          f'{linear[name][-1]:.2f} %', flush=True)

    knn: Dict[str, Dict] = {}
    for name, ckpt in (('pretrained', pretrained), ('random_init', 'none')):
        banner(f'6/7 weighted k-NN (k = 20, T = 0.07), '
               f'{name.replace("_", " ")} backbone ({KNN_CFG})')
        out = osp.join(work, f'knn_{name}.json')
        timings[f'knn_{name}'] = run(
            [py, 'tools/analysis_tools/knn_eval.py', KNN_CFG, '--checkpoint',
             ckpt, '--seed', str(SEED), '--out', out],
            log_file=osp.join(REPO, work, f'knn_{name}.log'))
        with open(osp.join(REPO, out), encoding='utf-8') as f:
            knn[name] = json.load(f)

    banner('7/7 pictures: codebook patches and loss curve')
    patches_png = osp.join(work, 'codebook_patches.png')
    timings['codebook_patches'] = run([
        py, 'tools/visualization/codebook_patches.py', '--store', store,
        '--image-root', osp.join(data, 'train'), '--top', '8', '--title',
        TOKENIZER_TITLE.format(top=8), '--out', patches_png
    ])
    rows = read_scalars(osp.join(REPO, pre_dir))
    loss_png = osp.join(work, 'loss_curve.png')
    plot_loss_curve(rows, osp.join(REPO, loss_png))

    loss_rows = [r for r in rows if 'loss' in r]
    num_epochs = max(int(r['epoch']) for r in rows if 'epoch' in r) \
        if any('epoch' in r for r in rows) else None
    iters_per_epoch = (loss_rows[-1]['iter'] // num_epochs
                       if num_epochs else len(loss_rows))
    lin = {k: mean_std(v) for k, v in linear.items()}
    knn_top1 = {k: v['metrics']['knn/top1'] for k, v in knn.items()}
    summary = {
        'data': {
            'root': data,
            'n_train': n_train,
            'n_val': n_val,
            'num_classes': num_classes,
            'chance_top1': chance,
            'points_per_val_image': 100.0 / n_val,
        },
        'seeds': {
            'pretrain': list(PRETRAIN_SEEDS),
            'probe': probe_seeds,
            'note': 'one pre-training run; each probe seed trains a new '
            'linear head (for the random backbone it also draws the '
            'backbone). Multi-seed pre-training evidence: docs/evidence.md',
        },
        'pretrain': {
            'config': PRETRAIN_CFG,
            'checkpoint': pretrained,
            'iterations': loss_rows[-1]['iter'],
            'loss_first_iter': loss_rows[0]['loss'],
            'loss_last_iter': loss_rows[-1]['loss'],
            'loss_first_epoch_mean': epoch_mean(rows, 'loss', 0,
                                                iters_per_epoch),
            'loss_last_epoch_mean': epoch_mean(
                rows, 'loss', (loss_rows[-1]['iter'] - 1) // iters_per_epoch,
                iters_per_epoch),
            'token_accuracy_last_iter': loss_rows[-1].get('accuracy'),
            'chance_loss_ln_vocab': math.log(NUM_CENTROIDS),
        },
        'pretrained_load_check': load_report,
        'tokenizer': {
            'clip_model': CLIP_MODEL,
            'pretrained': None,
            'note': 'randomly initialised CLIP tower (no download possible)',
            'input_size': CLIP_INPUT,
            'num_centroids': NUM_CENTROIDS,
            'codebook': codebook,
            'token_store': store,
        },
        'linear_probe_top1': {
            'config': PROBE_CFG,
            'pretrained': lin['pretrained'][0],
            'random_init': lin['random_init'][0],
            'difference': lin['pretrained'][0] - lin['random_init'][0],
            'std_over_probe_seeds': {k: v[1] for k, v in lin.items()},
            'per_probe_seed': linear,
            'retest_first_pretrained_probe': retest,
        },
        'knn_top1': {
            'config': KNN_CFG,
            'k': knn['pretrained']['k'],
            'temperature': knn['pretrained']['temperature'],
            'pretrained': knn_top1['pretrained'],
            'random_init': knn_top1['random_init'],
            'difference': knn_top1['pretrained'] - knn_top1['random_init'],
            'random_init_seed': SEED,
        },
        'files': {
            'loss_curve': loss_png,
            'codebook_patches': patches_png,
        },
        'seconds': {k: round(v, 1) for k, v in timings.items()},
        'total_seconds': round(time.time() - t0, 1),
    }
    summary_path = osp.join(REPO, work, 'summary.json')
    with open(summary_path, 'w', encoding='utf-8') as f:
        json.dump(summary, f, indent=2)

    p, lp, kn = summary['pretrain'], summary['linear_probe_top1'], \
        summary['knn_top1']
    banner('Summary (every number computed in this run)')
    print(f'data: {data} val split, n = {n_val} images ({n_train} train), '
          f'{num_classes} classes, chance {chance:.1f} %; one val image = '
          f'{100.0 / n_val:.2f} points')
    print(f'seeds: pre-training {len(PRETRAIN_SEEDS)} '
          f'({", ".join(map(str, PRETRAIN_SEEDS))}), linear probe '
          f'{len(probe_seeds)} per backbone '
          f'({", ".join(map(str, probe_seeds))})')
    print(f'tokenizer: k-CLIP of a RANDOMLY INITIALISED CLIP {CLIP_MODEL} '
          f'(K = {NUM_CENTROIDS}): random conv features, not CLIP semantics')
    print(f'MaPeT pre-training, {p["iterations"]} iterations: loss '
          f'{p["loss_first_epoch_mean"]:.3f} (first epoch mean) -> '
          f'{p["loss_last_epoch_mean"]:.3f} (last epoch mean); chance = '
          f'ln {NUM_CENTROIDS} = {p["chance_loss_ln_vocab"]:.3f}; '
          f'token accuracy at the end {p["token_accuracy_last_iter"]:.1f} %')
    if load_report:
        print(f'verified load: {load_report["loaded_tensors"]} backbone '
              f'tensors from {load_report["checkpoint"]} (missing '
              f'{load_report["missing"]}, unexpected '
              f'{load_report["unexpected"]})')
    seeds_txt = f'{len(probe_seeds)} seed' + ('s' if len(probe_seeds) > 1
                                              else '')
    head = f'linear probe ({seeds_txt})'
    print(f'{"top-1 % on demo val":<34}{head:>28}'
          f'{"k-NN (k=%d, T=%g)" % (kn["k"], kn["temperature"]):>22}')
    for name, label in (('pretrained', '  MaPeT pre-trained backbone'),
                        ('random_init', '  randomly initialised backbone')):
        m, sd = lin[name]
        per = '/'.join(f'{v:.1f}' for v in linear[name])
        print(f'{label:<34}{f"{m:.2f} +- {sd:.2f} [{per}]":>28}'
              f'{kn[name]:>22.2f}')
    print(f'{"  difference":<34}{lp["difference"]:>+28.2f}'
          f'{kn["difference"]:>+22.2f}')
    print(f'{"  chance":<34}{chance:>28.2f}{chance:>22.2f}')
    print(f'files: {summary_path}, {loss_png}, {patches_png}')
    print(f'total time: {summary["total_seconds"]:.0f} s')


if __name__ == '__main__':
    main()
