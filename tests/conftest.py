"""Shared pytest fixtures for the whole test-suite.

* ``repo_root``: the repository root (a :class:`pathlib.Path`).
* ``demo_data_root``: the deterministic demo dataset in ``<repo>/data/demo``,
  built on first use by ``tools/dataset_converters/make_demo_dataset.py``
  (about a second; later sessions reuse it through its fingerprint).
* ``tools_env``: environment for subprocess runs of ``tools/*`` (repo and
  ``tests/helpers`` on ``PYTHONPATH``, single-threaded BLAS so parallel ranks
  don't oversubscribe the CPU, no CUDA).
* ``free_port``: ``free_port()`` gives a free loopback port for ``PORT``.
"""
import importlib.util
import os
import socket
import sys
from pathlib import Path
from typing import Callable, Dict

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
HELPERS = REPO_ROOT / 'tests' / 'helpers'
# Test helpers (tiny tokenizer, hooks, fault injectors) are plain modules:
# the tiny configs name them in custom_imports, in-process and in
# subprocesses (see tools_env).
sys.path.insert(0, str(HELPERS))
CLIP_MODEL = 'RN50'


def _load_demo_builder():
    """Import the converter script as a module (``tools`` is no package)."""
    path = REPO_ROOT / 'tools' / 'dataset_converters' / 'make_demo_dataset.py'
    spec = importlib.util.spec_from_file_location('make_demo_dataset', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def repo_root() -> Path:
    """Absolute path of the repository root."""
    return REPO_ROOT


@pytest.fixture(scope='session')
def demo_builder():
    """The ``make_demo_dataset`` module (for tests that build variants)."""
    return _load_demo_builder()


@pytest.fixture(scope='session')
def demo_data_root(demo_builder) -> Path:
    """Root of the demo dataset (``train/``, ``val/``, ``meta/``).

    Built into ``<repo>/data/demo`` if missing or stale; safe when several
    pytest sessions start at once (the builder takes a file lock).
    """
    return Path(demo_builder.make_demo_dataset(str(REPO_ROOT / 'data' /
                                                   'demo')))


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


@pytest.fixture(scope='session')
def load_tool():
    """Import a ``tools/`` script as a module (``tools`` is no package)."""

    def _load(relpath: str):
        path = REPO_ROOT / relpath
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return _load
