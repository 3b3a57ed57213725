"""End-to-end tests of tools/train.py, tools/test.py and tools/dist_*.sh.

Everything runs on CPU on the demo dataset. The distributed equivalence
uses a tiny MaPeT pre-training (``foundation_tiny_mapet.py``); resume,
evaluation and checkpoint safety use a tiny ViT classifier
(``foundation_tiny_cls.py``, 6 SGD iterations, checkpoints at 3 and 6)
whose single-process run is shared (module fixture).
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
import torch

from mapet.utils.checkpoint import safe_torch_load

CONFIG = 'tests/data/configs/foundation_tiny_cls.py'
PER_RANK_BATCH = 8


def _run(cmd: List[str], env: Dict[str, str], cwd: Path,
         check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f'{cmd} failed ({proc.returncode}):\n'
                             f'{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}')
    return proc


def _spy_env(tools_env: Dict[str, str], repo_root: Path,
             log: Path) -> Dict[str, str]:
    """``tools_env`` that records the run's ``torch.load`` calls in ``log``
    (``tests/helpers/torch_load_spy/sitecustomize.py``)."""
    spy = str(repo_root / 'tests' / 'helpers' / 'torch_load_spy')
    return dict(
        tools_env,
        PYTHONPATH=os.pathsep.join((spy, tools_env['PYTHONPATH'])),
        TORCH_LOAD_SPY_LOG=str(log))


def _record(work_dir: Path, rank: int = 0) -> dict:
    """What FoundationLossRecorderHook (tests/helpers) wrote for ``rank``."""
    with open(work_dir / f'loss_rank{rank}.json') as f:
        return json.load(f)


def _losses(work_dir: Path, rank: int = 0) -> Dict[int, float]:
    return {int(k): v for k, v in _record(work_dir, rank)['losses'].items()}


def _last_val_accuracy(work_dir: Path) -> float:
    scalars = sorted(work_dir.glob('*/vis_data/scalars.json'))[-1]
    records = [json.loads(line) for line in scalars.read_text().splitlines()]
    return [r for r in records if 'accuracy/top1' in r][-1]['accuracy/top1']


@pytest.fixture(scope='module')
def single_run(tmp_path_factory, tools_env, repo_root,
               demo_data_root) -> Path:
    """One process, batch 2b."""
    work_dir = tmp_path_factory.mktemp('single')
    _run([
        sys.executable, 'tools/train.py', CONFIG, '--work-dir',
        str(work_dir), '--cfg-options',
        f'train_dataloader.batch_size={2 * PER_RANK_BATCH}'
    ], tools_env, repo_root)
    return work_dir


MAPET_CONFIG = 'tests/data/configs/foundation_tiny_mapet.py'


@pytest.fixture(scope='module')
def mapet_single_run(tmp_path_factory, tools_env, repo_root,
                     demo_data_root) -> Path:
    """Tiny MaPeT pre-training, one process, batch 2b."""
    work_dir = tmp_path_factory.mktemp('mapet_single')
    _run([
        sys.executable, 'tools/train.py', MAPET_CONFIG, '--work-dir',
        str(work_dir), '--cfg-options',
        f'train_dataloader.batch_size={2 * PER_RANK_BATCH}'
    ], tools_env, repo_root)
    return work_dir


@pytest.fixture(scope='module')
def mapet_dist_run(tmp_path_factory, tools_env, repo_root, demo_data_root,
                   free_port) -> Path:
    """tools/dist_train.sh MAPET_CONFIG 2: two CPU processes, batch b."""
    work_dir = tmp_path_factory.mktemp('mapet_dist')
    run_env = dict(tools_env, PORT=str(free_port()))
    _run([
        'bash', 'tools/dist_train.sh', MAPET_CONFIG, '2', '--work-dir',
        str(work_dir), '--cfg-options',
        f'train_dataloader.batch_size={PER_RANK_BATCH}'
    ], run_env, repo_root)
    return work_dir


def test_dist_train_matches_single_process(mapet_single_run, mapet_dist_run):
    """MaPeT: 2 processes x b == 1 process x 2b (losses and weights).

    Colour jitter and permutations are random but drawn per sample (see the
    config), DefaultSampler's permutation depends on the seed only, and
    rank r takes every other index of it: the two ranks together see
    exactly the single process's batch, and DDP averages their gradients.
    """
    assert _record(mapet_single_run)['world_size'] == 1
    for rank in (0, 1):  # one gloo group of two CPU processes
        record = _record(mapet_dist_run, rank)
        assert (record['world_size'], record['backend']) == (2, 'gloo')
    single = _losses(mapet_single_run)
    ranks = [_losses(mapet_dist_run, r) for r in (0, 1)]
    iters = list(range(5))
    assert sorted(single) == iters == sorted(ranks[0]) == sorted(ranks[1])
    # Each rank logs the mean over its half of the same global batch.
    dist_mean = [(ranks[0][i] + ranks[1][i]) / 2 for i in iters]
    assert dist_mean == pytest.approx([single[i] for i in iters],
                                      rel=1e-4, abs=1e-5)
    # The loss goes down and the ranks really saw different samples.
    assert single[4] < single[0] - 0.3
    assert all(abs(ranks[0][i] - ranks[1][i]) > 1e-3 for i in iters)

    a = safe_torch_load(str(mapet_single_run / 'iter_5.pth'))
    b = safe_torch_load(str(mapet_dist_run / 'iter_5.pth'))
    assert a['state_dict'].keys() == b['state_dict'].keys()
    # AdamW divides by sqrt(v): for weights whose gradients are ~0, float
    # reduction-order noise moves the update by a fraction of one step
    # (lr = 2e-3). Anything but noise would differ by whole steps.
    for key in a['state_dict']:
        torch.testing.assert_close(
            a['state_dict'][key], b['state_dict'][key], rtol=1e-3,
            atol=0.25 * 2e-3)
    assert a['meta']['iter'] == b['meta']['iter'] == 5


def test_resume_auto_is_exact_and_weights_only(single_run, tools_env,
                                               repo_root, tmp_path):
    """--resume auto from iter 3 reproduces iters 3-5; only safe loads."""
    work_dir = tmp_path / 'resume'
    work_dir.mkdir()
    ckpt = work_dir / 'iter_3.pth'
    shutil.copy(single_run / 'iter_3.pth', ckpt)
    (work_dir / 'last_checkpoint').write_text(str(ckpt))
    spy_log = tmp_path / 'spy.json'
    proc = _run([
        sys.executable, 'tools/train.py', CONFIG, '--work-dir',
        str(work_dir), '--resume', '--cfg-options',
        f'train_dataloader.batch_size={2 * PER_RANK_BATCH}'
    ], _spy_env(tools_env, repo_root, spy_log), repo_root)
    log = proc.stdout + proc.stderr
    assert 'resumed epoch: 0, iter: 3' in log
    assert 'Could not safely load' not in log  # mmengine's fallback
    assert 'weights_only=False' not in log

    calls = json.loads(spy_log.read_text())
    assert any(c['file'] == str(ckpt) for c in calls), calls
    assert calls and all(c['weights_only'] is True for c in calls), calls

    resumed = _losses(work_dir)
    full = _losses(single_run)
    assert sorted(resumed) == [3, 4, 5]
    assert [resumed[i] for i in (3, 4, 5)] == pytest.approx(
        [full[i] for i in (3, 4, 5)], rel=1e-5, abs=1e-6)


def test_test_py_load_from_is_weights_only(single_run, tools_env, repo_root,
                                           tmp_path):
    """tools/test.py loads the checkpoint safely and reproduces val."""
    spy_log = tmp_path / 'spy.json'
    metrics_file = tmp_path / 'metrics.json'
    ckpt = single_run / 'iter_6.pth'
    _run([
        sys.executable, 'tools/test.py', CONFIG,
        str(ckpt), '--work-dir',
        str(tmp_path / 'w'), '--out',
        str(metrics_file), '--out-item', 'metrics'
    ], _spy_env(tools_env, repo_root, spy_log), repo_root)
    calls = json.loads(spy_log.read_text())
    assert [c['weights_only'] for c in calls if c['file'] == str(ckpt)
            ] == [True], calls
    assert all(c['weights_only'] is True for c in calls), calls
    metrics = json.loads(metrics_file.read_text())
    assert metrics['accuracy/top1'] == pytest.approx(
        _last_val_accuracy(single_run))


def test_dist_test_matches_single_process(single_run, tools_env, repo_root,
                                          tmp_path, free_port):
    """tools/dist_test.sh with 2 CPU processes gives the same metrics."""
    metrics_file = tmp_path / 'metrics.json'
    run_env = dict(tools_env, PORT=str(free_port()))
    _run([
        'bash', 'tools/dist_test.sh', CONFIG,
        str(single_run / 'iter_6.pth'), '2', '--work-dir',
        str(tmp_path / 'w'), '--out',
        str(metrics_file), '--out-item', 'metrics'
    ], run_env, repo_root)
    metrics = json.loads(metrics_file.read_text())
    assert metrics['accuracy/top1'] == pytest.approx(
        _last_val_accuracy(single_run))


class _OpenOnLoad:
    """Unpickling this calls ``open(path, 'w')``: creates a file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, 'w'))


def test_test_py_refuses_crafted_checkpoint(tools_env, repo_root, tmp_path,
                                            demo_data_root):
    """A checkpoint with a code-executing payload is refused, nothing runs."""
    marker = tmp_path / 'pwned'
    ckpt = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': _OpenOnLoad(str(marker))}, ckpt)
    proc = _run([
        sys.executable, 'tools/test.py', CONFIG,
        str(ckpt), '--work-dir',
        str(tmp_path / 'w')
    ], tools_env, repo_root, check=False)
    assert proc.returncode != 0
    assert 'UnsafeCheckpointError' in proc.stderr
    # `open` pickles as io.open; the message names it.
    assert "contains a pickled object of type 'io.open'" in proc.stderr
    assert not marker.exists()


def test_dist_train_usage(repo_root, tools_env):
    proc = _run(['bash', 'tools/dist_train.sh', CONFIG], tools_env, repo_root,
                check=False)
    assert proc.returncode == 2
    assert 'usage: ' in proc.stderr and 'CONFIG GPUS' in proc.stderr
