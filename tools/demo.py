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
5. ``tools/train.py`` + ``tools/test.py`` with
   ``configs/demo/vit-t6-p16_linear_demo.py``: linear probes of the
   pre-trained backbone and of a randomly initialised one;
6. ``tools/visualization/codebook_patches.py`` and a loss-curve plot.

Every number printed is computed by this run; the summary also goes to
``work_dirs/demo/summary.json``.

Usage (from the repository root; paths are fixed, as in the demo configs)::

    python tools/demo.py

``python tools/demo.py --print-settings`` prints the fixed settings the demo
configs must agree with (JSON) and exits.
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, List, Optional

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PRETRAIN_CFG = 'configs/demo/mapet_vit-t6-p16_demo.py'
PROBE_CFG = 'configs/demo/vit-t6-p16_linear_demo.py'
# Must agree with the demo configs: CLIP input 192 px -> 6x6 token grid,
# matching the ViT's 96 px / patch 16; vocabulary = number of centroids.
CLIP_MODEL = 'RN50'
CLIP_INPUT = 192
NUM_CENTROIDS = 128
SEED = 0
# The demo configs read their data and token store from these paths.
WORK_DIR = 'work_dirs/demo'
DATA_ROOT = 'data/demo'


def banner(text: str) -> None:
    print(f'\n{"=" * 78}\n{text}\n{"=" * 78}', flush=True)


def run(cmd: List[str], log_file: Optional[str] = None) -> float:
    """Run one tool; stream its output (and tee it to ``log_file``)."""
    print('$ ' + ' '.join(cmd), flush=True)
    env = dict(os.environ)
    env.setdefault('PYTHONWARNINGS', 'ignore')
    start = time.time()
    with subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1) as proc:
        log = open(log_file, 'w', encoding='utf-8') if log_file else None
        try:
            for line in proc.stdout:
                if log is not None:
                    log.write(line)
                # Keep the console readable: progress bars and mmengine's
                # per-iteration lines, not the environment dump.
                if log is None or 'Epoch(' in line or 'accuracy' in line \
                        or 'Error' in line or 'WARNING' in line:
                    sys.stdout.write(line)
                    sys.stdout.flush()
        finally:
            if log is not None:
                log.close()
    if proc.returncode != 0:
        hint = f' (full log: {log_file})' if log_file else ''
        raise SystemExit(f'demo step failed with exit code '
                         f'{proc.returncode}: {" ".join(cmd)}{hint}')
    return time.time() - start


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


