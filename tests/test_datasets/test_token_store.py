"""Token store: round trip, resume to identical bytes, sharding, refusal."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mapet.datasets.transforms import LoadVisualTokens
from mapet.models.tokenizers import FrozenDALLE
from mapet.extraction.engines import extract_tokens
from mapet.extraction.images import CenterCropImages, list_image_folder
from mapet.datasets.token_store import TokenStore, TokenStoreError

VOCAB = 32
SIZE = 16  # DALL-E stride 8 -> 2 x 2 tokens
GRID = 2
CHUNK = 16
BATCH = 8
STORE_FILES = ('tokens.npy', 'index.npy', 'manifest.json')


@pytest.fixture(scope='module')
def tokenizer():
    torch.manual_seed(0)
    return FrozenDALLE(
        group_count=4, n_hid=8, n_blk_per_group=1, vocab_size=VOCAB)


@pytest.fixture(scope='module')
def records(demo_data_root):
    return list_image_folder(str(demo_data_root / 'val'))


def _extract(tok, records, out, **kw):
    kw.setdefault('chunk_size', CHUNK)
    return extract_tokens(
        tok,
        records,
        str(out),
        input_size=SIZE,
        batch_size=BATCH,
        num_workers=0,
        progress=False,
        **kw)


@pytest.fixture(scope='module')
def store(tokenizer, records, tmp_path_factory):
    out = tmp_path_factory.mktemp('stores') / 'reference'
    _extract(tokenizer, records, out)
    return out


def _same_bytes(a: Path, b: Path) -> None:
    for name in STORE_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_round_trip(store, tokenizer, records):
    ts = TokenStore(store)
    assert ts.num_images == len(records) and ts.grid == (GRID, GRID)
    assert ts.vocab_size == VOCAB and ts.crop == 'center'
    assert list(ts.relpaths()) == [r.relpath for r in records]
    assert ts.tokens.dtype == np.uint16
    ts.verify()
    ds = CenterCropImages(records, SIZE, tokenizer.mean, tokenizer.std,
                          tokenizer.interpolation)
    for i in (0, 17, len(records) - 1):
        img, _ = ds[i]
        expected = tokenizer(img[None])[0].numpy()
        got = ts.get(records[i].relpath)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, expected)
    assert not (store / 'parts').exists()


def test_resume_after_interruption_same_bytes(store, tokenizer, records,
                                              tmp_path):
    out = tmp_path / 'resumed'
    calls = {'n': 0}
    original = tokenizer.forward

    def flaky(images):
        calls['n'] += 1
        if calls['n'] == 3:  # after chunk 0 (2 batches) was written
            raise KeyboardInterrupt('simulated kill')
        return original(images)

    tokenizer.forward = flaky
    try:
        with pytest.raises(KeyboardInterrupt):
            _extract(tokenizer, records, out)
    finally:
        del tokenizer.forward
    assert (out / 'parts' / 'chunk_000000.npy').is_file()
    with pytest.raises(TokenStoreError, match='incomplete.*resume'):
        TokenStore(out)
    with pytest.raises(TokenStoreError, match='incomplete'):
        LoadVisualTokens(str(out), grid_size=GRID, vocab_size=VOCAB)

    counted = {'n': 0}

    def counting(images):
        counted['n'] += images.shape[0]
        return original(images)

    tokenizer.forward = counting
    try:
        _extract(tokenizer, records, out)
    finally:
        del tokenizer.forward
    assert counted['n'] == len(records) - CHUNK  # chunk 0 was not redone
    _same_bytes(store, out)


def test_ranks_shard_and_merge_same_bytes(store, tokenizer, records, tmp_path):
    out = tmp_path / 'sharded'
    # without a process group the barriers are no-ops: run rank 1, then 0
    assert _extract(tokenizer, records, out, rank=1, world_size=2) is None
    done = sorted(p.name for p in (out / 'parts').glob('chunk_*.npy'))
    assert done == ['chunk_000001.npy', 'chunk_000003.npy']
    _extract(tokenizer, records, out, rank=0, world_size=2)
    _same_bytes(store, out)


def test_resume_with_other_settings_refused(tokenizer, records, tmp_path):
    out = tmp_path / 'other'

    def killed(images):
        raise KeyboardInterrupt('simulated kill')

    tokenizer.forward = killed
    try:
        with pytest.raises(KeyboardInterrupt):
            _extract(tokenizer, records, out)
    finally:
        del tokenizer.forward
    with pytest.raises(
            TokenStoreError,
            match='another extraction.*differs in: chunk_size'):
        _extract(tokenizer, records, out, chunk_size=CHUNK * 2)


def test_rerun_of_a_finished_extraction(store, tokenizer, records,
                                        tmp_path, capsys):
    """The same command again is a no-op (files untouched); a finished store
    of another extraction is refused, naming what differs."""
    copy = tmp_path / 'copy'
    shutil.copytree(store, copy)
    mtimes = {n: (copy / n).stat().st_mtime_ns for n in STORE_FILES}
    manifest = _extract(tokenizer, records, copy)
    assert 'already complete for this extraction' in capsys.readouterr().out
    assert manifest == TokenStore(str(copy)).manifest
    assert mtimes == {n: (copy / n).stat().st_mtime_ns for n in STORE_FILES}
    _same_bytes(store, copy)
    with pytest.raises(TokenStoreError, match='already holds a finished '
                       'token store of another extraction.*differs in: '
                       'grid, input_size'):
        extract_tokens(tokenizer, records, str(copy), input_size=SIZE * 2,
                       batch_size=BATCH, num_workers=0, progress=False,
                       chunk_size=CHUNK)


def test_load_visual_tokens(store, demo_data_root, records):
    t = LoadVisualTokens(
        str(store), grid_size=GRID, vocab_size=VOCAB, crop='center')
    assert repr(t) == (f"LoadVisualTokens(store={str(store)!r}, grid_size=2,"
                       " vocab_size=32, crop='center')")
    ts = TokenStore(store)
    rel = records[5].relpath
    # mmpretrain sets img_path = data_root/data_prefix/<ann path>; the key
    # is found as the longest matching path suffix
    out = t(dict(img_path=str(demo_data_root / 'val' / rel)))
    assert out['visual_tokens'].dtype == np.int64
    assert out['visual_tokens'].shape == (GRID * GRID, )
    np.testing.assert_array_equal(out['visual_tokens'], ts.get(rel))
    rel2 = records[6].relpath
    np.testing.assert_array_equal(
        t(dict(img_path=str(demo_data_root / 'val' / rel2)))['visual_tokens'],
        ts.get(rel2))
    t2 = LoadVisualTokens(
        str(store),
        grid_size=(GRID, GRID),
        vocab_size=VOCAB,
        data_root=str(demo_data_root / 'val'))
    np.testing.assert_array_equal(
        t2(dict(img_path=str(demo_data_root / 'val' / rel)))['visual_tokens'],
        ts.get(rel))
    with pytest.raises(
            TokenStoreError,
            match='cat/not_there.png is missing from token store'):
        t(dict(img_path=str(demo_data_root / 'val' / 'cat' / 'not_there.png')))


@pytest.mark.parametrize('kwargs, message', [
    (dict(grid_size=14), r'grid size: store \(2, 2\), expected \(14, 14\)'),
    (dict(vocab_size=8192), 'vocabulary size: store 32, expected 8192'),
    (dict(crop='random'), "crop: store 'center', expected 'random'"),
    (dict(codebook='0' * 64), 'codebook: store was written with codebook'),
])
def test_mismatched_store_refused(store, kwargs, message):
    args = dict(grid_size=GRID, vocab_size=VOCAB, crop='center')
    args.update(kwargs)
    with pytest.raises(TokenStoreError, match=message):
        LoadVisualTokens(str(store), **args)


def test_incomplete_store_refused(store, tmp_path):
    broken = tmp_path / 'broken'
    shutil.copytree(store, broken)
    data = (broken / 'tokens.npy').read_bytes()
    (broken / 'tokens.npy').write_bytes(data[:len(data) // 2])
    with pytest.raises(TokenStoreError, match='incomplete'):
        LoadVisualTokens(str(broken), grid_size=GRID, vocab_size=VOCAB)
    (broken / 'manifest.json').unlink()
    with pytest.raises(TokenStoreError, match='incomplete: no manifest'):
        LoadVisualTokens(str(broken), grid_size=GRID, vocab_size=VOCAB)
    with pytest.raises(TokenStoreError, match='does not exist'):
        LoadVisualTokens(
            str(tmp_path / 'nowhere'), grid_size=GRID, vocab_size=VOCAB)


def test_torchrun_two_ranks_same_bytes(tokenizer, records, demo_data_root,
                                       repo_root, tools_env, tmp_path):
    import socket
    import subprocess
    import sys
    with socket.socket() as sock:  # a free port: other tests may run torchrun
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    ckpt = tmp_path / 'dalle_encoder.pth'
    torch.save(tokenizer.encoder.state_dict(), ckpt)
    cfg = tmp_path / 'dalle_tiny.py'
    cfg.write_text(
        f"tokenizer = dict(type='FrozenDALLE', checkpoint={str(ckpt)!r}, "
        f'group_count=4, n_hid=8, n_blk_per_group=1, vocab_size={VOCAB}, '
        f'input_size={SIZE})\n')
    out = tmp_path / 'torchrun'
    cmd = [
        sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
        '--master_port',
        str(port),
        str(repo_root / 'tools/tokenizers/extract_tokens.py'),
        '--image-folder',
        str(demo_data_root / 'val'), '--tokenizer-config',
        str(cfg), '--out',
        str(out), '--chunk-size',
        str(CHUNK), '--batch-size',
        str(BATCH), '--num-workers', '0', '--no-progress'
    ]
    proc = subprocess.run(
        cmd, env=tools_env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = tmp_path / 'single'
    tok = FrozenDALLE(
        checkpoint=str(ckpt),
        group_count=4,
        n_hid=8,
        n_blk_per_group=1,
        vocab_size=VOCAB)
    _extract(tok, records, single)
    for name in ('tokens.npy', 'index.npy'):
        assert (out / name).read_bytes() == (single / name).read_bytes()
