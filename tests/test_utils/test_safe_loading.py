"""Safe loading: every loader refuses a pickle that would run code.

Each crafted file carries an object whose ``__reduce__`` calls
``open(<canary>, 'w')``: if any loader unpickled it, the canary file would
appear. Every loader must raise (naming the problem) and the canary must
not exist afterwards. Checkpoints reach the model through ``MaPeTRunner``
(``load_from``, ``--resume [auto|PATH]``, ``init_cfg=Pretrained``,
``tools/test.py``), through our tools and through the tokenizers.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mapet.datasets.token_store import (MANIFEST_NAME, STORE_FORMAT,
                                        TokenStore, TokenStoreError)
from mapet.models.tokenizers.codebook import load_codebook
from mapet.models.tokenizers.frozen import load_weights_file
from mapet.utils.checkpoint import (UnsafeCheckpointError,
                                    load_checkpoint_file, safe_torch_load)
from tiny_runner import TinyModel, tiny_runner  # tests/helpers

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
    for load in (safe_torch_load, load_checkpoint_file):
        with pytest.raises(UnsafeCheckpointError, match=OPEN):
            load(str(path))
    # torch's own default (weights_only=True since torch 2.6) and the
    # tokenizers' weight loader.
    with pytest.raises(Exception, match='[Ww]eights.only|open'):
        torch.load(path)
    with pytest.raises(UnsafeCheckpointError, match=OPEN):
        load_weights_file(path)


@pytest.mark.parametrize('how', [
    'load_checkpoint', 'load_from', 'resume_path', 'resume_auto',
    'init_cfg_pretrained'
])
def test_runner_refuses_payload(tmp_path, canary, how):
    """Every way MaPeTRunner reads a checkpoint (tools/test.py calls
    load_checkpoint; --resume PATH sets load_from and resume)."""
    path = _malicious_checkpoint(tmp_path, canary)
    work_dir = tmp_path / 'work'
    if how == 'load_checkpoint':
        run = lambda: tiny_runner(work_dir).load_checkpoint(str(path))
    elif how == 'load_from':
        run = tiny_runner(work_dir, load_from=str(path)).train
    elif how == 'resume_path':
        run = tiny_runner(work_dir, load_from=str(path), resume=True).train
    elif how == 'resume_auto':
        # The newest checkpoint of the work dir (no sidecar to disprove it).
        work_dir.mkdir()
        path = work_dir / 'iter_8.pth'
        path.write_bytes((tmp_path / 'evil.pth').read_bytes())
        run = tiny_runner(work_dir, resume=True).train
    else:
        model = TinyModel(
            init_cfg=dict(type='Pretrained', checkpoint=str(path)))
        run = tiny_runner(work_dir, model=model).train
    with pytest.raises(UnsafeCheckpointError, match=OPEN) as err:
        run()
    assert f"Refusing to load checkpoint '{path}'" in str(err.value)


def test_runner_refuses_remote_checkpoints(tmp_path):
    """A URL cannot be verified: refused instead of loaded by mmengine."""
    url = 'https://example.com/ckpt.pth'
    with pytest.raises(ValueError, match='not a local file: MaPeTRunner '
                       'loads only local checkpoints'):
        tiny_runner(tmp_path).load_checkpoint(url)
    model = TinyModel(init_cfg=dict(type='Pretrained', checkpoint=url))
    with pytest.raises(ValueError, match=r'model\.init_cfg loads https://'
                       r'example\.com/ckpt\.pth, which is not a local file'):
        tiny_runner(tmp_path, model=model).train()


def test_runner_names_a_safetensors_pretrained_init(tmp_path):
    """mmengine's Pretrained initialiser cannot read safetensors: the runner
    says so and how to convert, instead of an unpickling error."""
    from mapet.utils.safetensors_io import save_weights
    path = tmp_path / 'backbone.safetensors'
    save_weights(TinyModel().state_dict(), str(path))
    model = TinyModel(init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(ValueError, match=r"model\.init_cfg loads .*backbone"
                       r"\.safetensors, a safetensors file, but .*Convert it "
                       r'once: python -c'):
        tiny_runner(tmp_path / 'w', model=model).train()


@pytest.mark.parametrize('script', CONVERTERS)
def test_converters_refuse_payload(tmp_path, canary, script, repo_root,
                                   tools_env):
    src = _malicious_checkpoint(tmp_path, canary)
    dst = tmp_path / 'out.pth'
    proc = subprocess.run(
        [sys.executable, f'tools/model_converters/{script}', str(src),
         str(dst)],
        cwd=repo_root, env=tools_env, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode != 0
    assert 'UnsafeCheckpointError: Refusing to load checkpoint' in \
        proc.stderr, proc.stderr[-3000:]
    assert "type 'io.open'" in proc.stderr or \
        "type 'builtins.open'" in proc.stderr, proc.stderr[-3000:]
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
