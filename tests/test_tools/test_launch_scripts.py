"""tools/dist_*.sh and tools/slurm_*.sh without an activated environment,
and SyncBN models in multi-process CPU runs.

The scripts are copied into a temporary checkout layout (``tools/`` next to
``.venv/``) whose interpreters and ``srun`` are stand-ins that record how
they were called; one real run goes through the repository's interpreter.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from mmengine.config import Config

import downstream_helpers as H  # tests/helpers
from mapet.models.backbones import MaPeTViT
from mapet.utils.dist_env import sync_bn_to_bn_on_cpu

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = ('dist_train.sh', 'dist_test.sh', 'slurm_train.sh',
           'slurm_test.sh')
ARGS = {
    'dist_train.sh': ['cfg.py', '1'],
    'dist_test.sh': ['cfg.py', 'ckpt.pth', '1'],
    'slurm_train.sh': ['part', 'job', 'cfg.py', 'work'],
    'slurm_test.sh': ['part', 'job', 'cfg.py', 'ckpt.pth'],
}
SEG_CONFIG = REPO / 'configs/benchmarks/segmentation/' \
    'vit-b-p16_upernet_8xb2-amp-160k_ade20k-512x512.py'


def _recorder(path: Path, tag: str, log: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\necho "{tag} $*" >> "{log}"\n')
    path.chmod(0o755)


def _checkout(root: Path, with_venv: bool) -> Path:
    (root / 'tools').mkdir(parents=True)
    for name in SCRIPTS:
        shutil.copy2(REPO / 'tools' / name, root / 'tools' / name)
    log = root / 'calls.log'
    if with_venv:
        _recorder(root / '.venv' / 'bin' / 'python', 'VENV', log)
    bin_dir = root / 'bin'
    _recorder(bin_dir / 'python', 'PATH', log)
    # srun runs its command (what matters is which python it is given)
    (bin_dir / 'srun').write_text(
        '#!/bin/sh\nwhile [ $# -gt 0 ]; do case "$1" in python|*/python) '
        'break;; esac; shift; done\nexec "$@"\n')
    (bin_dir / 'srun').chmod(0o755)
    return log


def _bare_env(root: Path, **extra) -> dict:
    """No PYTHON, no activated environment: only system dirs on PATH."""
    env = {k: v for k, v in os.environ.items()
           if k not in ('PYTHON', 'VIRTUAL_ENV', 'CONDA_PREFIX')}
    env['PATH'] = f'{root / "bin"}:/usr/bin:/bin'
    env.update(extra)
    return env


def _run_scripts(root: Path, env: dict) -> str:
    for name in SCRIPTS:
        proc = subprocess.run(
            ['bash', str(root / 'tools' / name), *ARGS[name]],
            cwd=root, env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return (root / 'calls.log').read_text()


def test_scripts_pick_the_checkout_venv_without_activation(tmp_path):
    root = tmp_path / 'checkout'
    _checkout(root, with_venv=True)
    calls = _run_scripts(root, _bare_env(root)).splitlines()
    assert len(calls) == 4 and all(c.startswith('VENV ') for c in calls)
    assert '-m torch.distributed.run' in calls[0]
    assert calls[0].endswith(f'{root}/tools/train.py cfg.py --launcher '
                             'pytorch')
    assert f'{root}/tools/test.py cfg.py ckpt.pth' in calls[1]
    assert calls[2].startswith(f'VENV -u {root}/tools/train.py cfg.py')
    assert calls[3].startswith(f'VENV -u {root}/tools/test.py cfg.py')


def test_scripts_fall_back_to_path_python_or_honour_PYTHON(tmp_path):
    root = tmp_path / 'checkout'
    log = _checkout(root, with_venv=False)
    calls = _run_scripts(root, _bare_env(root)).splitlines()
    assert len(calls) == 4 and all(c.startswith('PATH ') for c in calls)
    log.unlink()
    own = tmp_path / 'own' / 'python'
    _recorder(own, 'OWN', log)
    calls = _run_scripts(root, _bare_env(root, PYTHON=str(own)))
    assert [c.split()[0] for c in calls.splitlines()] == ['OWN'] * 4


def test_dist_train_runs_with_the_repository_interpreter(tmp_path):
    """The real script and train.py through a `.venv/bin/python` that is
    this interpreter, with no PYTHON and no environment on PATH."""
    root = tmp_path / 'checkout'
    _checkout(root, with_venv=False)
    venv_python = root / '.venv' / 'bin' / 'python'
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    venv_python.chmod(0o755)
    (root / 'tools' / 'train.py').symlink_to(REPO / 'tools' / 'train.py')
    proc = subprocess.run(
        ['bash', 'tools/dist_train.sh', str(SEG_CONFIG), '1', '--help'],
        cwd=root, env=_bare_env(root, CUDA_VISIBLE_DEVICES=''),
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert 'Train a model' in proc.stdout


def test_sync_bn_becomes_bn_only_for_distributed_cpu_runs():
    cfg = Config.fromfile(str(SEG_CONFIG))
    assert cfg.model.decode_head.norm_cfg.type == 'SyncBN'
    cfg.launcher = 'none'
    assert sync_bn_to_bn_on_cpu(cfg) == []
    assert cfg.model.decode_head.norm_cfg.type == 'SyncBN'
    cfg.launcher = 'pytorch'
    if torch.cuda.is_available():  # pragma: no cover (GPU hosts)
        assert sync_bn_to_bn_on_cpu(cfg) == []
        return
    found = sync_bn_to_bn_on_cpu(cfg)
    assert 'model.decode_head.norm_cfg' in found
    assert 'model.auxiliary_head.norm_cfg' in found
    # Feature2Pyramid's constructor defaults to SyncBN
    assert 'model.neck.norm_cfg (default)' in found
    assert cfg.model.neck.norm_cfg.type == 'BN'
    assert cfg.model.decode_head.norm_cfg.type == 'BN'
    assert cfg.model.auxiliary_head.norm_cfg.type == 'BN'

    def types(node):
        if isinstance(node, dict):
            yield node.get('type')
            for value in node.values():
                yield from types(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                yield from types(value)

    assert 'SyncBN' not in list(types(cfg.model))


def test_upernet_trains_with_two_cpu_processes(tmp_path, tools_env,
                                               free_port):
    """tools/dist_train.sh, 2 processes, the UperNet config (SyncBN)."""
    # 2 images per process: BN needs more than one value per channel
    root = H.make_ade20k(tmp_path / 'ade', num=4)
    backbone = MaPeTViT(
        arch=dict(H.TINY_ARCH, num_layers=4), img_size=224, patch_size=16,
        layer_scale_init_value=0.1, mode='mim')
    ckpt = tmp_path / 'pretrain.pth'
    torch.save(dict(state_dict={
        f'backbone.{k}': v for k, v in backbone.state_dict().items()}), ckpt)
    work = tmp_path / 'seg'
    options = [
        f'model.backbone.init_cfg.checkpoint={ckpt}',
        f'train_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}',
        'train_cfg.val_interval=100',
    ]
    config = REPO / 'tests/data/configs/downstream_tiny_segmentation.py'
    proc = subprocess.run(
        ['bash', 'tools/dist_train.sh', str(config), '2', '--work-dir',
         str(work), '--no-amp', '--cfg-options', *options],
        cwd=REPO, env=dict(tools_env, PORT=str(free_port())),
        capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert 'this multi-process CPU run uses BN' in out
    assert "'model.decode_head.norm_cfg'" in out
    assert (work / 'iter_2.pth').is_file()
