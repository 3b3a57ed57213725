"""Exact resume: SIGKILL mid-epoch, ``--resume auto``, same bits.

Workload: ``tests/data/configs/reliability_mapet_resume.py`` (tiny MaPeT,
24 demo images, 2 epochs x 6 iterations, shuffling, colour jitter, random
permutations, drop path, warmup + cosine lr, a checkpoint every 4
iterations). The reference run is uninterrupted with ``num_workers=0``;
the interrupted run uses 2 *persistent* workers and is killed twice with
SIGKILL: halfway through writing ``iter_8.pth`` (the temporary file
``MaPeTRunner`` saves into; resume falls back to ``iter_4.pth``, iterations
5-8 are redone), then before iteration 11
(resume from ``iter_8.pth``, iterations 9-10 are redone), each time
resumed with ``--resume``. Final parameters, optimizer state, every logged
loss, and every (sample, permutation) pair must be bitwise identical.
"""
import json
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch
from mmengine.dataset import BaseDataset

from mapet.datasets.transforms.per_sample_rng import (PerSampleRNG,
                                                      reset_sample_rng_state,
                                                      set_sample_rng_state)
from mapet.utils.checkpoint import load_checkpoint_file, verify_checkpoint

CONFIG = 'tests/data/configs/reliability_mapet_resume.py'
KILL_AT = 10  # iterations done when the process dies (checkpoint at 8)
WORKERS = [
    'train_dataloader.num_workers=2',
    'train_dataloader.persistent_workers=True'
]


def _train(repo_root: Path, env: Dict[str, str], work_dir: Path,
           *extra: str, **env_extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, 'tools/train.py', CONFIG, '--work-dir',
        str(work_dir), *extra
    ]
    return subprocess.run(
        cmd, cwd=repo_root, env=dict(env, **env_extra), capture_output=True,
        text=True, timeout=240)


def _check(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


def _logged_losses(work_dir: Path) -> List[Dict[int, float]]:
    """One {step: loss} per run (timestamped log dir) in ``work_dir``."""
    runs = []
    for path in sorted(work_dir.glob('*/vis_data/scalars.json')):
        records = [json.loads(line) for line in path.read_text().split('\n')
                   if line.strip()]
        runs.append({r['step']: r['loss'] for r in records if 'loss' in r})
    return runs


def _samples(work_dir: Path) -> List[dict]:
    path = work_dir / 'samples_rank0.jsonl'
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope='module')
def reference(tmp_path_factory, tools_env, repo_root, demo_data_root) -> Path:
    work_dir = tmp_path_factory.mktemp('uninterrupted')
    _check(_train(repo_root, tools_env, work_dir))
    return work_dir


@pytest.fixture(scope='module')
def interrupted(tmp_path_factory, tools_env, repo_root, demo_data_root):
    """Two kills: during the write of iter_8.pth, then before iteration 11."""
    work_dir = tmp_path_factory.mktemp('killed')
    # 1. SIGKILL halfway through writing iter_8.pth (iterations 1-8 done).
    first = _train(repo_root, tools_env, work_dir, '--cfg-options', *WORKERS,
                   MAPET_KILL_WRITE_MATCH='iter_8.pth')
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    assert not (work_dir / 'iter_8.pth').exists()
    partial = list(work_dir.glob('.iter_8.pth.tmp-*'))
    assert len(partial) == 1 and partial[0].stat().st_size > 0
    # 2. Resume (from iter_4, the newest intact checkpoint), die before
    #    iteration 11 (iter_8 written this time).
    second = _train(repo_root, tools_env, work_dir, '--resume',
                    '--cfg-options', f'custom_hooks.0.at_iter={KILL_AT}',
                    *WORKERS)
    assert second.returncode == -signal.SIGKILL, second.stderr[-3000:]
    assert not (work_dir / 'iter_12.pth').exists()
    # MaPeTRunner removed the killed save's temporary file when it started.
    assert not list(work_dir.glob('.iter_8.pth.tmp-*'))
    assert f'Removing {partial[0]}: a checkpoint save that was killed' in \
        second.stdout + second.stderr
    assert f'Auto-resuming from {work_dir / "iter_4.pth"}.' in \
        second.stdout + second.stderr
    # 3. Resume from iter_8 and finish.
    third = _train(repo_root, tools_env, work_dir, '--resume', '--cfg-options',
                   *WORKERS)
    _check(third)
    return work_dir, (second.stdout + second.stderr,
                      third.stdout + third.stderr)


