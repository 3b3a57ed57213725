"""tools/dataset_converters/make_demo_dataset.py and tests/conftest.py."""
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _tree_digest(root: Path) -> dict:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob('*')) if p.is_file()
    }


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


def test_deterministic_and_idempotent(demo_builder, tmp_path):
    kwargs = dict(num_train_per_class=3, num_val_per_class=2, seed=1)
    a = Path(demo_builder.make_demo_dataset(str(tmp_path / 'a'), **kwargs))
    b = Path(demo_builder.make_demo_dataset(str(tmp_path / 'b'), **kwargs))
    assert _tree_digest(a) == _tree_digest(b)
    assert len(_tree_digest(a)) == 8 * 5 + 4  # images + 4 meta files

    # A complete build is reused as is (no rewrite).
    img = next((a / 'train').rglob('*.png'))
    mtime = img.stat().st_mtime_ns
    demo_builder.make_demo_dataset(str(a), **kwargs)
    assert img.stat().st_mtime_ns == mtime

    # Another seed gives other crops.
    c = Path(demo_builder.make_demo_dataset(str(tmp_path / 'c'),
                                            **dict(kwargs, seed=2)))
    assert _tree_digest(c) != _tree_digest(a)


@pytest.mark.parametrize('damage', ['fingerprint', 'image', 'param'])
def test_incomplete_or_stale_build_is_rebuilt(demo_builder, tmp_path,
                                              damage):
    kwargs = dict(num_train_per_class=2, num_val_per_class=1)
    out = tmp_path / 'demo'
    demo_builder.make_demo_dataset(str(out), **kwargs)
    expected = _tree_digest(out)
    fp = demo_builder.fingerprint(demo_builder.DEFAULT_SOURCES, 2, 1, 64, 96,
                                  0)
    assert demo_builder.is_complete(str(out), fp)
    if damage == 'fingerprint':  # a run killed before its last write
        (out / 'meta' / 'fingerprint.json').unlink()
    elif damage == 'image':
        next((out / 'val').rglob('*.png')).unlink()
    else:  # built with other parameters
        demo_builder.make_demo_dataset(
            str(out), num_train_per_class=1, num_val_per_class=1)
    assert not demo_builder.is_complete(str(out), fp)
    demo_builder.make_demo_dataset(str(out), **kwargs)
    assert _tree_digest(out) == expected
    # No temporary folders are left next to the output.
    assert sorted(os.listdir(tmp_path)) == ['.demo.lock', 'demo']


def test_cli(demo_builder, tmp_path, capsys):
    out, num_classes = demo_builder.main([
        '--out',
        str(tmp_path / 'cli'), '--num-train-per-class', '1',
        '--num-val-per-class', '1'
    ])
    assert num_classes == 8
    assert 'demo dataset ready' in capsys.readouterr().out
    assert len(_read_ann(Path(out), 'val')) == 8
