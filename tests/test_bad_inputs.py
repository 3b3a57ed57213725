"""Bad inputs: every case fails early with an error that names the problem.

Configs (cutting point, image/patch sizes, vocabularies, token grids,
unknown keys), data (token stores, corrupt images, empty folders), training
(NaN loss, resuming with another batch size) and launch (more processes
than GPUs). Each test asserts the exception type and the words a user
needs to fix the problem.
"""
import os.path as osp
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmpretrain.registry import DATASETS, HOOKS, MODELS, TRANSFORMS
from mmpretrain.structures import DataSample
from torch.utils.data import DataLoader

import mapet  # noqa: F401
from mapet.datasets.empty_check import EmptyDatasetError
from mapet.datasets.robust_loading import (CorruptImageError,
                                           num_corrupt_skipped,
                                           reset_corrupt_skipped)
from mapet.engine.hooks.nan_guard import NonFiniteLossError
from mapet.engine.runner.loops import (ExactResumeEpochBasedTrainLoop,
                                       check_dataset_not_empty)
from mapet.tokenizers.token_store import (TokenStoreError, merge_store,
                                          prepare_parts, write_chunk)
from mapet.utils.dist_env import check_gpu_count

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'tests' / 'data'))  # CoreTinyTokenizer
RESUME_CONFIG = REPO / 'tests' / 'data' / 'configs' / \
    'reliability_mapet_resume.py'

ARCH = dict(embed_dims=64, num_layers=2, num_heads=2, feedforward_channels=128)
BACKBONE = dict(
    type='MaPeTViT', arch=ARCH, img_size=32, patch_size=8, mode='mapet',
    cutting_point=4)
HEAD = dict(type='TwoStreamHead', embed_dims=64, num_embed=16)


# --------------------------------------------------------------- configs
@pytest.mark.parametrize('cutting_point', [0, 16])
def test_cutting_point_outside_1_to_n_minus_1(cutting_point):
    with pytest.raises(ValueError, match=r'outside \[1, N-1\] = \[1, 15\]'):
        MODELS.build(dict(BACKBONE, cutting_point=cutting_point))


def test_image_size_not_divisible_by_patch_size():
    with pytest.raises(ValueError, match=r'img_size \(30, 30\) is not '
                       r'divisible by the patch size \(8, 8\)'):
        MODELS.build(dict(BACKBONE, img_size=30))
    with pytest.raises(ValueError, match='not divisible by patch_size'):
        TRANSFORMS.build(
            dict(type='PermutationMaskGenerator', input_size=30,
                 patch_size=8))


def test_token_grid_differs_from_patch_grid():
    model = MODELS.build(dict(type='MaPeT', backbone=BACKBONE, head=HEAD))
    samples = []
    for _ in range(2):
        sample = DataSample()
        sample.set_field(torch.randperm(16), 'permutation')
        sample.set_field(torch.zeros(9, dtype=torch.long), 'visual_tokens')
        samples.append(sample)
    with pytest.raises(ValueError, match=r'token grid has 9 tokens per '
                       r'image but the backbone sees a 4x4 patch grid'):
        model.loss(torch.randn(2, 3, 32, 32), samples)


def test_head_vocab_differs_from_tokenizer_vocab():
    import core_tiny_tokenizer  # noqa: F401  (registers CoreTinyTokenizer)
    with pytest.raises(ValueError, match=r'head predicts 16 visual tokens '
                       r'but the target_generator has vocab_size=32'):
        MODELS.build(
            dict(
                type='MaPeT',
                backbone=BACKBONE,
                head=HEAD,
                target_generator=dict(
                    type='CoreTinyTokenizer', vocab_size=32, patch_size=8)))


def test_codebook_dim_differs_from_clip_tower(tmp_path):
    from mapet.models.tokenizers.kclip import KClipTokenizer
    path = tmp_path / 'codebook.npy'
    np.save(path, np.random.rand(8, 5).astype(np.float32))
    with pytest.raises(ValueError, match='has dimension 5 but RN50 layer4 '
                       'features have 2048'):
        KClipTokenizer('RN50', pretrained=None, codebook=str(path))


@pytest.mark.parametrize('cfg, registry', [
    (dict(BACKBONE), MODELS),
    (dict(HEAD), MODELS),
    (dict(type='MaPeT', backbone=BACKBONE, head=HEAD), MODELS),
    (dict(type='PermutationMaskGenerator', input_size=32, patch_size=8),
     TRANSFORMS),
    (dict(type='SafeLoadImageFromFile'), TRANSFORMS),
    (dict(type='NaNGuardHook'), HOOKS),
])
def test_unknown_config_key_is_named(cfg, registry):
    with pytest.raises(TypeError, match="unexpected keyword argument "
                       "'cuting_point'"):
        registry.build(dict(cfg, cuting_point=4))


