"""Weighted k-NN (against a brute-force reference), its feature extraction
across processes, the k-NN tool and the objectives study end to end.

The two tools run in-process through their ``main(argv)`` (a subprocess
would pay the interpreter start-up and the mmpretrain import each time)."""
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from PIL import Image

from mapet.evaluation.knn import (extract_features, knn_accuracy,
                                  weighted_knn_predict)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _brute_force(train, ytr, test, num_classes, k, t):
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    test = test / np.linalg.norm(test, axis=1, keepdims=True)
    out = np.zeros((len(test), num_classes))
    for i, q in enumerate(test):
        sims = train @ q
        for j in np.argsort(-sims, kind='stable')[:k]:
            out[i, ytr[j]] += np.exp(sims[j] / t)
    return out


@pytest.mark.parametrize('k,t,chunk', [(20, 0.07, 7), (5, 0.5, 1000),
                                       (1000, 0.07, 16)])
def test_weighted_knn_matches_brute_force(k, t, chunk):
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (4, 16))
    ytr = rng.integers(0, 4, 120)
    yte = rng.integers(0, 4, 37)
    train = centres[ytr] + rng.normal(0, 1.5, (120, 16))
    test = centres[yte] + rng.normal(0, 1.5, (37, 16))
    ref = _brute_force(train, ytr, test, 4, min(k, 120), t)
    got = weighted_knn_predict(
        torch.tensor(train, dtype=torch.float32), torch.tensor(ytr),
        torch.tensor(test, dtype=torch.float32), 4, k=k, temperature=t,
        chunk_size=chunk).double().numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4)
    acc = knn_accuracy(
        torch.tensor(train, dtype=torch.float32), torch.tensor(ytr),
        torch.tensor(test, dtype=torch.float32), torch.tensor(yte), 4, k=k,
        temperature=t, chunk_size=chunk, topk=(1, 2, 5))
    expected = 100 * np.mean(ref.argmax(1) == yte)
    assert acc['knn/top1'] == pytest.approx(expected)
    assert 'knn/top5' not in acc  # only 4 classes
    # well separated clusters are learnable: far above chance (25 %)
    if k == 20:
        assert acc['knn/top1'] > 60


def test_knn_feature_scale_invariance_and_errors():
    rng = np.random.default_rng(1)
    tr = torch.tensor(rng.normal(size=(30, 8)), dtype=torch.float32)
    te = torch.tensor(rng.normal(size=(9, 8)), dtype=torch.float32)
    y = torch.tensor(rng.integers(0, 3, 30))
    a = weighted_knn_predict(tr, y, te, 3)
    b = weighted_knn_predict(tr * 7.5, y, te * 0.1, 3)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=0)
    with pytest.raises(ValueError, match='labels outside'):
        weighted_knn_predict(tr, y + 3, te, 3)
    with pytest.raises(ValueError, match='dimension'):
        weighted_knn_predict(tr, y, te[:, :4], 3)


def test_extract_features_distributed_gathers_in_dataset_order(tmp_path):
    from knn_dist_worker import Toy, rank_main  # tests/helpers
    single_f, single_y = extract_features(lambda b: b[0] * 2, Toy(),
                                          batch_size=4, num_workers=0)
    assert single_f[:, 0].tolist() == [2.0 * i for i in range(11)]
    torch.multiprocessing.spawn(
        rank_main, args=(2, str(tmp_path / 'init'), str(tmp_path)),
        nprocs=2, join=True)
    for r in range(2):
        f, y = torch.load(tmp_path / f'rank{r}.pt')
        torch.testing.assert_close(f, single_f)
        assert y.tolist() == single_y.tolist() == [i % 4 for i in range(11)]


