"""Safe loading: every loader refuses a pickle that would run code.

Each crafted file carries an object whose ``__reduce__`` calls
``open(<canary>, 'w')``: if any loader unpickled it, the canary file would
appear. Every loader must raise (naming the problem) and the canary must
not exist afterwards.
"""
import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.runner import CheckpointLoader
from mmengine.runner import checkpoint as mm_ckpt

import mapet  # noqa: F401  (installs the safe loaders)
from mapet.models.tokenizers.frozen import load_weights_file
from mapet.models.tokenizers.codebook import load_codebook
from mapet.datasets.token_store import (MANIFEST_NAME, STORE_FORMAT,
                                          TokenStore, TokenStoreError)
from mapet.utils.checkpoint import UnsafeCheckpointError

REPO = Path(__file__).resolve().parents[2]
# The global the payload needs (torch names builtins.open io.open).
OPEN = r'(io|builtins)\.open'
CONVERTERS = ('strip_pretrain_checkpoint.py', 'mmpretrain_to_timm.py',
              'official_mapet_to_mmpretrain.py')


class CreateFileOnLoad:
    """Unpickling this object creates ``path`` (the canary)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, 'w'))


@pytest.fixture
def canary(tmp_path) -> Path:
    path = tmp_path / 'PWNED'
    yield path
    assert not path.exists(), 'a loader executed the pickle payload'


def _malicious_checkpoint(tmp_path: Path, canary: Path) -> Path:
    path = tmp_path / 'evil.pth'
    torch.save(
        dict(
            state_dict={'backbone.w': torch.zeros(2)},
            meta=dict(payload=CreateFileOnLoad(str(canary)))), path)
    return path


def test_checkpoint_loaders_refuse_payload(tmp_path, canary):
    path = _malicious_checkpoint(tmp_path, canary)
    loaders = [
        # load_from / --resume / init_cfg=Pretrained / tools/test.py
        lambda: CheckpointLoader.load_checkpoint(str(path)),
        lambda: mm_ckpt._load_checkpoint(str(path), map_location='cpu'),
        # what MMEngine's remote schemes (s3://, http://...) call
        lambda: mm_ckpt._safe_torch_load(str(path), map_location='cpu'),
    ]
    for load in loaders:
        with pytest.raises(UnsafeCheckpointError, match=OPEN):
            load()
    # torch's own default (weights_only=True since torch 2.6) and the
    # tokenizers' weight loader.
    with pytest.raises(Exception, match='[Ww]eights.only|open'):
        torch.load(path)
    with pytest.raises(Exception, match='[Ww]eights.only|open'):
        load_weights_file(path)


@pytest.mark.parametrize('script', CONVERTERS)
def test_converters_refuse_payload(tmp_path, canary, script, monkeypatch):
    src = _malicious_checkpoint(tmp_path, canary)
    dst = tmp_path / 'out.pth'
    monkeypatch.setattr(sys, 'argv', [script, str(src), str(dst)])
    with pytest.raises(UnsafeCheckpointError, match=OPEN):
        runpy.run_path(
            str(REPO / 'tools' / 'model_converters' / script),
            run_name='__main__')
    assert not dst.exists()


def test_codebook_loader_refuses_pickled_arrays(tmp_path, canary):
    npy = tmp_path / 'codebook.npy'
    np.save(npy, np.array([CreateFileOnLoad(str(canary))], dtype=object),
            allow_pickle=True)
    with pytest.raises(ValueError, match='allow_pickle'):
        load_codebook(str(npy))
    npz = tmp_path / 'codebook.npz'
    np.savez(npz, centroids=np.array([CreateFileOnLoad(str(canary))],
                                     dtype=object))
    with pytest.raises(ValueError, match='allow_pickle'):
        load_codebook(str(npz))


def test_token_store_loader_refuses_pickled_arrays(tmp_path, canary):
    root = tmp_path / 'store'
    root.mkdir()
    payload = np.array([CreateFileOnLoad(str(canary))] * 2, dtype=object)
    np.save(root / 'tokens.npy', payload, allow_pickle=True)
    np.save(root / 'index.npy', payload, allow_pickle=True)
    (root / MANIFEST_NAME).write_text(
        json.dumps(
            dict(format=STORE_FORMAT, complete=True, num_images=2,
                 num_tokens=1, grid=[1, 1], vocab_size=4, crop='center')))
    with pytest.raises(TokenStoreError, match='corrupt|Python objects'):
        TokenStore(root)