@pytest.mark.parametrize('cfg, message', [
    (dict(type='PermutationMaskGenerator', input_size=32, patch_size=8,
          mode='mim', num_masking_patches=16), r'must lie in \[1, 15\]'),
    (dict(type='PermutationMaskGenerator', input_size=32, patch_size=8,
          mode='beit'), "Unknown mode 'beit'"),
    (dict(type='SafeLoadImageFromFile', on_corrupt='ignore'),
     "on_corrupt must be 'error' or 'skip'"),
])
def test_invalid_option_values_are_named(cfg, message):
    with pytest.raises(ValueError, match=message):
        TRANSFORMS.build(cfg)


# ------------------------------------------------------------ token store
@pytest.fixture(scope='module')
def token_store(tmp_path_factory, demo_data_root) -> Path:
    """A 2x2-token store for two demo images, codebook sha 'a' * 64."""
    root = tmp_path_factory.mktemp('store') / 'tokens'
    relpaths = sorted(['train/cat/cat_00000.png', 'train/cat/cat_00001.png'])
    prepare_parts(root, dict(job='bad-inputs'))
    write_chunk(root, 0, np.arange(8).reshape(2, 4) % 16, 16)
    merge_store(
        root, relpaths, 16, 4,
        dict(grid=[2, 2], vocab_size=16, crop='center',
             tokenizer=dict(codebook_sha256='a' * 64)))
    return root


@pytest.mark.parametrize('kwargs, message', [
    (dict(codebook='b' * 64), 'store was written with codebook sha256 a'),
    (dict(crop='random'), "crop: store 'center', expected 'random'"),
    (dict(grid_size=4), r'grid size: store \(2, 2\), expected \(4, 4\)'),
])
def test_token_store_from_other_codebook_crop_or_grid(token_store, kwargs,
                                                      message):
    args = dict(type='LoadVisualTokens', store=str(token_store), grid_size=2,
                vocab_size=16)
    args.update(kwargs)
    with pytest.raises(TokenStoreError, match=message):
        TRANSFORMS.build(args)


def test_token_store_missing_image(token_store, demo_data_root):
    t = TRANSFORMS.build(
        dict(type='LoadVisualTokens', store=str(token_store), grid_size=2,
             vocab_size=16, data_root=str(demo_data_root)))
    ok = t(dict(img_path=str(demo_data_root / 'train/cat/cat_00001.png')))
    assert ok['visual_tokens'].tolist() == [4, 5, 6, 7]
    with pytest.raises(TokenStoreError, match='cat_00002.png is missing '
                       'from token store'):
        t(dict(img_path=str(demo_data_root / 'train/cat/cat_00002.png')))


