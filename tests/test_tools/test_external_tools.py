"""Our configs with tools that are not ours: ``mim`` and mmpretrain's
``tools/train.py``.

Both runs (2 CPU iterations of ``tests/data/configs/mapet_tiny_pretrain.py``)
only know the config; the checkpoint guarantees (atomic write, ``.sha256``
sidecar, data-only message hub) must come from the ``runner_type`` it
selects. The subprocesses see ``tests/helpers`` (the tiny tokenizer) but not
the checkout: mapet is imported from its installation.
"""
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mapet.utils.checkpoint import DataOnlyHistoryBuffer, load_checkpoint_file

HERE = Path(__file__).resolve().parents[1]
TINY = HERE / 'data' / 'configs' / 'mapet_tiny_pretrain.py'
ITERS = 2
CFG_OPTIONS = [
    '--cfg-options', f'train_cfg.max_iters={ITERS}',
    f'default_hooks.checkpoint.interval={ITERS}', 'train_dataloader.batch_size=4'
]


def _env(tools_env):
    env = dict(tools_env)
    env['PYTHONPATH'] = str(HERE / 'helpers')
    env['PYTHONWARNINGS'] = 'ignore'
    return env


def _mim() -> str:
    mim = shutil.which('mim', path=os.path.dirname(sys.executable))
    if mim is None:
        pytest.fail('openmim is not installed (make install: tests extra)')
    return mim


def _check_checkpoint(work_dir: Path) -> None:
    ckpt = work_dir / f'iter_{ITERS}.pth'
    assert ckpt.is_file(), sorted(p.name for p in work_dir.iterdir())
    sidecar = Path(str(ckpt) + '.sha256')
    assert sidecar.is_file(), 'no .sha256 sidecar: MaPeTRunner not selected?'
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert sidecar.read_text().split()[0] == digest
    assert not list(work_dir.glob('*.tmp-*'))  # no leftover temporary file
    # weights_only=True with our allow-list only: a plain mmengine
    # checkpoint (HistoryBuffer statistics methods) would be refused.
    checkpoint = load_checkpoint_file(str(ckpt), map_location='cpu')
    assert checkpoint['meta']['iter'] == ITERS
    buffers = checkpoint['message_hub']['log_scalars']
    assert buffers and all(
        type(b) is DataOnlyHistoryBuffer for b in buffers.values())


def test_mim_search_lists_our_configs(tmp_path, tools_env):
    proc = subprocess.run([_mim(), 'search', 'mapet'], cwd=tmp_path,
                          env=_env(tools_env), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for config_id in ('mapet_vit-t_300e_in1k', 'mapet_vit-b_300e_in1k',
                      'mapet_vit-t6-p16_demo'):
        assert f'config id: {config_id}\n' in proc.stdout, proc.stdout[-3000:]


def test_mim_train_mapet(tmp_path, tools_env, demo_data_root):
    work_dir = tmp_path / 'work'
    proc = subprocess.run(
        [_mim(), 'train', 'mapet', str(TINY), '--work-dir', str(work_dir),
         *CFG_OPTIONS],
        cwd=tmp_path, env=_env(tools_env), capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    # mim ran our tools/train.py, from the installed package's .mim/.
    assert f'{os.sep}mapet{os.sep}.mim{os.sep}tools{os.sep}train.py' \
        in proc.stdout, proc.stdout[-3000:]
    _check_checkpoint(work_dir)


def _upstream_train(package: str) -> Path:
    import importlib.util
    spec = importlib.util.find_spec(package)
    script = Path(spec.origin).parent / '.mim' / 'tools' / 'train.py'
    if not script.is_file():
        pytest.fail(f'{package} ships no .mim/tools/train.py')
    return script


def test_mmpretrain_train_tool_selects_our_runner(tmp_path, tools_env,
                                                  demo_data_root):
    work_dir = tmp_path / 'work'
    proc = subprocess.run(
        # Its dataloader defaults (persistent workers, pinned memory) need
        # workers and CUDA: the tiny config has neither.
        [sys.executable, str(_upstream_train('mmpretrain')), str(TINY),
         '--work-dir', str(work_dir), '--no-persistent-workers',
         '--no-pin-memory', *CFG_OPTIONS],
        cwd=tmp_path, env=_env(tools_env), capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    _check_checkpoint(work_dir)


REPO = HERE.parent
# What a wheel is built from (the sdist's content, see MANIFEST.in).
PACKAGE_FILES = ('setup.py', 'MANIFEST.in', 'README.md', 'model-index.yml',
                 'requirements', 'mapet', 'configs', 'tools')


def test_regular_install_serves_bases_and_mim(tmp_path, tools_env):
    """A regular (non-editable) install, built as pip builds a wheel: its
    ``mapet/.mim`` holds copies, ``_base_ = 'mapet::...'`` resolves there
    from any folder, and ``mim search mapet`` finds our configs."""
    src = tmp_path / 'mapet-src'  # a copy: building rewrites mapet/.mim
    for name in PACKAGE_FILES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, symlinks=True,
                            ignore=shutil.ignore_patterns('__pycache__'))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(path, src / name)
    pip = [sys.executable, '-m', 'pip', '--disable-pip-version-check', '-q']
    proc = subprocess.run(
        [*pip, 'wheel', '--no-deps', '--no-build-isolation', '-w',
         str(tmp_path / 'dist'), str(src)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel, ) = (tmp_path / 'dist').glob('mapet-*.whl')
    proc = subprocess.run(
        [*pip, 'install', '--no-deps', '--target', str(tmp_path / 'site'),
         str(wheel)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    mim_dir = tmp_path / 'site' / 'mapet' / '.mim'
    for rel in ('configs/mapet/mapet_vit-t_300e_in1k.py', 'tools/train.py',
                'model-index.yml'):
        assert (mim_dir / rel).is_file() and not (mim_dir / rel).is_symlink()

    user = tmp_path / 'user'
    user.mkdir()
    (user / 'cfg.py').write_text(
        "_base_ = 'mapet::mapet/mapet_vit-t_300e_in1k.py'\n"
        "model = dict(backbone=dict(cutting_point=40))\n")
    env = dict(_env(tools_env), PYTHONPATH=str(tmp_path / 'site'))
    probe = (
        'import mapet\n'
        'from mmengine.config import Config\n'
        'from mmengine.utils import get_installed_path\n'
        "cfg = Config.fromfile('cfg.py')\n"
        "print(mapet.__file__, get_installed_path('mapet'),\n"
        '      cfg.model.backbone.arch, cfg.model.backbone.cutting_point,\n'
        '      cfg.runner_type)\n')
    proc = subprocess.run([sys.executable, '-c', probe], cwd=user, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The last line: what mapet prints on import comes first.
    module, installed, arch, cutting_point, runner = \
        proc.stdout.strip().splitlines()[-1].split()
    site = str(tmp_path / 'site')
    assert module.startswith(site) and installed.startswith(site), \
        proc.stdout
    assert (arch, cutting_point, runner) == ('deit-t', '40',
                                             'mmpretrain.MaPeTRunner')
    proc = subprocess.run([_mim(), 'search', 'mapet'], cwd=user, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'config id: mapet_vit-t_300e_in1k\n' in proc.stdout
