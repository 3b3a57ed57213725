"""tools/dataset_converters/make_demo_dataset.py and tests/conftest.py.

The script runs as a subprocess (``tools`` is no package); the checks read
the folders it writes.
"""
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BUILDER = 'tools/dataset_converters/make_demo_dataset.py'


def _tree_digest(root: Path) -> dict:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob('*')) if p.is_file()
    }


def _build(run_tool, out: Path, *args) -> Path:
    """Run the builder into ``out`` with extra CLI ``args``."""
    proc = run_tool(BUILDER, '--out', out, *args)
    assert f'demo dataset ready: {out}' in proc.stdout
    return out


def _read_ann(root: Path, split: str):
    lines = (root / 'meta' / f'{split}.txt').read_text().splitlines()
    return [(rel, int(label)) for rel, label in map(str.split, lines)]


def test_demo_dataset_layout(demo_data_root):
    root = demo_data_root
    classes = (root / 'meta' / 'classes.txt').read_text().split()
    assert len(classes) == 8 and classes == sorted(classes)
    for split, per_class in (('train', 40), ('val', 10)):
        ann = _read_ann(root, split)
        assert len(ann) == per_class * len(classes)
        assert sorted({label for _, label in ann}) == list(range(8))
        for rel, label in ann:
            assert rel.split('/')[0] == classes[label]
        # Every listed image exists, is RGB and 64-96 px.
        for rel, _ in ann[::17]:
            with Image.open(root / split / rel) as im:
                assert im.mode == 'RGB'
                assert 64 <= im.width <= 96 and im.height == im.width


def test_val_crops_differ_from_train(demo_data_root):
    digests = {
        split: {
            hashlib.sha256((demo_data_root / split / rel).read_bytes()
                           ).hexdigest()
            for rel, _ in _read_ann(demo_data_root, split)
        }
        for split in ('train', 'val')
    }
    assert len(digests['train']) == 320 and len(digests['val']) == 80
    assert not digests['train'] & digests['val']


def test_linear_probe_beats_chance(demo_data_root):
    """The task is learnable: a linear classifier on 16x16 pixels."""
    from sklearn.linear_model import RidgeClassifier

    def load(split):
        xs, ys = [], []
        for rel, label in _read_ann(demo_data_root, split):
            with Image.open(demo_data_root / split / rel) as im:
                xs.append(
                    np.asarray(im.resize((16, 16)), np.float32).ravel() / 255)
            ys.append(label)
        return np.stack(xs), np.array(ys)

    x_train, y_train = load('train')
    x_val, y_val = load('val')
    clf = RidgeClassifier(alpha=10.0).fit(x_train, y_train)
    # 45 % measured; chance is 12.5 %.
    assert clf.score(x_val, y_val) > 2.5 * (1 / 8)


def test_deterministic_and_idempotent(run_tool, tmp_path):
    args = ('--num-train-per-class', 3, '--num-val-per-class', 2, '--seed', 1)
    a = _build(run_tool, tmp_path / 'a', *args)
    b = _build(run_tool, tmp_path / 'b', *args)
    assert _tree_digest(a) == _tree_digest(b)
    assert len(_tree_digest(a)) == 8 * 5 + 4  # images + 4 meta files

    # A complete build is reused as is (no rewrite).
    img = next((a / 'train').rglob('*.png'))
    mtime = img.stat().st_mtime_ns
    _build(run_tool, a, *args)
    assert img.stat().st_mtime_ns == mtime

    # Another seed gives other crops.
    c = _build(run_tool, tmp_path / 'c', *args[:-1], 2)
    assert _tree_digest(c) != _tree_digest(a)


def test_fingerprint_records_parameters_and_sources(run_tool, tmp_path):
    import skimage.data
    out = _build(run_tool, tmp_path / 'demo', '--num-train-per-class', 2,
                 '--num-val-per-class', 1, '--max-size', 80, '--seed', 5)
    fp = json.loads((out / 'meta' / 'fingerprint.json').read_text())
    assert (fp['num_train_per_class'], fp['num_val_per_class'],
            fp['min_size'], fp['max_size'], fp['seed']) == (2, 1, 64, 80, 5)
    classes = (out / 'meta' / 'classes.txt').read_text().split()
    assert sorted(fp['sources']) == classes
    # The source photographs' bytes are part of it: another scikit-image
    # version with other sample files triggers a rebuild.
    data_dir = Path(skimage.data.__file__).parent
    for source in fp['sources'].values():
        assert source['sha256'] == hashlib.sha256(
            (data_dir / source['file']).read_bytes()).hexdigest()


@pytest.mark.parametrize('damage', ['fingerprint', 'image', 'param'])
def test_incomplete_or_stale_build_is_rebuilt(run_tool, tmp_path, damage):
    args = ('--num-train-per-class', 2, '--num-val-per-class', 1)
    out = _build(run_tool, tmp_path / 'demo', *args)
    expected = _tree_digest(out)
    if damage == 'fingerprint':  # a run killed before its last write
        (out / 'meta' / 'fingerprint.json').unlink()
    elif damage == 'image':
        next((out / 'val').rglob('*.png')).unlink()
    else:  # built with other parameters
        _build(run_tool, out, '--num-train-per-class', 1,
               '--num-val-per-class', 1)
    assert _tree_digest(out) != expected
    _build(run_tool, out, *args)
    assert _tree_digest(out) == expected
    # No temporary folders are left next to the output.
    assert sorted(os.listdir(tmp_path)) == ['.demo.lock', 'demo']


def test_cli_force_and_bad_sizes(run_tool, tmp_path):
    out = _build(run_tool, tmp_path / 'cli', '--num-train-per-class', 1,
                 '--num-val-per-class', 1)
    assert len(_read_ann(out, 'val')) == 8
    assert '(8 classes)' in run_tool(BUILDER, '--out', out,
                                     '--num-train-per-class', 1,
                                     '--num-val-per-class', 1).stdout
    # --force rebuilds a complete folder (same bytes, new files).
    img = next((out / 'train').rglob('*.png'))
    digest, inode = _tree_digest(out), img.stat().st_ino
    _build(run_tool, out, '--num-train-per-class', 1, '--num-val-per-class',
           1, '--force')
    assert _tree_digest(out) == digest and img.stat().st_ino != inode
    proc = run_tool(
        BUILDER, '--out', tmp_path / 'bad', '--min-size', 90, '--max-size',
        80, check=False)
    assert proc.returncode != 0
    assert 'need 1 <= min_size <= max_size' in proc.stderr
    assert not (tmp_path / 'bad').exists()