# ----------------------------------------------------------------- images
@pytest.fixture
def broken_images(tmp_path, demo_data_root):
    """A folder dataset: 4 good images, 1 truncated, 1 not an image."""
    good = sorted((demo_data_root / 'train' / 'cat').glob('*.png'))[:4]
    folder = tmp_path / 'data' / 'cat'
    folder.mkdir(parents=True)
    for path in good:
        (folder / path.name).write_bytes(path.read_bytes())
    data = good[0].read_bytes()
    (folder / 'truncated.png').write_bytes(data[:len(data) // 2])
    (folder / 'garbage.png').write_bytes(b'not an image at all')
    return tmp_path / 'data'


def _dataset(root: Path, on_corrupt: str, **kw):
    return DATASETS.build(
        dict(
            type='CustomDataset',
            data_root=str(root),
            with_label=False,
            pipeline=[
                dict(type='SafeLoadImageFromFile', on_corrupt=on_corrupt,
                     **kw),
                dict(type='Resize', scale=(16, 16)),
                dict(type='PackInputs'),
            ]))


def test_corrupt_image_error_names_file_and_option(broken_images):
    ds = _dataset(broken_images, 'error')
    # Even from a dataloader worker the message names file and option.
    loader = DataLoader(ds, batch_size=6, num_workers=1,
                        collate_fn=lambda x: x)
    with pytest.raises(CorruptImageError, match=r'Corrupt image .*'
                       r'(garbage|truncated)\.png: cannot be decoded.*'
                       'on_corrupt="skip"'):
        next(iter(loader))


def test_corrupt_images_skipped_with_count(broken_images):
    reset_corrupt_skipped()
    try:
        ds = _dataset(broken_images, 'skip')
        samples = [ds[i] for i in range(len(ds))]  # refetches replace them
        assert len(samples) == 6 and all(s is not None for s in samples)
        assert num_corrupt_skipped() >= 2
        assert repr(ds.pipeline.transforms[0]) == (
            "SafeLoadImageFromFile(on_corrupt='skip', max_skipped=100, "
            "to_float32=False, color_type='color', imdecode_backend='cv2', "
            'backend_args=None)')
        strict = _dataset(broken_images, 'skip', max_skipped=0)
        bad = [i for i in range(len(ds))
               if 'truncated' in ds.get_data_info(i)['img_path']]
        with pytest.raises(CorruptImageError, match='more than '
                           'max_skipped=0: the dataset is damaged'):
            strict.pipeline(strict.get_data_info(bad[0]))
    finally:
        reset_corrupt_skipped()


def test_empty_dataset_folder(tmp_path):
    (tmp_path / 'train').mkdir()
    with pytest.raises(RuntimeError, match='Found 0 files in subfolders'):
        DATASETS.build(
            dict(type='CustomDataset', data_root=str(tmp_path),
                 data_prefix='train', pipeline=[]))
    # An annotation file without lines: MMEngine alone fails with
    # "need at least one array to concatenate"; we name the dataset.
    (tmp_path / 'empty.txt').write_text('')
    cfg = dict(type='CustomDataset', data_root=str(tmp_path),
               ann_file='empty.txt', data_prefix='train', pipeline=[])
    with pytest.raises(EmptyDatasetError, match=r'Dataset is empty '
                       r"\(CustomDataset, data_root='.*ann_file='.*empty.txt"):
        DATASETS.build(cfg)
    # Not serialised: the training loop's check refuses it.
    ds = DATASETS.build(dict(cfg, serialize_data=False))
    with pytest.raises(EmptyDatasetError, match='train dataloader: Dataset '
                       'is empty'):
        check_dataset_not_empty(DataLoader(ds, batch_size=2))
    few = DATASETS.build(
        dict(type='CustomDataset', data_root=str(REPO / 'data' / 'demo'),
             ann_file='meta/train.txt', data_prefix='train', indices=3,
             pipeline=[]))
    with pytest.raises(EmptyDatasetError, match='yields no batch: 3 '
                       'samples with batch_size=4 and drop_last=True'):
        check_dataset_not_empty(DataLoader(few, batch_size=4, drop_last=True))


# --------------------------------------------------------------- training
def _runner(tmp_path: Path, name: str, guard: dict) -> Runner:
    cfg = Config.fromfile(str(RESUME_CONFIG))
    cfg.work_dir = str(tmp_path / name)
    cfg.experiment_name = f'bad_inputs_{name}'
    cfg.train_cfg = dict(type='ExactResumeEpochBasedTrainLoop', max_epochs=1)
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=2, by_epoch=False)
    cfg.custom_hooks = [
        guard, dict(type='NaNLossInjectorHook', at_iters=[3])
    ]
    cfg.default_hooks.logger.interval = 100
    return Runner.from_cfg(cfg)


def test_nan_loss_stops_naming_iteration_and_checkpoint(tmp_path,
                                                        demo_data_root):
    runner = _runner(tmp_path, 'raise', dict(type='NaNGuardHook'))
    with pytest.raises(NonFiniteLossError,
                       match=r'Non-finite loss nan at iteration 4 \(epoch 1'
                       r'\); last checkpoint: .*iter_2\.pth.*action=.skip'):
        runner.train()
    model = runner.model
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert osp.exists(osp.join(runner.work_dir, 'iter_2.pth'))


def test_nan_loss_skipped_when_configured(tmp_path, demo_data_root):
    runner = _runner(tmp_path, 'skip',
                     dict(type='NaNGuardHook', action='skip', max_skips=1))
    runner.train()
    assert runner.iter == 6
    assert runner.message_hub.get_info('nan_guard_skipped') == 1
    assert all(torch.isfinite(p).all() for p in runner.model.parameters())


def test_resume_with_other_batch_size_is_refused():
    loop = object.__new__(ExactResumeEpochBasedTrainLoop)
    loop.dataloader = list(range(6))  # 6 batches per epoch now
    loop._epoch, loop._iter = 1, 20  # checkpoint: 20 iterations in epoch 1
    with pytest.raises(RuntimeError, match='Cannot resume at iteration 20 '
                       'of epoch 1: an epoch has 6 batches here'):
        loop._batches_done_in_epoch()


# ----------------------------------------------------------------- launch
def test_more_processes_than_gpus(monkeypatch):
    """tools/dist_train.sh CONFIG 4 on a node with 2 GPUs: rank 2 fails."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    monkeypatch.setenv('LOCAL_RANK', '2')
    with pytest.raises(RuntimeError, match=r'local rank 2 needs its own GPU, '
                       r'but only 2 GPU\(s\) are visible.*use at most 2'):
        check_gpu_count('pytorch')
    monkeypatch.setenv('LOCAL_RANK', '1')
    check_gpu_count('pytorch')  # fits
