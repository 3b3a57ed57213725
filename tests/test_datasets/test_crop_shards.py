"""Pre-cropped shards: bit-exact crops, token-store order, refusals."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from mmpretrain.datasets.transforms import PackInputs
from mmpretrain.registry import TRANSFORMS
from PIL import Image

import mapet  # noqa: F401  (registers)
from mapet.datasets.crop_shards import (CropShardError, CropShards,
                                        write_crop_shards)
from mapet.datasets.image_decode import DECODER_ID
from mapet.datasets.token_store import (TokenStore, merge_store,
                                        prepare_parts, write_chunk)
from mapet.datasets.transforms import LoadPrecroppedImage

CROP = 16
# (name, (w, h), format): landscape, portrait, odd sizes, grey, PNG.
IMAGES = [
    ('train/a/a_0.jpg', (50, 37), 'RGB'),
    ('train/a/a_1.jpg', (37, 50), 'RGB'),
    ('train/b/b_0.png', (31, 23), 'RGB'),
    ('train/b/b_1.jpg', (29, 40), 'L'),
    ('train/c/c_0.jpg', (16, 19), 'RGB'),
]
SHAPE_KEYS = ('img_shape', 'ori_shape', 'scale', 'scale_factor', 'pad_shape')


def _make_store(root: Path, relpaths, tag: str) -> Path:
    store = root / f'tokens_{tag}'
    relpaths = sorted(relpaths)
    prepare_parts(store, dict(job=tag))
    write_chunk(store, 0, np.arange(len(relpaths) * 4).reshape(-1, 4) % 16,
                16)
    merge_store(
        store, relpaths, 16, 4,
        dict(grid=[2, 2], vocab_size=16, crop='center', decoder=DECODER_ID,
             tokenizer=dict(codebook_sha256='a' * 64)))
    return store


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('crops')
    data_root = root / 'data'
    rng = np.random.default_rng(0)
    for rel, (w, h), mode in IMAGES:
        path = data_root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(arr).convert(mode).save(path)
    store = _make_store(root, [r for r, _, _ in IMAGES], 'main')
    shards = root / 'crops'
    write_crop_shards(store, data_root, shards, crop_size=CROP, chunk_size=2)
    return dict(root=root, data_root=data_root, store=store, shards=shards)


def _copy_shards(data, tmp_path) -> Path:
    out = tmp_path / 'crops'
    shutil.copytree(data['shards'], out)
    return out


def _normal_pipeline():
    return [
        TRANSFORMS.build(t) for t in (
            dict(type='LoadImageForTokens'),
            dict(type='ResizeEdge', scale=CROP, edge='short',
                 backend='pillow', interpolation='bicubic'),
            dict(type='CenterCrop', crop_size=CROP),
        )
    ]


def test_crops_equal_the_normal_pipeline_bit_for_bit(data):
    load = LoadPrecroppedImage(
        str(data['shards']), store=str(data['store']), crop_size=CROP,
        verify='full')
    rgb = LoadPrecroppedImage(
        str(data['shards']), crop_size=CROP, channel_order='rgb')
    for rel, _, _ in IMAGES:
        path = str(data['data_root'] / rel)
        expected = dict(img_path=path)
        for t in _normal_pipeline():
            expected = t(expected)
        got = load(dict(img_path=path))
        assert got['img'].dtype == np.uint8
        assert got['img'].flags.writeable
        np.testing.assert_array_equal(got['img'], expected['img'])
        # Channel-first memory: PackInputs' (3, S, S) tensor is a view.
        packed = PackInputs()(dict(got))['inputs']
        assert packed.is_contiguous() and tuple(packed.shape) == (3, CROP,
                                                                   CROP)
        assert np.shares_memory(packed.numpy(), got['img'])
        for key in SHAPE_KEYS:
            assert tuple(got[key]) == tuple(expected[key]), key
        np.testing.assert_array_equal(
            rgb(dict(img_path=path))['img'], expected['img'][..., ::-1])


def test_full_pipeline_matches_with_tokens_and_jitter(data):
    """Same tokens, same pixels after colour jitter (same per-sample RNG)."""
    tokens = dict(type='LoadVisualTokens', store=str(data['store']),
                  grid_size=2, vocab_size=16)
    jitter = dict(type='ColorJitter', brightness=0.4, contrast=0.4,
                  saturation=0.4, hue=0.)
    normal = [dict(type='LoadImageForTokens'), tokens,
              dict(type='ResizeEdge', scale=CROP, edge='short',
                   backend='pillow', interpolation='bicubic'),
              dict(type='CenterCrop', crop_size=CROP), jitter]
    pre = [dict(type='LoadPrecroppedImage', shards=str(data['shards']),
                store=str(data['store']), crop_size=CROP), tokens, jitter]
    normal = [TRANSFORMS.build(t) for t in normal]
    pre = [TRANSFORMS.build(t) for t in pre]
    for i, (rel, _, _) in enumerate(IMAGES):
        outs = []
        for pipeline in (normal, pre):
            np.random.seed(i)
            r = dict(img_path=str(data['data_root'] / rel))
            for t in pipeline:
                r = t(r)
            outs.append(r)
        np.testing.assert_array_equal(outs[0]['img'], outs[1]['img'])
        np.testing.assert_array_equal(outs[0]['visual_tokens'],
                                      outs[1]['visual_tokens'])


def test_keys_and_order_match_the_token_store(data):
    shards = CropShards(data['shards'], verify='full')
    store = TokenStore(data['store'])
    assert list(shards.index) == list(store.index)
    assert shards.manifest['index_sha256'] == store.manifest['index_sha256']
    load = LoadPrecroppedImage(str(data['shards']), store=str(data['store']),
                               crop_size=CROP)
    for row, rel in enumerate(store.relpaths()):
        assert load._row(str(data['data_root'] / rel)) == row
        assert shards.row(rel) == store.row(rel) == row
    with pytest.raises(CropShardError, match='missing from crop shards'):
        load(dict(img_path=str(data['data_root'] / 'train/z/none.jpg')))


def test_resumed_write_gives_the_same_bytes(data, tmp_path):
    out = tmp_path / 'resumed'
    assert write_crop_shards(data['store'], data['data_root'], out,
                             crop_size=CROP, chunk_size=2,
                             max_chunks=1) is None
    with pytest.raises(CropShardError, match='incomplete.*resume'):
        CropShards(out)
    manifest = write_crop_shards(data['store'], data['data_root'], out,
                                 crop_size=CROP, chunk_size=2)
    ref = json.loads((data['shards'] / 'manifest.json').read_text())
    assert manifest == ref
    assert (out / 'crops.npy').read_bytes() == \
        (data['shards'] / 'crops.npy').read_bytes()
    assert not (out / 'parts').exists()
    with pytest.raises(CropShardError, match='already holds finished'):
        write_crop_shards(data['store'], data['data_root'], out,
                          crop_size=CROP, chunk_size=2)
    assert write_crop_shards(data['store'], data['data_root'],
                             tmp_path / 'x', crop_size=CROP, chunk_size=2,
                             max_chunks=0) is None
    with pytest.raises(CropShardError, match='another job'):
        write_crop_shards(data['store'], data['data_root'], tmp_path / 'x',
                          crop_size=CROP + 1, chunk_size=2)


@pytest.mark.parametrize('edit, match', [
    (dict(crop_size=CROP + 8), 'manifest .* is invalid: shape='),
    (dict(crop='random-resized'), 'invalid: crop='),
    (dict(complete=False), 'incomplete'),
    (dict(chunk_sha256=['0' * 64] * 3), 'chunk 0 .* is corrupt'),
    (dict(crops_sha256='0' * 64), 'crops.npy is corrupt'),
    (dict(store_index_sha256='0' * 64), 'index_sha256 differs'),
])
def test_edited_manifest_is_refused(data, tmp_path, edit, match):
    out = _copy_shards(data, tmp_path)
    manifest = json.loads((out / 'manifest.json').read_text())
    manifest.update(edit)
    (out / 'manifest.json').write_text(json.dumps(manifest))
    with pytest.raises(CropShardError, match=match):
        LoadPrecroppedImage(str(out), crop_size=CROP, verify='full')


def test_truncated_or_corrupt_arrays_are_refused(data, tmp_path):
    out = _copy_shards(data, tmp_path)
    crops = out / 'crops.npy'
    crops.write_bytes(crops.read_bytes()[:-100])
    with pytest.raises(CropShardError, match='crops.npy is truncated'):
        LoadPrecroppedImage(str(out), crop_size=CROP, verify='none')
    out = _copy_shards(data, tmp_path / 'flip')
    raw = bytearray((out / 'crops.npy').read_bytes())
    raw[-1] ^= 1
    (out / 'crops.npy').write_bytes(bytes(raw))
    with pytest.raises(CropShardError, match=r'chunk 2 \(rows 4-4\)'):
        LoadPrecroppedImage(str(out), crop_size=CROP, verify='sample')
    (out / 'manifest.json').write_text('{"format": ')
    with pytest.raises(CropShardError, match='not valid JSON'):
        LoadPrecroppedImage(str(out), crop_size=CROP)


def test_store_and_pipeline_disagreement_is_refused(data, tmp_path):
    other = _make_store(tmp_path, [r for r, _, _ in IMAGES[:-1]], 'other')
    with pytest.raises(CropShardError, match='number of images.*keys/order'):
        LoadPrecroppedImage(str(data['shards']), store=str(other),
                            crop_size=CROP)
    with pytest.raises(CropShardError, match='16 px crops.*crop_size=224'):
        LoadPrecroppedImage(str(data['shards']))
    with pytest.raises(CropShardError, match='do not exist'):
        LoadPrecroppedImage(str(tmp_path / 'nothing'), crop_size=CROP)
    with pytest.raises(CropShardError, match='decoded with'):
        LoadPrecroppedImage(str(data['shards']), crop_size=CROP,
                            decoder='other/v0')
    with pytest.raises(ValueError, match='channel_order'):
        LoadPrecroppedImage(str(data['shards']), channel_order='bgra')


def test_repr(data):
    t = LoadPrecroppedImage(str(data['shards']), store=str(data['store']),
                            crop_size=CROP, data_root='d', verify='none')
    assert repr(t) == (
        f"LoadPrecroppedImage(shards={str(data['shards'])!r}, "
        f"store={str(data['store'])!r}, crop_size={CROP}, "
        "channel_order='bgr', verify='none', data_root='d')")


def test_cli_writes_and_verifies(data, tmp_path, run_tool):
    out = tmp_path / 'cli'
    proc = run_tool('tools/tokenizers/write_crop_shards.py', '--store',
                    data['store'], '--data-root', data['data_root'], '--out',
                    out, '--crop-size', CROP, '--chunk-size', 2)
    assert 'wrote 5 crops of 16 px' in proc.stdout
    assert (out / 'crops.npy').read_bytes() == \
        (data['shards'] / 'crops.npy').read_bytes()
    proc = run_tool('tools/tokenizers/write_crop_shards.py', '--verify', out,
                    '--store', data['store'])
    assert 'OK: 5 crops' in proc.stdout
    (out / 'crops.npy').write_bytes(b'')
    proc = run_tool('tools/tokenizers/write_crop_shards.py', '--verify', out,
                    check=False)
    assert proc.returncode == 1 and 'truncated' in proc.stderr


def _shipped_pipeline(config: str, data) -> list:
    """A shipped pre-training base's train pipeline, at this test's size."""
    from mmengine.config import Config
    cfg = Config.fromfile(f'configs/_base_/datasets/{config}')
    sizes = dict(ResizeEdge=dict(scale=CROP), CenterCrop=dict(crop_size=CROP),
                 RandomPatchPermutation=dict(input_size=CROP, patch_size=8),
                 LoadPrecroppedImage=dict(shards=str(data['shards']),
                                          store=str(data['store']),
                                          crop_size=CROP),
                 LoadVisualTokens=dict(store=str(data['store']), grid_size=2,
                                       vocab_size=16, codebook='a' * 64))
    return [TRANSFORMS.build(dict(t, **sizes.get(t['type'], {})))
            for t in cfg.train_dataloader.dataset.pipeline], \
        cfg.data_preprocessor


def test_precropped_config_feeds_the_model_what_the_jpeg_config_feeds(data):
    """Shards + device jitter == JPEG + CPU jitter, after preprocessing."""
    import torch
    from mmpretrain.registry import MODELS
    batches = {}
    for config in ('imagenet_mapet_pretrain.py',
                   'imagenet_mapet_pretrain_precropped.py'):
        pipeline, preprocessor = _shipped_pipeline(config, data)
        inputs, samples = [], []
        for i, (rel, _, _) in enumerate(IMAGES):
            np.random.seed(i)  # PerSampleRNG's role
            r = dict(img_path=str(data['data_root'] / rel))
            for t in pipeline:
                r = t(r)
            inputs.append(r['inputs'])
            samples.append(r['data_samples'])
        batches[config] = MODELS.build(preprocessor)(
            dict(inputs=torch.stack(inputs), data_samples=samples),
            training=True)
    jpeg, pre = batches.values()
    assert type(MODELS.build(_shipped_pipeline(
        'imagenet_mapet_pretrain_precropped.py', data)[1])).__name__ == \
        'ColorJitterDataPreprocessor'
    torch.testing.assert_close(pre['inputs'], jpeg['inputs'], rtol=0, atol=0)
    for a, b in zip(jpeg['data_samples'], pre['data_samples']):
        np.testing.assert_array_equal(a.permutation, b.permutation)
        np.testing.assert_array_equal(a.visual_tokens, b.visual_tokens)
    # Not a trivial pass: the jitter changed the pixels.
    load = LoadPrecroppedImage(str(data['shards']), crop_size=CROP)
    plain = torch.stack([
        torch.from_numpy(load(dict(img_path=str(data['data_root'] / rel)))[
            'img']).permute(2, 0, 1) for rel, _, _ in IMAGES
    ])
    unjittered = MODELS.build(_shipped_pipeline(
        'imagenet_mapet_pretrain.py', data)[1])
    assert not torch.equal(
        unjittered(dict(inputs=plain, data_samples=None))['inputs'],
        pre['inputs'])
