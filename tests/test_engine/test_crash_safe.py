"""Crash-safe artifacts: writers SIGKILLed mid-write lose no good data.

Every case first writes a good artifact, then runs a second writer in a
forked child that dies (SIGKILL, ``tests/helpers/reliability_faults.py``)
after half of its bytes reached the disk, then checks that the previous
file is byte-identical and verifies, or that the incomplete result is
detected and redone. A last group corrupts files after the fact and checks
the loaders refuse them by checksum.

Checkpoints are written two ways, both covered: by ``MaPeTRunner`` (what
training uses: mmengine writes a temporary file, which is fsynced, renamed
and given a sidecar) and by :func:`atomic_save_checkpoint` (our tools).
"""
import importlib
import os
import signal
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from mapet.datasets.token_store import (TokenStore, TokenStoreError,
                                        chunk_done, merge_store,
                                        prepare_parts, write_chunk)
from mapet.datasets.image_decode import DECODER_ID
from mapet.models.tokenizers.codebook import load_codebook, save_codebook
from mapet.utils.atomic import sha256_file
from mapet.utils.checkpoint import (CorruptCheckpointError,
                                    atomic_save_checkpoint,
                                    find_latest_intact_checkpoint,
                                    load_checkpoint_file, verify_checkpoint)
from tiny_runner import tiny_runner  # tests/helpers


def _killed_writer(match: str, write: Callable[[], None]) -> None:
    """Run ``write`` in a forked child that dies halfway through ``match``.

    Fork (not a fresh interpreter) keeps the test fast; the child is killed
    by a real SIGKILL from ``tests/helpers/reliability_faults.py``.
    """
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.environ['MAPET_KILL_WRITE_MATCH'] = match
            if 'reliability_faults' in sys.modules:  # re-read the env var
                importlib.reload(sys.modules['reliability_faults'])
            else:
                importlib.import_module('reliability_faults')
            write()
        finally:
            os._exit(3)  # only reached if the kill did not happen
    _killed_writer.last_pid = pid
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
        f'writer was not killed mid-write (status {status})')


def _leftovers(directory: Path, name: str) -> list:
    return sorted(directory.glob(f'.{name}.tmp-*'))


def _ckpt(value: float) -> dict:
    # ~4 MB, so the kill lands in the middle of a real write.
    return dict(
        meta=dict(iter=int(value)),
        state_dict={'w': torch.full((1024, 1024), value)})


def test_checkpoint_killed_mid_write_keeps_previous(tmp_path):
    """atomic_save_checkpoint (tools, converters)."""
    path = tmp_path / 'iter_4.pth'
    atomic_save_checkpoint(_ckpt(4.0), str(path))
    good_sha = sha256_file(path)
    assert (tmp_path / 'iter_4.pth.sha256').read_text().split()[0] == good_sha

    # Tensors are made before fork: OpenMP's pool is not fork-safe.
    newer = _ckpt(8.0)
    _killed_writer('iter_4.pth',
                   lambda: atomic_save_checkpoint(newer, str(path)))

    assert sha256_file(path) == good_sha  # zero bytes of it lost
    assert verify_checkpoint(str(path))
    loaded = load_checkpoint_file(str(path))
    assert float(loaded['state_dict']['w'][0, 0]) == 4.0
    partial = _leftovers(tmp_path, 'iter_4.pth')
    assert len(partial) == 1 and 0 < partial[0].stat().st_size
    assert partial[0].stat().st_size < path.stat().st_size
    # The partial temp file is never a resume candidate.
    (tmp_path / 'last_checkpoint').write_text(str(path))
    assert find_latest_intact_checkpoint(str(tmp_path)) == str(path)
    (tmp_path / 'last_checkpoint').unlink()
    assert find_latest_intact_checkpoint(str(tmp_path)) == str(path)


def test_runner_checkpoint_killed_mid_write_keeps_previous(tmp_path):
    """MaPeTRunner.save_checkpoint (training): the kill lands in the write
    of its temporary file; the next run removes it and resumes."""
    runner = tiny_runner(tmp_path, size=1024)  # 4 MiB of weights
    runner.train()  # iter_2.pth, iter_4.pth
    path = tmp_path / 'iter_4.pth'
    good_sha = sha256_file(path)
    good_weight = runner.model.fc.weight.detach().clone()
    with torch.no_grad():
        runner.model.fc.weight.fill_(8.0)

    _killed_writer(
        'iter_4.pth',
        lambda: runner.save_checkpoint(str(tmp_path), 'iter_4.pth',
                                       by_epoch=False))

    assert sha256_file(path) == good_sha
    assert verify_checkpoint(str(path))
    loaded = load_checkpoint_file(str(path))
    assert torch.equal(loaded['state_dict']['fc.weight'], good_weight)
    partial = _leftovers(tmp_path, 'iter_4.pth')
    assert len(partial) == 1
    assert partial[0].name == f'.iter_4.pth.tmp-{_killed_writer.last_pid}'
    assert 0 < partial[0].stat().st_size < path.stat().st_size
    assert find_latest_intact_checkpoint(str(tmp_path)) == str(path)

    # The next run removes the stale temporary file and resumes intact.
    resumed = tiny_runner(tmp_path, size=1024, max_iters=6, resume=True)
    resumed.train()
    assert not _leftovers(tmp_path, 'iter_4.pth')
    assert resumed.iter == 6
    assert verify_checkpoint(str(tmp_path / 'iter_6.pth'))