def test_resume_after_sigkill_is_bit_exact(reference, interrupted):
    work_dir, (second_log, third_log) = interrupted
    assert 'Resuming epoch 0 at batch 4/6 (iteration 4)' in second_log
    assert 'Resuming epoch 1 at batch 2/6 (iteration 8)' in third_log

    assert f'Auto-resuming from {work_dir / "iter_8.pth"}.' in third_log
    # Every checkpoint kept matches its sidecar; no sidecar outlives its
    # checkpoint (max_keep_ckpts=2 deletes old ones).
    kept = sorted(p.name for p in work_dir.glob('*.pth'))
    assert 'iter_12.pth' in kept and len(kept) <= 2, kept
    assert sorted(p.name[:-len('.sha256')]
                  for p in work_dir.glob('*.pth.sha256')) == kept
    assert all(verify_checkpoint(str(work_dir / name)) for name in kept)

    ref = load_checkpoint_file(str(reference / 'iter_12.pth'))
    got = load_checkpoint_file(str(work_dir / 'iter_12.pth'))
    assert ref['state_dict'].keys() == got['state_dict'].keys()
    for key, value in ref['state_dict'].items():
        assert torch.equal(value, got['state_dict'][key]), key
    ref_state = ref['optimizer']['state']
    got_state = got['optimizer']['state']
    for pid, slots in ref_state.items():
        for name, value in slots.items():
            assert torch.equal(torch.as_tensor(value),
                               torch.as_tensor(got_state[pid][name]))


def test_resume_logs_identical_losses(reference, interrupted):
    work_dir, _ = interrupted
    (ref, ) = _logged_losses(reference)
    first, second, third = _logged_losses(work_dir)
    assert sorted(ref) == list(range(1, 13))
    assert sorted(first) == list(range(1, 9))
    assert sorted(second) == list(range(5, KILL_AT + 1))
    assert sorted(third) == list(range(9, 13))
    # Exact float equality, including iterations 5-10 run twice.
    for run in (first, second, third):
        for step, loss in run.items():
            assert loss == ref[step], (step, loss, ref[step])


def test_device_colour_jitter_trains_the_same_bits(reference, tmp_path,
                                                   tools_env, repo_root):
    """DeferredColorJitter + ColorJitterDataPreprocessor instead of the CPU
    ColorJitter: the same losses and final weights, bit for bit."""
    work_dir = tmp_path / 'device_jitter'
    pipeline = 'train_dataloader.dataset.pipeline'
    _check(_train(repo_root, tools_env, work_dir, '--cfg-options',
                  'data_preprocessor.type=ColorJitterDataPreprocessor',
                  f'{pipeline}.2.type=DeferredColorJitter',
                  f'{pipeline}.4.algorithm_keys=[permutation,color_jitter]'))
    (ref, ), (got, ) = _logged_losses(reference), _logged_losses(work_dir)
    assert sorted(got) == list(range(1, 13)) and got == ref
    want = load_checkpoint_file(str(reference / 'iter_12.pth'))['state_dict']
    have = load_checkpoint_file(str(work_dir / 'iter_12.pth'))['state_dict']
    assert want.keys() == have.keys()
    for key in want:
        assert torch.equal(want[key], have[key]), key


def test_resume_replays_same_samples_and_permutations(reference, interrupted):
    work_dir, _ = interrupted
    ref = {r['iter']: r for r in _samples(reference)}
    got = _samples(work_dir)
    assert [r['iter'] for r in got] == (
        list(range(8)) + list(range(4, KILL_AT)) + [8, 9, 10, 11])
    for record in got:
        expected = ref[record['iter']]
        assert record['sample_idx'] == expected['sample_idx']
        assert record['permutation'] == expected['permutation']
    # Each epoch visits every sample once, with a fresh permutation.
    by_epoch = {0: {}, 1: {}}
    for record in ref.values():
        for idx, perm in zip(record['sample_idx'], record['permutation']):
            by_epoch[record['epoch']][idx] = perm
    assert sorted(by_epoch[0]) == sorted(by_epoch[1]) == list(range(24))
    assert sum(by_epoch[0][i] != by_epoch[1][i] for i in range(24)) >= 22


class _Draw:
    """A transform drawing from all three global RNGs."""

    def __call__(self, results: dict) -> dict:
        results['draw'] = (np.random.randint(1 << 30), random.random(),
                           float(torch.rand(1)))
        return results


def test_per_sample_rng_is_pure_and_restores_global_state():
    wrapped = PerSampleRNG([_Draw()])
    try:
        set_sample_rng_state(seed=7, epoch=3)
        np.random.seed(1)
        before = np.random.get_state()[1].copy()
        a = wrapped({'sample_idx': 5})['draw']
        assert np.array_equal(np.random.get_state()[1], before)
        np.random.seed(2)  # another global state: same draw
        random.seed(2)
        torch.manual_seed(2)
        assert wrapped({'sample_idx': 5})['draw'] == a
        assert wrapped({'sample_idx': 6})['draw'] != a
        set_sample_rng_state(epoch=4)
        assert wrapped({'sample_idx': 5})['draw'] != a
        with pytest.raises(KeyError, match='sample_idx'):
            wrapped({})
        reset_sample_rng_state()
        with pytest.raises(RuntimeError, match="mp_start_method='fork'"):
            wrapped({'sample_idx': 5})
        assert 'PerSampleRNG(transforms=' in repr(wrapped)
    finally:
        reset_sample_rng_state()


