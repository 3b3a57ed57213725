"""Shared pytest fixtures for the whole test-suite.

* ``repo_root``: the repository root (a :class:`pathlib.Path`).
* ``demo_data_root``: the deterministic demo dataset in ``<repo>/data/demo``,
  built on first use by running ``tools/dataset_converters/
  make_demo_dataset.py`` (about a second; later sessions reuse it through
  its fingerprint).
* ``tools_env``: environment for subprocess runs of ``tools/*`` (repo and
  ``tests/helpers`` on ``PYTHONPATH``, single-threaded BLAS so parallel ranks
  don't oversubscribe the CPU, no CUDA).
* ``run_tool``: ``run_tool('tools/x.py', *args)`` runs a script with
  ``tools_env`` from the repository root and returns the completed process
  (raises with its output if it fails, unless ``check=False``).
* ``free_port``: ``free_port()`` gives a free loopback port for ``PORT``.
* ``rn50_checkpoint``: a randomly initialised open_clip RN50 checkpoint file.

Tests never import ``tools/*`` (no package): they run the scripts as
subprocesses and check their exit status, messages and output files.
"""
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, Optional

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
HELPERS = REPO_ROOT / 'tests' / 'helpers'
# Test helpers (tiny tokenizer, hooks, fault injectors) are plain modules:
# the tiny configs name them in custom_imports, in-process and in
# subprocesses (see tools_env).
sys.path.insert(0, str(HELPERS))
CLIP_MODEL = 'RN50'


@pytest.fixture(scope='session')
def repo_root() -> Path:
    """Absolute path of the repository root."""
    return REPO_ROOT


@pytest.fixture(scope='session')
def demo_data_root() -> Path:
    """Root of the demo dataset (``train/``, ``val/``, ``meta/``).

    Built into ``<repo>/data/demo`` if missing or stale; safe when several
    pytest sessions start at once (the builder takes a file lock).
    """
    out = REPO_ROOT / 'data' / 'demo'
    proc = subprocess.run([
        sys.executable, 'tools/dataset_converters/make_demo_dataset.py',
        '--out', str(out)
    ], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


@pytest.fixture(scope='session')
def tools_env() -> Dict[str, str]:
    """Environment for running ``tools/*.py``/``*.sh`` in a subprocess."""
    env = dict(os.environ)
    # tests/helpers: the tiny configs' custom_imports (hooks, tokenizers).
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (str(HELPERS), str(REPO_ROOT),
                    env.get('PYTHONPATH')) if p)
    env['CUDA_VISIBLE_DEVICES'] = ''
    env.setdefault('OMP_NUM_THREADS', '1')
    env.setdefault('MKL_NUM_THREADS', '1')
    env['PYTHON'] = sys.executable  # used by tools/dist_*.sh
    return env


@pytest.fixture(scope='session')
def run_tool(tools_env) -> Callable[..., subprocess.CompletedProcess]:
    """``run_tool(script, *args, check=True, env=None, timeout=600)``."""

    def _run(script: str,
             *args,
             check: bool = True,
             env: Optional[Dict[str, str]] = None,
             timeout: float = 600) -> subprocess.CompletedProcess:
        cmd = [sys.executable, script, *map(str, args)]
        proc = subprocess.run(
            cmd,
            cwd=REPO_ROOT,
            env=tools_env if env is None else env,
            capture_output=True,
            text=True,
            timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(
                f'{cmd} failed ({proc.returncode}):\n'
                f'{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}')
        return proc

    return _run


@pytest.fixture(scope='session')
def free_port() -> Callable[[], int]:
    """``free_port()`` -> a free TCP port on the loopback (``PORT`` of a
    2-process ``tools/dist_*.sh`` run)."""

    def _free_port() -> int:
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            return s.getsockname()[1]

    return _free_port


@pytest.fixture(scope='session')
def rn50_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised open_clip RN50 saved as a checkpoint file."""
    import open_clip
    import torch
    torch.manual_seed(0)
    model = open_clip.create_model(CLIP_MODEL, pretrained=None)
    path = tmp_path_factory.mktemp('clip') / 'rn50_random.pt'
    torch.save(model.state_dict(), path)
    return path