def test_auto_resume_skips_corrupt_and_truncated_checkpoints(tmp_path):
    for step in (4, 8, 12):
        atomic_save_checkpoint(_ckpt(float(step)),
                               str(tmp_path / f'iter_{step}.pth'))
    last = tmp_path / 'last_checkpoint'
    last.write_text(str(tmp_path / 'iter_12.pth'))
    assert find_latest_intact_checkpoint(str(tmp_path)) == str(
        tmp_path / 'iter_12.pth')

    # A bit flip in the newest checkpoint: refused by the loader, skipped by
    # auto-resume.
    data = bytearray((tmp_path / 'iter_12.pth').read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / 'iter_12.pth').write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match='does not match its '
                       'checksum'):
        load_checkpoint_file(str(tmp_path / 'iter_12.pth'))
    assert find_latest_intact_checkpoint(str(tmp_path)) == str(tmp_path /
                                                        'iter_8.pth')

    # last_checkpoint emptied by a kill while it was being written, and a
    # truncated iter_8 without sidecar (e.g. copied by hand).
    last.write_text('')
    (tmp_path / 'iter_8.pth.sha256').unlink()
    (tmp_path / 'iter_8.pth').write_bytes(
        (tmp_path / 'iter_8.pth').read_bytes()[:1000])
    found = find_latest_intact_checkpoint(str(tmp_path))
    # iter_8 has no checksum to disprove it, but cannot be loaded either:
    assert found == str(tmp_path / 'iter_8.pth')
    with pytest.raises(Exception, match='zip|archive|central directory'):
        load_checkpoint_file(found)
    # With its sidecar it would be rejected outright and iter_4 used.
    (tmp_path / 'iter_8.pth.sha256').write_text('0' * 64 + '  iter_8.pth\n')
    assert find_latest_intact_checkpoint(str(tmp_path)) == str(tmp_path /
                                                        'iter_4.pth')


def test_codebook_killed_mid_write_keeps_previous(tmp_path):
    path = tmp_path / 'codebook.npz'
    good = np.arange(64 * 4096, dtype=np.float32).reshape(64, 4096)
    save_codebook(str(path), good, dict(model='test'))
    good_sha = sha256_file(path)
    newer = np.ones((64, 4096), np.float32)
    _killed_writer(
        'codebook.npz',
        lambda: save_codebook(str(path), newer, dict(model='x')))
    assert sha256_file(path) == good_sha
    centroids, meta = load_codebook(str(path))
    np.testing.assert_array_equal(centroids, good)
    assert _leftovers(tmp_path, 'codebook.npz')

    # A corrupted codebook is refused by its checksum.
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match='Checksum mismatch'):
        load_codebook(str(path))


def _store_args(n: int = 40, tokens: int = 16):
    relpaths = [f'train/c/img_{i:04d}.png' for i in range(n)]
    manifest = dict(grid=[4, 4], vocab_size=16, crop='center',
                    decoder=DECODER_ID)
    return relpaths, manifest


def test_token_store_chunk_and_merge_killed_are_redone(tmp_path):
    root = tmp_path / 'store'
    relpaths, manifest = _store_args()
    prepare_parts(root, dict(job='test', chunk_size=16))
    rng = np.random.default_rng(0)
    chunks = [rng.integers(0, 16, (16, 16)), rng.integers(0, 16, (16, 16)),
              rng.integers(0, 16, (8, 16))]
    write_chunk(root, 0, chunks[0], 16)
    write_chunk(root, 1, chunks[1], 16)
    # The writer of chunk 2 dies halfway: the chunk is not done and the
    # merge refuses to build a store.
    _killed_writer(
        'chunk_000002.npy',
        lambda: write_chunk(root, 2, np.ones((8, 16), np.int64), 16))
    assert not chunk_done(root, 2, 8, 16)
    with pytest.raises(TokenStoreError, match='missing or incomplete'):
        merge_store(root, relpaths, 16, 16, manifest)
    write_chunk(root, 2, chunks[2], 16)  # the rerun redoes it
    assert chunk_done(root, 2, 8, 16)

    # The merge itself dies while writing tokens.npy: no manifest, the store
    # is reported incomplete (never loaded half-written), and rerunning the
    # merge completes it.
    _killed_writer(
        'tokens.npy',
        lambda: merge_store(root, relpaths, 16, 16, manifest))
    with pytest.raises(TokenStoreError, match='incomplete'):
        TokenStore(root)
    merge_store(root, relpaths, 16, 16, manifest)
    store = TokenStore(root)
    store.verify()
    np.testing.assert_array_equal(
        store.get(relpaths[20]), chunks[1][4].astype(np.uint16))

    # Bit flip after the fact: the manifest's checksum catches it.
    tokens = root / 'tokens.npy'
    data = bytearray(tokens.read_bytes())
    data[-3] ^= 0x01
    tokens.write_bytes(bytes(data))
    with pytest.raises(TokenStoreError, match='corrupt'):
        TokenStore(root).verify()


def test_load_visual_tokens_refuses_corrupt_store(tmp_path):
    """The dataset transform verifies the arrays' checksums when built."""
    from mmpretrain.registry import TRANSFORMS
    root = tmp_path / 'store'
    relpaths, manifest = _store_args(n=4)
    prepare_parts(root, dict(job='verify'))
    write_chunk(root, 0, np.arange(64).reshape(4, 16) % 16, 16)
    merge_store(root, relpaths, 16, 16, manifest)
    args = dict(type='LoadVisualTokens', store=str(root), grid_size=4,
                vocab_size=16)
    TRANSFORMS.build(args)
    tokens = root / 'tokens.npy'
    data = bytearray(tokens.read_bytes())
    data[-1] ^= 0x01  # same size and header: only the checksum sees it
    tokens.write_bytes(bytes(data))
    with pytest.raises(TokenStoreError, match='tokens.npy .* is corrupt: '
                       'sha256'):
        TRANSFORMS.build(args)
