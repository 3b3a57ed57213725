"""fit_kclip_codebook.py, then extract_tokens.py on the demo data."""
import sys

import numpy as np
import pytest
import torch

from mapet.datasets.transforms import LoadVisualTokens
from mapet.models.tokenizers import KClipTokenizer
from mapet.models.tokenizers.codebook import load_codebook
from mapet.extraction.engines import _keep_mask, fit_kmeans
from mapet.extraction.images import CenterCropImages, list_dataset_config
from mapet.datasets.token_store import TokenStore, TokenStoreError

CONFIG = 'tests/data/configs/tokenizers_demo_dataset.py'
SIZE = 64  # RN50 stride 32 -> 2 x 2 tokens
NUM_TOKENS = 4
K = 8
FRACTION = 0.5
SEED = 3


@pytest.fixture(scope='module')
def pipeline_outputs(demo_data_root, rn50_checkpoint, load_tool, repo_root,
                     tmp_path_factory):
    work = tmp_path_factory.mktemp('kclip')
    common = [
        '--dataset-config',
        str(repo_root / CONFIG), '--split', 'val', '--data-root',
        str(demo_data_root), '--clip-model', 'RN50', '--pretrained',
        str(rn50_checkpoint), '--input-size',
        str(SIZE), '--num-workers', '0', '--no-progress'
    ]
    fit = load_tool('tools/tokenizers/fit_kclip_codebook.py')
    fit_args = common + [
        '--num-centroids',
        str(K), '--sample-fraction',
        str(FRACTION), '--seed',
        str(SEED), '--nredo', '1', '--shard-size', '32', '--work-dir',
        str(work / 'features'), '--out',
        str(work / 'codebook.npz')
    ]
    meta = fit.main(fit_args)
    extract = load_tool('tools/tokenizers/extract_tokens.py')
    manifest = extract.main(common + [
        '--codebook',
        str(work / 'codebook.npz'), '--chunk-size', '32', '--out',
        str(work / 'store')
    ])
    return dict(
        work=work, meta=meta, manifest=manifest, fit=fit, fit_args=fit_args)


def test_codebook_file(pipeline_outputs, demo_data_root, rn50_checkpoint,
                       repo_root):
    work, meta = pipeline_outputs['work'], pipeline_outputs['meta']
    centroids, loaded = load_codebook(work / 'codebook.npz')
    assert centroids.shape == (K, 2048) and centroids.dtype == np.float32
    records = list_dataset_config(
        str(repo_root / CONFIG), 'val', str(demo_data_root))
    expected_samples = sum(
        int(_keep_mask(SEED, i, NUM_TOKENS, FRACTION).sum())
        for i in range(len(records)))
    from mapet.utils.atomic import sha256_file
    assert loaded['sample_count'] == expected_samples
    assert loaded['clip_model'] == 'RN50' and loaded['layer'] == 'layer4'
    assert loaded['pretrained'] == 'sha256:' + sha256_file(rn50_checkpoint)
    assert loaded['input_size'] == SIZE and loaded['seed'] == SEED
    assert loaded['normalize'] is False
    assert loaded['centroids_sha256'] == meta['centroids_sha256']
    assert (work / 'codebook.npz.sha256').is_file()
    assert (work / 'codebook.json').is_file()
    assert len(list((work / 'features').glob('features_*.npy'))) == 3


def test_fit_resumes_from_cached_features(pipeline_outputs, monkeypatch):
    import mapet.extraction.images as images_mod
    monkeypatch.setattr(
        images_mod.CenterCropImages, '__getitem__',
        lambda *a: pytest.fail('cached features were recomputed'))
    meta = pipeline_outputs['fit'].main(pipeline_outputs['fit_args'])
    assert meta['centroids_sha256'] == \
        pipeline_outputs['meta']['centroids_sha256']


def test_store_matches_tokenizer(pipeline_outputs, demo_data_root, repo_root,
                                 rn50_checkpoint):
    work = pipeline_outputs['work']
    manifest = pipeline_outputs['manifest']
    assert manifest['grid'] == [2, 2] and manifest['vocab_size'] == K
    assert manifest['tokenizer']['codebook_sha256'] == \
        pipeline_outputs['meta']['centroids_sha256']
    assert manifest['dataset']['split'] == 'val'
    records = list_dataset_config(
        str(repo_root / CONFIG), 'val', str(demo_data_root))
    assert records[0].relpath.startswith('val/')
    tok = KClipTokenizer('RN50', str(rn50_checkpoint),
                         str(work / 'codebook.npz'))
    ds = CenterCropImages(records, SIZE, tok.mean, tok.std)
    images = torch.stack([ds[i][0] for i in range(4)])
    expected = tok(images).numpy()
    store = TokenStore(work / 'store')
    for i in range(4):
        np.testing.assert_array_equal(
            store.get(records[i].relpath), expected[i])
    # the transform through an mmpretrain dataset built from the config
    t = LoadVisualTokens(
        str(work / 'store'),
        grid_size=2,
        vocab_size=K,
        codebook=str(work / 'codebook.npz'))
    out = t(dict(img_path=records[3].path))
    np.testing.assert_array_equal(out['visual_tokens'], expected[3])


def test_store_from_another_codebook_refused(pipeline_outputs, tmp_path):
    other = tmp_path / 'other.npy'
    np.save(other, np.ones((K, 2048), np.float32))
    with pytest.raises(TokenStoreError, match='codebook: store was written'):
        LoadVisualTokens(
            str(pipeline_outputs['work'] / 'store'),
            grid_size=2,
            vocab_size=K,
            codebook=str(other))


def test_faiss_missing_message(monkeypatch):
    monkeypatch.setitem(sys.modules, 'faiss', None)
    with pytest.raises(ImportError, match=r'`cpu` extra.*`gpu` extra'):
        fit_kmeans(np.zeros((16, 4), np.float32), 2)


def test_too_few_samples():
    with pytest.raises(ValueError, match='cannot make 64 centroids'):
        fit_kmeans(np.zeros((16, 4), np.float32), 64)


def test_codebook_patches_png(pipeline_outputs, demo_data_root, load_tool,
                              tmp_path):
    from PIL import Image
    vis = load_tool('tools/visualization/codebook_patches.py')
    store = TokenStore(pipeline_outputs['work'] / 'store')
    counts = np.bincount(np.asarray(store.tokens).ravel(), minlength=K)
    out = tmp_path / 'patches.png'
    tokens = vis.main([
        '--store',
        str(pipeline_outputs['work'] / 'store'), '--image-root',
        str(demo_data_root), '--top', '2', '--per-token', '3', '--cell', '16',
        '--out',
        str(out)
    ])
    assert tokens == np.argsort(-counts, kind='stable')[:2].tolist()
    with Image.open(out) as img:
        assert img.size == (vis.LABEL_WIDTH + 3 * (16 + vis.PAD),
                            2 * (16 + vis.PAD))
