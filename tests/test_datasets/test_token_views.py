"""Augmentation-aware token stores: every stored view's tokens are the
tokens of the image the training transform produces for that view."""
import json
import os.path as osp

import numpy as np
import pytest
import torch
from PIL import Image

import mapet  # noqa: F401
from mapet.datasets.token_store import TokenStoreError
from mapet.datasets.token_views import (ViewTokenStore, render_view,
                                        sample_views, view_key)
from mapet.extraction.images import ImageRecord
from mapet.extraction.views import extract_view_tokens
from mapet.models.tokenizers.pixel import PixelKMeansTokenizer

SIZE = 32
STRIDE = 8
NUM_CROPS = 3


def _images(root):
    rng = np.random.default_rng(0)
    records = []
    # different sizes and aspect ratios; PNG so every decoder agrees
    for i, (w, h) in enumerate([(57, 40), (40, 61), (48, 48), (90, 33)]):
        rel = f'train/c{i % 2}/img_{i}.png'
        path = osp.join(root, rel)
        import os
        os.makedirs(osp.dirname(path), exist_ok=True)
        # smooth structure + noise so that crops and flips change tokens
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx * 255 / w, yy * 255 / h,
                         (xx + yy) * 127 / (w + h)], -1)
        img = np.clip(base + rng.normal(0, 40, base.shape), 0, 255)
        Image.fromarray(img.astype(np.uint8)).save(path)
        records.append(ImageRecord(rel, path))
    return records


@pytest.fixture(scope='module')
def view_store(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('views'))
    records = _images(root)
    rng = np.random.default_rng(1)
    centroids = rng.normal(0, 1, (16, 3 * STRIDE * STRIDE)).astype('f4')
    tok = PixelKMeansTokenizer(centroids, stride=STRIDE, pool=1,
                               input_size=SIZE)
    out = osp.join(root, 'store')
    manifest = extract_view_tokens(tok, records, out, num_crops=NUM_CROPS,
                                   flip=True, seed=3, chunk_size=5,
                                   batch_size=4, num_workers=0,
                                   progress=False)
    return root, records, tok, out, manifest


def _tokenize_bgr(tok, bgr):
    rgb = torch.from_numpy(bgr[..., ::-1].copy()).permute(2, 0, 1).float()
    x = rgb[None] / 255.
    mean = torch.tensor(tok.mean).view(1, 3, 1, 1)
    std = torch.tensor(tok.std).view(1, 3, 1, 1)
    return tok((x - mean) / std)[0].numpy()


def test_store_layout(view_store):
    root, records, tok, out, manifest = view_store
    store = ViewTokenStore(out)
    store.verify()
    v = 2 + NUM_CROPS
    assert store.views_per_image == v
    assert manifest['crop'] == 'views' and manifest['num_images'] == 4 * v
    assert store.tokens.shape == (4 * v, (SIZE // STRIDE)**2)
    for rec in records:
        with Image.open(rec.path) as im:
            expected = sample_views(rec.relpath, im.width, im.height,
                                    NUM_CROPS, True, (0.35, 1.0),
                                    (3 / 4, 4 / 3), 3)
        got = np.stack([store.get_view(rec.relpath, k)[1] for k in range(v)])
        np.testing.assert_array_equal(got, expected)
        # view 0 centre square, view 1 its mirror, crops inside the image
        assert got[0, 4] == 0 and got[1, 4] == 1
        np.testing.assert_array_equal(got[0, :4], got[1, :4])
        assert (got[:, 0] + got[:, 2] <= im.width).all()
        assert (got[:, 1] + got[:, 3] <= im.height).all()
    # the views really differ (else the test below would be vacuous)
    t = np.stack([store.get_view(records[0].relpath, k)[0]
                  for k in range(v)])
    assert len({row.tobytes() for row in t}) == v


def test_every_view_tokens_equal_tokenized_transformed_image(view_store):
    from mapet.datasets.transforms import LoadImageForTokens

    from mapet.datasets.transforms import LoadVisualTokenView
    root, records, tok, out, _ = view_store
    load = LoadImageForTokens()
    checked = 0
    for k in range(2 + NUM_CROPS):
        t = LoadVisualTokenView(out, size=SIZE, grid_size=SIZE // STRIDE,
                                vocab_size=16, views=[k])
        for rec in records:
            res = t(load(dict(img_path=osp.join(root, rec.relpath))))
            assert res['img'].shape == (SIZE, SIZE, 3)
            assert res['token_view_index'] == k
            np.testing.assert_array_equal(
                res['visual_tokens'], _tokenize_bgr(tok, res['img']))
            # and the box it applied is the stored one
            np.testing.assert_array_equal(
                res['token_view'], ViewTokenStore(out).get_view(
                    rec.relpath, k)[1])
            checked += 1
    assert checked == 4 * (2 + NUM_CROPS)


def test_random_view_choice_and_other_output_size(view_store):
    from mapet.datasets.transforms import LoadImageForTokens

    from mapet.datasets.transforms import LoadVisualTokenView
    root, records, tok, out, _ = view_store
    t = LoadVisualTokenView(out, size=48, grid_size=SIZE // STRIDE,
                            vocab_size=16)
    np.random.seed(0)
    seen = set()
    for _ in range(30):
        res = t(LoadImageForTokens()(dict(
            img_path=osp.join(root, records[2].relpath))))
        seen.add(res['token_view_index'])
        # backbone resolution differs from the tokenizer's: same box
        with Image.open(osp.join(root, records[2].relpath)) as im:
            ref = np.asarray(render_view(im.convert('RGB'),
                                         res['token_view'], 48))
        np.testing.assert_array_equal(res['img'][..., ::-1], ref)
    assert seen == set(range(2 + NUM_CROPS))


def test_corrupt_views_and_plain_store_refused(view_store, tmp_path):
    import shutil
    root, records, tok, out, _ = view_store
    bad = str(tmp_path / 'bad')
    shutil.copytree(out, bad)
    views = np.load(osp.join(bad, 'views.npy'))
    views[0, 0] += 1
    np.save(osp.join(bad, 'views.npy'), views)
    with pytest.raises(TokenStoreError, match='views.npy .* corrupt'):
        ViewTokenStore(bad).verify()
    # a view store is not a centre-crop store, and vice versa
    from mapet.datasets.transforms import LoadVisualTokens
    with pytest.raises(TokenStoreError, match='crop'):
        LoadVisualTokens(out, grid_size=4, vocab_size=16)
    manifest = json.load(open(osp.join(out, 'manifest.json')))
    assert manifest['views']['num_views'] == 2 + NUM_CROPS
    assert view_key('a/b.png', 3) == 'a/b.png#v03'
