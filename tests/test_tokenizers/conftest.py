"""Fixtures of the tokenizer tests: small random models written to files."""
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIP_MODEL = 'RN50'


@pytest.fixture(scope='session')
def rn50_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised open_clip RN50 saved as a checkpoint file."""
    import open_clip
    torch.manual_seed(0)
    model = open_clip.create_model(CLIP_MODEL, pretrained=None)
    path = tmp_path_factory.mktemp('clip') / 'rn50_random.pt'
    torch.save(model.state_dict(), path)
    return path


def _load_tool(relpath: str) -> ModuleType:
    path = REPO_ROOT / relpath
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def load_tool():
    """Import a ``tools/`` script as a module (``tools`` is no package)."""
    return _load_tool
