"""A few iterations of the tiny MaPeT config through tools/train.py."""
import json
import os
import subprocess
import sys

from mapet.utils.checkpoint import safe_torch_load


def test_tools_train_lowers_the_loss(repo_root, demo_data_root, tools_env,
                                     tmp_path):
    env = dict(tools_env)
    env['PYTHONPATH'] = os.pathsep.join(
        [str(repo_root / 'tests' / 'data'), env['PYTHONPATH']])
    config = repo_root / 'tests/data/configs/mapet_tiny_pretrain.py'
    work_dir = tmp_path / 'work'
    proc = subprocess.run(
        [sys.executable, 'tools/train.py', str(config), '--work-dir',
         str(work_dir)],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    scalars = list(work_dir.glob('*/vis_data/scalars.json'))
    assert len(scalars) == 1
    lines = scalars[0].read_text().splitlines()
    records = [json.loads(line) for line in lines]
    losses = [r['loss'] for r in records if 'loss' in r]
    accuracy = [r['accuracy'] for r in records if 'accuracy' in r]
    assert len(losses) == 30 and len(accuracy) == 30
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 0.3, (first, last)
    assert sum(accuracy[-5:]) > sum(accuracy[:5])

    ckpt = safe_torch_load(work_dir / 'iter_30.pth', map_location='cpu')
    assert 'backbone.mask_token' in ckpt['state_dict']