def _tiny_dataset(root, size, classes=3, n_train=6, n_val=3):
    rng = np.random.default_rng(0)
    for split, n in (('train', n_train), ('val', n_val)):
        lines = []
        for c in range(classes):
            colour = np.array([255 * (c == 0), 255 * (c == 1), 255 * (c == 2)])
            for i in range(n):
                img = np.clip(colour * 0.7 + rng.normal(0, 40, (size, size, 3)),
                              0, 255).astype(np.uint8)
                rel = f'c{c}/c{c}_{i}.png'
                os.makedirs(osp.join(root, split, f'c{c}'), exist_ok=True)
                Image.fromarray(img).save(osp.join(root, split, rel))
                lines.append(f'{rel} {c}')
        os.makedirs(osp.join(root, 'meta'), exist_ok=True)
        with open(osp.join(root, 'meta', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(lines) + '\n')


def _tool(name):
    """The package module behind a ``tools/`` command line: its
    ``main(argv)`` runs in-process (no interpreter start-up per call)."""
    import importlib
    return importlib.import_module(name)


def test_objective_study_end_to_end(tmp_path, capsys):
    data = str(tmp_path / 'data')
    _tiny_dataset(data, 40)
    out = str(tmp_path / 'out')
    state = torch.get_rng_state(), torch.get_num_threads()
    try:
        _tool('mapet.evaluation.study_cli').main([
            '--data-root', data, '--out', out, '--tokenizer', 'pixel',
            '--img-size', '32', '--patch-size', '8', '--layers', '1',
            '--dim', '32', '--heads', '2', '--epochs', '1',
            '--warmup-epochs', '0', '--batch-size', '8', '--seeds', '0', '1',
            '--probe-seeds', '0', '1', '--probe-epochs', '3',
            '--vocab-size', '8', '--num-crops', '1', '--augments', 'jitter',
            'views'
        ])
    finally:
        torch.set_rng_state(state[0])
        torch.set_num_threads(state[1])
    printed = capsys.readouterr().out
    # one progress line per epoch and a result line per model, no
    # per-parameter initialisation dump
    assert 'TruncNormalInit' not in printed
    assert printed.count('mapet/jitter seed 0:') == 1
    result = json.load(open(osp.join(out, 'study.json')))
    meta = result['meta']
    assert (meta['n_train'], meta['n_val'], meta['num_classes']) == (18, 9, 3)
    assert meta['chance'] == pytest.approx(100 / 3)
    assert meta['views_per_image'] == 3  # centre, flip, one crop
    # pixels reference + 2 seeds x (4 objectives x 2 augments + random)
    assert len(result['runs']) == 1 + 2 * (4 * 2 + 1)
    rows = {(r['objective'], r['augment']): r for r in result['summary']}
    assert set(rows) == {('pixels', '-'), ('random', '-')} | {
        (o, a) for o in ('mapet', 'pim', 'mim', 'beit')
        for a in ('jitter', 'views')
    }
    for key, row in rows.items():
        if key[0] != 'pixels':
            assert row['seeds'] == [0, 1]
        for m in ('knn_mean', 'linear_mean'):
            assert 0 <= row[m] <= 100
        # accuracies on 9 images are multiples of 100/9
        runs = [r for r in result['runs']
                if (r['objective'], r['augment']) == key]
        for r in runs:
            assert len(r['linear_top1']) == 2
            assert (r['knn_top1'] * 9 / 100) == pytest.approx(
                round(r['knn_top1'] * 9 / 100), abs=1e-6)
        knn = [r['knn_top1'] for r in runs]
        assert row['knn_mean'] == pytest.approx(np.mean(knn))
        assert row['knn_std'] == pytest.approx(
            np.std(knn, ddof=1) if len(knn) > 1 else 0.0)
    trained = [r for r in result['runs'] if r['objective'] == 'mapet']
    assert all(r['pretrain']['iterations'] == 2 for r in trained)
    # colour classes: raw pixels separate them
    assert rows[('pixels', '-')]['knn_mean'] > 90
    png = osp.join(out, 'study.png')
    assert osp.getsize(png) > 10000

    # --resume: an interrupted study (its .partial) is finished for the
    # seeds asked without pre-training again, with the same numbers
    with open(osp.join(out, 'study.json.partial'), 'w') as f:
        json.dump(dict(config=result['config'], runs=result['runs'][:10]), f)
    study = _tool('mapet.evaluation.study_cli')
    args = ['--data-root', data, '--out', out, '--tokenizer', 'pixel',
            '--img-size', '32', '--patch-size', '8', '--layers', '1',
            '--dim', '32', '--heads', '2', '--epochs', '1',
            '--warmup-epochs', '0', '--batch-size', '8', '--seeds', '0',
            '--probe-seeds', '0', '1', '--probe-epochs', '3',
            '--vocab-size', '8', '--num-crops', '1', '--augments', 'jitter',
            'views', '--resume']
    again = study.main(args)
    printed = capsys.readouterr().out
    assert printed.count('reused from') == 9 and 'epoch 1/1' not in printed
    assert again['runs'] == result['runs'][:10]
    assert again['meta']['resumed_runs'] == 9
    assert not osp.exists(osp.join(out, 'study.json.partial'))
    # other settings: refused, not mixed
    with open(osp.join(out, 'study.json.partial'), 'w') as f:
        json.dump(dict(config=result['config'], runs=result['runs'][:2]), f)
    with pytest.raises(ValueError, match='other settings'):
        study.main([a if a != '3' else '4' for a in args])


def test_knn_tool_verified_load_and_wrong_prefix(tmp_path, capsys,
                                                 monkeypatch):
    from mmengine.config import Config
    from mmpretrain.registry import MODELS

    import mapet  # noqa: F401
    monkeypatch.chdir(REPO)  # the tool reads configs/ relative paths
    data = str(tmp_path / 'data')
    _tiny_dataset(data, 96, n_train=5, n_val=2)
    cfg = Config.fromfile(osp.join(REPO, 'configs/demo/vit-t6-p16_knn_demo.py'))
    bb = dict(cfg.model.backbone, type='MaPeTViT', init_cfg=None,
              out_type='raw')
    bb.pop('frozen_stages')
    torch.manual_seed(0)
    net = MODELS.build(bb)
    ckpt = str(tmp_path / 'pre.pth')
    torch.save({'state_dict': {f'backbone.{k}': v
                               for k, v in net.state_dict().items()}}, ckpt)
    bad = str(tmp_path / 'bad.pth')
    torch.save({'state_dict': net.state_dict()}, bad)
    opts = ['--num-workers', '0', '--cfg-options',
            f'knn_train_dataloader.dataset.data_root={data}',
            f'val_dataloader.dataset.data_root={data}']
    knn_eval = _tool('mapet.evaluation.knn_cli')
    out = str(tmp_path / 'knn.json')
    state = torch.get_rng_state()
    try:
        knn_eval.main(['configs/demo/vit-t6-p16_knn_demo.py',
                       '--checkpoint', ckpt, '--out', out] + opts)
        printed = capsys.readouterr().out
        assert 'verified load:' in printed
        res = json.load(open(out))
        assert (res['num_train'], res['num_val'],
                res['num_classes']) == (15, 6, 3)
        assert res['k'] == 20 and res['temperature'] == 0.07
        assert res['checkpoint_keys_loaded'] == len(net.state_dict()) - 1
        assert res['checkpoint_keys_unexpected'] == ['mask_token']
        assert 0 <= res['metrics']['knn/top1'] <= 100
        # keys without the `backbone.` prefix: refused, not a random
        # backbone scored
        with pytest.raises((RuntimeError, ValueError)) as err:
            knn_eval.main(['configs/demo/vit-t6-p16_knn_demo.py',
                           '--checkpoint', bad] + opts)
        assert 'backbone.' in str(err.value) and 'bad.pth' in str(err.value)
        assert 'k-NN (k=' not in capsys.readouterr().out
    finally:
        torch.set_rng_state(state)
