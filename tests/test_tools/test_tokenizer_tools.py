"""fit_kclip_codebook.py, then extract_tokens.py on the demo data.

The tools run as subprocesses (``tools`` is no package); the checks read
the codebook, feature cache and token store they write.
"""
import re
import shutil
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
FIT = 'tools/tokenizers/fit_kclip_codebook.py'
EXTRACT = 'tools/tokenizers/extract_tokens.py'
PATCHES = 'tools/visualization/codebook_patches.py'
# codebook_patches.py's layout: a label column, then cells with padding
LABEL_WIDTH, PAD = 72, 2


@pytest.fixture(scope='module')
def pipeline_outputs(demo_data_root, rn50_checkpoint, run_tool, repo_root,
                     tmp_path_factory):
    work = tmp_path_factory.mktemp('kclip')
    common = [
        '--dataset-config',
        str(repo_root / CONFIG), '--split', 'val', '--data-root',
        str(demo_data_root), '--clip-model', 'RN50', '--pretrained',
        str(rn50_checkpoint), '--input-size',
        str(SIZE), '--num-workers', '0', '--no-progress'
    ]
    fit_args = [
        '--num-centroids',
        str(K), '--sample-fraction',
        str(FRACTION), '--seed',
        str(SEED), '--nredo', '1', '--shard-size', '32', '--work-dir',
        str(work / 'features')
    ]
    proc = run_tool(FIT, *common, *fit_args, '--out', work / 'codebook.npz')
    meta = load_codebook(work / 'codebook.npz')[1]
    assert f'sha256 {meta["centroids_sha256"]}' in proc.stdout
    proc = run_tool(EXTRACT, *common, '--codebook', work / 'codebook.npz',
                    '--chunk-size', '32', '--out', work / 'store')
    manifest = TokenStore(work / 'store').manifest
    assert (f'token store: {manifest["num_images"]} images x '
            f'{NUM_TOKENS} tokens') in proc.stdout
    return dict(
        work=work, meta=meta, manifest=manifest, common=common,
        fit_args=fit_args)


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


def test_fit_resumes_from_cached_features(pipeline_outputs, demo_data_root,
                                          run_tool, tmp_path):
    """A rerun reads the cached shards only: every image may be unreadable."""
    # Same annotation files, every image an empty (unreadable) file.
    broken = tmp_path / 'broken'
    shutil.copytree(demo_data_root / 'meta', broken / 'meta')
    for image in (demo_data_root / 'val').rglob('*.png'):
        target = broken / image.relative_to(demo_data_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()
    common = list(pipeline_outputs['common'])
    common[common.index('--data-root') + 1] = str(broken)
    work = pipeline_outputs['work']
    shards = sorted((work / 'features').glob('features_*.npy'))
    stamps = [p.stat().st_mtime_ns for p in shards]
    out = tmp_path / 'codebook.npz'
    run_tool(FIT, *common, *pipeline_outputs['fit_args'], '--out', out)
    assert load_codebook(out)[1]['centroids_sha256'] == \
        pipeline_outputs['meta']['centroids_sha256']
    assert [p.stat().st_mtime_ns for p in shards] == stamps
    # Without one cached shard the same command must read images, and fails.
    partial = tmp_path / 'partial'
    shutil.copytree(work / 'features', partial)
    (partial / shards[-1].name).unlink()
    args = list(pipeline_outputs['fit_args'])
    args[args.index('--work-dir') + 1] = str(partial)
    proc = run_tool(FIT, *common, *args, '--out', tmp_path / 'other.npz',
                    check=False)
    assert proc.returncode != 0 and 'ImageDecodeError' in proc.stderr


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


def test_codebook_patches_png(pipeline_outputs, demo_data_root, run_tool,
                              repo_root, tmp_path):
    from PIL import Image
    store = TokenStore(pipeline_outputs['work'] / 'store')
    counts = np.bincount(np.asarray(store.tokens).ravel(), minlength=K)
    out = tmp_path / 'patches.png'
    proc = run_tool(PATCHES, '--store', pipeline_outputs['work'] / 'store',
                    '--image-root', demo_data_root, '--top', '2',
                    '--per-token', '3', '--cell', '16', '--out', out)
    printed = re.search(r'tokens \[(.*)\]', proc.stdout)[1]
    tokens = [int(t) for t in printed.split(',')]
    assert tokens == np.argsort(-counts, kind='stable')[:2].tolist()
    with Image.open(out) as img:
        assert img.size == (LABEL_WIDTH + 3 * (16 + PAD), 2 * (16 + PAD))
    # --title: a caption band above the same grid (in-process: no startup)
    from mapet.visualization import codebook_patches as tool
    titled = tmp_path / 'titled.png'
    assert tool.main([
        '--store', str(pipeline_outputs['work'] / 'store'), '--image-root',
        str(demo_data_root), '--top', '2', '--per-token', '3', '--cell', '16',
        '--title', 'random CLIP tower\\nline two', '--out', str(titled)
    ]) == tokens
    with Image.open(out) as plain, Image.open(titled) as img:
        band = 2 * tool.TITLE_LINE + 2 * PAD
        assert img.size == (plain.width, plain.height + band)
        # the grid is unchanged below the caption, the caption is not blank
        assert np.array_equal(np.asarray(img)[band:], np.asarray(plain))
        assert np.asarray(img)[:band].min() < 128