def settings() -> Dict[str, object]:
    """The fixed settings the demo configs must agree with."""
    return dict(
        CLIP_MODEL=CLIP_MODEL,
        CLIP_INPUT=CLIP_INPUT,
        NUM_CENTROIDS=NUM_CENTROIDS,
        SEED=SEED,
        WORK_DIR=WORK_DIR,
        DATA_ROOT=DATA_ROOT,
        PRETRAIN_CFG=PRETRAIN_CFG,
        PROBE_CFG=PROBE_CFG)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--print-settings',
        action='store_true',
        help='print the fixed settings (JSON) the demo configs must agree '
        'with, and exit')
    if parser.parse_args().print_settings:
        print(json.dumps(settings(), indent=2))
        return
    py = sys.executable
    work, data = WORK_DIR, DATA_ROOT
    os.makedirs(osp.join(REPO, work), exist_ok=True)
    timings: Dict[str, float] = {}
    t0 = time.time()

    banner('1/6 demo dataset (scikit-image photographs, no download)')
    timings['dataset'] = run([
        py, 'tools/dataset_converters/make_demo_dataset.py', '--out', data
    ])

    codebook = osp.join(work, f'kclip_{CLIP_MODEL.lower()}_k{NUM_CENTROIDS}.npz')
    banner('2/6 k-CLIP codebook: k-means over CLIP RN50 layer4 features\n'
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
    banner('3/6 token store of the train split (same random CLIP tower: '
           '`--pretrained openai` for real use)')
    timings['extract_tokens'] = run([
        py, 'tools/tokenizers/extract_tokens.py', '--image-folder',
        osp.join(data, 'train'), '--codebook', codebook, '--clip-model',
        CLIP_MODEL, '--pretrained', 'none', '--input-size', str(CLIP_INPUT),
        '--seed', str(SEED), '--out', store
    ])

    pre_dir = osp.join(work, 'pretrain')
    banner(f'4/6 MaPeT pre-training ({PRETRAIN_CFG})')
    timings['pretrain'] = run([
        py, 'tools/train.py', PRETRAIN_CFG, '--work-dir', pre_dir
    ], log_file=osp.join(REPO, work, 'pretrain.log'))
    pretrained = osp.relpath(last_checkpoint(pre_dir), REPO)

    probes = {}
    for name, init in (('pretrained', pretrained), ('random_init', None)):
        banner(f'5/6 linear probe, {name.replace("_", " ")} backbone '
               f'({PROBE_CFG})')
        probe_dir = osp.join(work, f'probe_{name}')
        init_opt = (f'model.backbone.init_cfg.checkpoint={init}'
                    if init else 'model.backbone.init_cfg=None')
        common = ['--cfg-options', init_opt]
        timings[f'probe_{name}_train'] = run(
            [py, 'tools/train.py', PROBE_CFG, '--work-dir', probe_dir] +
            common,
            log_file=osp.join(REPO, work, f'probe_{name}_train.log'))
        probe_ckpt = last_checkpoint(probe_dir)
        test_dir = osp.join(work, f'probe_{name}_test')
        timings[f'probe_{name}_test'] = run(
            [py, 'tools/test.py', PROBE_CFG,
             osp.relpath(probe_ckpt, REPO), '--work-dir', test_dir] + common,
            log_file=osp.join(REPO, work, f'probe_{name}_test.log'))
        probes[name] = read_test_metrics(osp.join(REPO, test_dir))

    banner('6/6 pictures: codebook patches and loss curve')
    patches_png = osp.join(work, 'codebook_patches.png')
    timings['codebook_patches'] = run([
        py, 'tools/visualization/codebook_patches.py', '--store', store,
        '--image-root', osp.join(data, 'train'), '--top', '8', '--out',
        patches_png
    ])
    rows = read_scalars(osp.join(REPO, pre_dir))
    loss_png = osp.join(work, 'loss_curve.png')
    plot_loss_curve(rows, osp.join(REPO, loss_png))

    loss_rows = [r for r in rows if 'loss' in r]
    num_epochs = max(int(r['epoch']) for r in rows if 'epoch' in r) \
        if any('epoch' in r for r in rows) else None
    iters_per_epoch = (loss_rows[-1]['iter'] // num_epochs
                       if num_epochs else len(loss_rows))
    acc_key = 'accuracy/top1'
    summary = {
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
            'chance_loss_ln_vocab': __import__('math').log(NUM_CENTROIDS),
        },
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
            'pretrained': probes['pretrained'][acc_key],
            'random_init': probes['random_init'][acc_key],
            'difference': probes['pretrained'][acc_key] -
            probes['random_init'][acc_key],
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

    p, lp = summary['pretrain'], summary['linear_probe_top1']
    banner('Summary (every number computed in this run)')
    print(f'MaPeT pre-training, {p["iterations"]} iterations: loss '
          f'{p["loss_first_epoch_mean"]:.3f} (first epoch mean) -> '
          f'{p["loss_last_epoch_mean"]:.3f} (last epoch mean); chance = '
          f'ln {NUM_CENTROIDS} = {p["chance_loss_ln_vocab"]:.3f}; '
          f'token accuracy at the end {p["token_accuracy_last_iter"]:.1f} %')
    print(f'{"linear probe (demo val, 8 classes)":<40}{"top-1 %":>10}')
    print(f'{"  MaPeT pre-trained backbone":<40}{lp["pretrained"]:>10.2f}')
    print(f'{"  randomly initialised backbone":<40}{lp["random_init"]:>10.2f}')
    print(f'{"  difference":<40}{lp["difference"]:>+10.2f}')
    print(f'files: {summary_path}, {loss_png}, {patches_png}')
    print(f'total time: {summary["total_seconds"]:.0f} s')


if __name__ == '__main__':
    main()
