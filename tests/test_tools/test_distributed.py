"""Distributed soundness of MaPeT pre-training on CPU (gloo).

``tools/dist_train.sh`` with 2 processes x batch 2 against 1 process x
batch 4 on ``tests/data/configs/reliability_mapet_resume.py`` (drop path
off, the only randomness that is per rank by design): the same pre-training
losses within float tolerance (rel 1e-5) and weights within a tenth of an
AdamW step per iteration, and each rank trains on a disjoint half of the
data in every epoch. ``test_train_test_tools.py`` checks the same
equivalence with ``foundation_tiny_mapet.py``; this one runs the
exact-resume epoch loop (``ExactResumeEpochBasedTrainLoop``) on the MaPeT
two-stream loss with permutations and colour jitter.
"""
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
import torch

from mapet.utils.checkpoint import safe_torch_load

CONFIG = 'tests/data/configs/reliability_mapet_resume.py'
COMMON = ['model.backbone.drop_path_rate=0.0']


def _run(cmd: List[str], env: Dict[str, str], cwd: Path) -> None:
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


@pytest.fixture(scope='module')
def runs(tmp_path_factory, tools_env, repo_root, demo_data_root, free_port):
    single = tmp_path_factory.mktemp('single')
    _run([
        sys.executable, 'tools/train.py', CONFIG, '--work-dir',
        str(single), '--cfg-options', *COMMON
    ], tools_env, repo_root)
    dist = tmp_path_factory.mktemp('dist')
    _run([
        'bash', 'tools/dist_train.sh', CONFIG, '2', '--work-dir',
        str(dist), '--cfg-options', 'train_dataloader.batch_size=2', *COMMON
    ], dict(tools_env, PORT=str(free_port())), repo_root)
    return single, dist


def _losses(work_dir: Path, rank: int, world_size: int) -> Dict[int, float]:
    """Per-iteration losses written by ``FoundationLossRecorderHook``."""
    with open(work_dir / f'loss_rank{rank}.json') as f:
        record = json.load(f)
    if 'losses' in record:
        assert record['world_size'] == world_size
        if world_size > 1:
            assert record['backend'] == 'gloo'
        record = record['losses']
    return {int(k): v for k, v in record.items()}


def _samples(work_dir: Path, rank: int) -> List[dict]:
    path = work_dir / f'samples_rank{rank}.jsonl'
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_processes_match_one_process(runs):
    single, dist = runs
    ref = _losses(single, 0, 1)
    ranks = [_losses(dist, r, 2) for r in (0, 1)]
    assert sorted(ref) == sorted(ranks[0]) == sorted(ranks[1]) == list(
        range(12))
    # Every rank predicts the same number of targets per image, so the
    # global loss is the mean of the two rank losses.
    for it in ref:
        assert (ranks[0][it] + ranks[1][it]) / 2 == pytest.approx(
            ref[it], rel=1e-5, abs=1e-6), it
    assert any(abs(ranks[0][i] - ranks[1][i]) > 1e-3 for i in ref)
    a = safe_torch_load(str(single / 'iter_12.pth'))['state_dict']
    b = safe_torch_load(str(dist / 'iter_12.pth'))['state_dict']
    # AdamW divides by sqrt(v): for near-zero gradients, reduction-order
    # noise (DDP all-reduce vs one big batch) moves weights by a fraction
    # of a step. Bound it by a tenth of the learning rate per step.
    lr, steps = 2e-3, 12
    for key in a:
        torch.testing.assert_close(
            a[key], b[key], rtol=0, atol=0.1 * lr * steps)


def test_ranks_see_disjoint_shards_every_epoch(runs):
    single, dist = runs
    seen = {}
    for rank in (0, 1):
        for record in _samples(dist, rank):
            seen.setdefault((record['epoch'], rank), []).extend(
                record['sample_idx'])
    for epoch in (0, 1):
        r0, r1 = seen[(epoch, 0)], seen[(epoch, 1)]
        assert len(r0) == len(set(r0)) == 12 == len(r1) == len(set(r1))
        assert not set(r0) & set(r1)
        assert sorted(r0 + r1) == list(range(24))
    # A new shuffle (and so a new split of the data) each epoch.
    assert seen[(0, 0)] != seen[(1, 0)]
    # The same samples as one process with the global batch, per iteration,
    # with the same per-sample permutations (rank-independent randomness).
    ref = {r['iter']: r for r in _samples(single, 0)}
    by_iter = {}
    for rank in (0, 1):
        for record in _samples(dist, rank):
            by_iter.setdefault(record['iter'], {}).update(
                zip(record['sample_idx'], map(tuple,
                                              record['permutation'])))
    for it, record in ref.items():
        assert by_iter[it] == dict(
            zip(record['sample_idx'], map(tuple, record['permutation'])))