def test_per_sample_rng_in_a_worker_skips_the_restore_only(monkeypatch):
    """In a dataloader worker the states are not copied back (a worker
    only runs pipelines), and every sample still draws the same."""
    import torch.utils.data
    wrapped = PerSampleRNG([_Draw()])
    try:
        set_sample_rng_state(seed=7, epoch=3)
        main = [wrapped({'sample_idx': i})['draw'] for i in (5, 6, 5)]
        monkeypatch.setattr(torch.utils.data, 'get_worker_info',
                            lambda: object())
        np.random.seed(1)
        before = np.random.get_state()[1].copy()
        worker = [wrapped({'sample_idx': i})['draw'] for i in (5, 6, 5)]
        assert worker == main and main[0] == main[2] != main[1]
        assert not np.array_equal(np.random.get_state()[1], before)
    finally:
        reset_sample_rng_state()


class _Toy(BaseDataset):
    """``n`` empty samples (picklable: module level)."""

    def __init__(self, n: int, **kwargs) -> None:
        self.n = n
        super().__init__(**kwargs)

    def load_data_list(self) -> List[dict]:
        return [dict(i=i) for i in range(self.n)]


def _toy_dataset(n):
    return _Toy(n, ann_file='', pipeline=[_Draw()], serialize_data=False)


def test_wrap_dataset_pipelines_plain_dataset_and_wrappers_refused():
    """A plain dataset's items draw from (seed, epoch, sample_idx); dataset
    wrappers (whose leaves share sample_idx values, so their items would
    repeat each other's augmentations) are refused, naming the way out."""
    import copy
    import pickle

    from mmengine.dataset import ConcatDataset, RepeatDataset

    from mapet.datasets.transforms.per_sample_rng import wrap_dataset_pipelines

    def draws(dataset):
        return [dataset[i]['draw'] for i in range(len(dataset))]

    try:
        set_sample_rng_state(seed=7, epoch=0)
        plain = _toy_dataset(4)
        assert wrap_dataset_pipelines(plain) == 1
        assert wrap_dataset_pipelines(plain) == 0  # idempotent
        assert type(plain) is _Toy
        assert isinstance(plain.pipeline, PerSampleRNG)
        plain_draws = draws(plain)
        assert len(set(plain_draws)) == 4
        # the (seed, epoch, sample_idx) key, whatever the global RNGs hold
        np.random.seed(123)
        assert plain_draws == [
            PerSampleRNG([_Draw()])({'sample_idx': i})['draw']
            for i in range(4)
        ]
        # workers under spawn / deepcopy get the same draws
        for clone in (pickle.loads(pickle.dumps(plain)),
                      copy.deepcopy(plain)):
            assert draws(clone) == plain_draws

        for wrapper, name in (
                (ConcatDataset([_toy_dataset(3), _toy_dataset(3)]),
                 'ConcatDataset'),
                (RepeatDataset(_toy_dataset(3), times=3), 'RepeatDataset')):
            with pytest.raises(TypeError, match=f'training dataset is a '
                               f'{name} wrapper whose items share '
                               'sample_idx values.*'
                               'train_cfg.exact_randomness=False'):
                wrap_dataset_pipelines(wrapper)
    finally:
        reset_sample_rng_state()


def test_seed_global_rngs_leaves_cuda_generators_alone(monkeypatch):
    """Only the CPU torch RNG is seeded (and restored by
    preserve_global_rngs); with num_workers=0 the transforms run in the
    main process, whose CUDA RNG drives drop path / dropout."""
    from mapet.datasets.transforms.per_sample_rng import (
        preserve_global_rngs, seed_global_rngs)

    def fail(*args, **kwargs):
        raise AssertionError('the CUDA generators were reseeded')

    monkeypatch.setattr(torch.cuda, 'manual_seed_all', fail)
    monkeypatch.setattr(torch.cuda, 'manual_seed', fail)
    torch.random.default_generator.manual_seed(3)
    before = torch.get_rng_state()
    with preserve_global_rngs():
        seed_global_rngs(1, 2, 3)
        a = torch.rand(3)
        seed_global_rngs(1, 2, 3)
        assert torch.equal(torch.rand(3), a)
    assert torch.equal(torch.get_rng_state(), before)


def test_iteration_reseed_reaches_cuda_generators(monkeypatch):
    """ExactResumeHook reseeds model randomness on every device: on a GPU,
    drop path draws from the CUDA generators, which no checkpoint holds."""
    from mapet.engine.hooks.exact_resume import ExactResumeHook

    seeded = []
    monkeypatch.setattr(torch.cuda, 'manual_seed_all',
                        lambda seed: seeded.append(seed))
    hook = ExactResumeHook()
    hook._seed = 7

    class _Runner:
        iter = 5

    hook.before_train_iter(_Runner(), batch_idx=0)
    hook.before_train_iter(_Runner(), batch_idx=0)
    assert len(seeded) == 2 and seeded[0] == seeded[1]
    _Runner.iter = 6
    hook.before_train_iter(_Runner(), batch_idx=0)
    assert seeded[2] != seeded[0]

