"""Bad inputs: every case fails early with an error that names the problem.

Configs (cutting point, image/patch sizes, vocabularies, token grids,
unknown keys), data (token stores, corrupt images, empty folders), training
(NaN loss, resuming with another batch size) and launch (more processes
than GPUs). Each test asserts the exception type and the words a user
needs to fix the problem.
"""
import os.path as osp
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import RUNNERS, DefaultScope
from mmpretrain.registry import DATASETS, HOOKS, MODELS, TRANSFORMS
from mmpretrain.structures import DataSample
from torch.utils.data import DataLoader

import mapet  # noqa: F401
from mapet.datasets.image_decode import DECODER_ID
from mapet.engine.hooks.nan_guard import NonFiniteLossError
from mapet.engine.runners import (EmptyDatasetError,
                                  ExactResumeEpochBasedTrainLoop,
                                  MaPeTRunner, TargetMismatchError)
from mapet.engine.runners.dataloader_checks import (
    check_dataloader_not_empty, full_init_checked)
from mapet.datasets.token_store import (TokenStoreError, merge_store,
                                          prepare_parts, write_chunk)
from mapet.utils.checkpoint import verify_checkpoint
from mapet.utils.dist_env import check_gpu_count

REPO = Path(__file__).resolve().parents[1]
RESUME_CONFIG = REPO / 'tests' / 'data' / 'configs' / \
    'reliability_mapet_resume.py'

ARCH = dict(embed_dims=64, num_layers=2, num_heads=2, feedforward_channels=128)
BACKBONE = dict(
    type='MaPeTViT', arch=ARCH, img_size=32, patch_size=8, mode='mapet',
    cutting_point=4)
HEAD = dict(type='VisualTokenHead', embed_dims=64, num_embed=16)


# --------------------------------------------------------------- configs
@pytest.mark.parametrize('cutting_point', [0, 16])
def test_cutting_point_outside_1_to_n_minus_1(cutting_point):
    with pytest.raises(ValueError, match=r'outside \[1, N-1\] = \[1, 15\]'):
        MODELS.build(dict(BACKBONE, cutting_point=cutting_point))


def test_image_size_not_divisible_by_patch_size():
    with pytest.raises(ValueError, match=r'img_size \(30, 30\) is not '
                       r'divisible by the patch size \(8, 8\)'):
        MODELS.build(dict(BACKBONE, img_size=30))
    with pytest.raises(ValueError, match='not a positive multiple of '
                       'patch_size'):
        TRANSFORMS.build(
            dict(type='RandomPatchPermutation', input_size=30,
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
    with pytest.raises(ValueError, match=r'model predicts 16 visual tokens '
                       r'but the target_generator has vocab_size=32; set '
                       r'head.num_embed=32'):
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
    (dict(type='RandomPatchPermutation', input_size=32, patch_size=8),
     TRANSFORMS),
    (dict(type='NaNGuardHook'), HOOKS),
])
def test_unknown_config_key_is_named(cfg, registry):
    with pytest.raises(TypeError, match="unexpected keyword argument "
                       "'cuting_point'"):
        registry.build(dict(cfg, cuting_point=4))


def test_invalid_option_values_are_named():
    with pytest.raises(ValueError, match='max_amp_overflows=-1 < 0'):
        HOOKS.build(dict(type='NaNGuardHook', max_amp_overflows=-1))


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
        dict(grid=[2, 2], vocab_size=16, crop='center', decoder=DECODER_ID,
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


# ------------------------------------------------------------- datasets
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
    # The runner builds datasets under the config's default scope.
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        with pytest.raises(EmptyDatasetError, match=r'Dataset is empty '
                           r"\(CustomDataset, data_root='.*ann_file='.*"
                           r'empty.txt'):
            full_init_checked(cfg)
        # Not serialised: refused all the same.
        with pytest.raises(EmptyDatasetError, match='Dataset is empty'):
            full_init_checked(dict(cfg, serialize_data=False))
    ds = DATASETS.build(dict(cfg, serialize_data=False))
    with pytest.raises(EmptyDatasetError, match='Dataset is empty'):
        check_dataloader_not_empty(DataLoader(ds, batch_size=2))
    few = DATASETS.build(
        dict(type='CustomDataset', data_root=str(REPO / 'data' / 'demo'),
             ann_file='meta/train.txt', data_prefix='train', indices=3,
             pipeline=[]))
    with pytest.raises(EmptyDatasetError, match='yields no batch: 3 '
                       'samples with batch_size=4 and drop_last=True'):
        check_dataloader_not_empty(
            DataLoader(few, batch_size=4, drop_last=True))


def test_runner_refuses_empty_training_set(tmp_path, demo_data_root):
    """MaPeTRunner names the empty dataset when it builds the loader."""
    (tmp_path / 'empty.txt').write_text('')
    cfg = _config(tmp_path, 'empty')
    cfg.train_dataloader.dataset.ann_file = str(tmp_path / 'empty.txt')
    cfg.train_dataloader.dataset.pop('indices')
    runner = RUNNERS.build(cfg)
    assert type(runner) is MaPeTRunner
    with pytest.raises(EmptyDatasetError, match=r'Dataset is empty '
                       r"\(CustomDataset, data_root='.*ann_file='.*"
                       r'empty\.txt'):
        runner.train()
    # Too few samples for one batch: refused as well, not "trained".
    cfg = _config(tmp_path, 'few')
    cfg.train_dataloader.dataset.indices = 3
    cfg.train_dataloader.drop_last = True
    with pytest.raises(EmptyDatasetError, match='yields no batch: 3 '
                       'samples with batch_size=4 and drop_last=True'):
        RUNNERS.build(cfg).train()


# --------------------------------------------------------------- training
def _config(tmp_path: Path, name: str) -> Config:
    cfg = Config.fromfile(str(RESUME_CONFIG))
    cfg.work_dir = str(tmp_path / name)
    cfg.experiment_name = f'bad_inputs_{name}'
    cfg.train_cfg = dict(type='ExactResumeEpochBasedTrainLoop', max_epochs=1)
    cfg.custom_hooks = []
    cfg.default_hooks.logger.interval = 100
    return cfg


def _runner(tmp_path: Path, name: str, guard: dict) -> MaPeTRunner:
    """Built as tools/train.py does (the config selects MaPeTRunner)."""
    cfg = _config(tmp_path, name)
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=2, by_epoch=False)
    cfg.custom_hooks = [
        guard, dict(type='NaNLossInjectorHook', at_iters=[3])
    ]
    runner = RUNNERS.build(cfg)
    assert type(runner) is MaPeTRunner
    return runner


def test_nan_loss_stops_naming_iteration_before_checkpoint(
        tmp_path, demo_data_root):
    runner = _runner(tmp_path, 'raise', dict(type='NaNGuardHook'))
    with pytest.raises(NonFiniteLossError,
                       match=r'Non-finite loss nan at iteration 4 \(epoch 1'
                       r'\)\. Training stopped before checkpointing it'):
        runner.train()
    assert runner.iter == 3  # iteration 4 never completed
    assert verify_checkpoint(osp.join(runner.work_dir, 'iter_2.pth'))
    assert osp.exists(osp.join(runner.work_dir, 'iter_2.pth.sha256'))
    assert not osp.exists(osp.join(runner.work_dir, 'iter_4.pth'))


def test_non_finite_weights_are_never_checkpointed():
    from mapet.engine.hooks import NaNGuardHook
    from types import SimpleNamespace
    guard = NaNGuardHook()
    runner = SimpleNamespace(iter=7)
    checkpoint = dict(state_dict=dict(w=torch.tensor([1.0, float('nan')])))
    with pytest.raises(NonFiniteLossError, match='1 weight tensors are not '
                       'finite \\(first: w\\)'):
        guard.before_save_checkpoint(runner, checkpoint)


def _token_dataset(token_store, *extra):
    from mmengine.dataset import Compose
    from types import SimpleNamespace
    load = TRANSFORMS.build(
        dict(type='LoadVisualTokens', store=str(token_store), grid_size=2,
             vocab_size=16))
    return SimpleNamespace(pipeline=Compose(
        [load, *[TRANSFORMS.build(t) for t in extra]]))


@pytest.mark.parametrize('transform', [
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomResizedCrop', scale=16),
])
def test_geometric_transform_after_tokens_is_refused(token_store, transform):
    from mapet.engine.runners.target_checks import check_visual_token_targets
    model = MODELS.build(dict(type='MaPeT', backbone=BACKBONE, head=HEAD))
    dataset = _token_dataset(token_store, transform)
    with pytest.raises(TargetMismatchError,
                       match=f"{transform['type']} follows LoadVisualTokens"):
        check_visual_token_targets(model, dataset)
    # Colour jitter keeps the tokens aligned.
    check_visual_token_targets(
        model, _token_dataset(token_store, dict(type='ColorJitter',
                                                brightness=0.4)))


def test_head_vocab_differs_from_store_vocab(token_store):
    from mapet.engine.runners.target_checks import check_visual_token_targets
    model = MODELS.build(
        dict(type='MaPeT', backbone=BACKBONE, head=dict(HEAD, num_embed=32)))
    with pytest.raises(TargetMismatchError, match='model predicts 32 visual '
                       'tokens but LoadVisualTokens reads a store with '
                       'vocab_size=16'):
        check_visual_token_targets(model, _token_dataset(token_store))


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


# ================================================================ issue 11
# Every file type and flag is validated where it enters; each error names
# the file/flag, the field and the fix.

# ----------------------------------------------------------------- images
def _png(path, size=16):
    from PIL import Image
    noise = np.random.default_rng(0).integers(0, 256, (size, size, 3))
    Image.fromarray(noise.astype(np.uint8)).save(path)
    return path


@pytest.mark.parametrize('make, message', [
    (lambda p: p.write_bytes(_png(p).read_bytes()[:400]),
     'cannot be decoded: .*truncated'),
    (lambda p: p.write_bytes(b''), 'is not an image PIL can read'),
    (lambda p: p.write_text('not an image'), 'is not an image PIL can read'),
    (lambda p: None, 'does not exist'),
])
def test_bad_image_files_are_named(tmp_path, make, message):
    from mapet.datasets.image_decode import ImageDecodeError
    path = tmp_path / 'bad.png'
    make(path)
    load = TRANSFORMS.build(dict(type='LoadImageForTokens'))
    with pytest.raises(ImageDecodeError, match=f'Image .*bad.png {message}'):
        load(dict(img_path=str(path)))


def test_oversized_image_is_refused_before_decoding(tmp_path):
    from mapet.datasets.image_decode import ImageDecodeError
    path = _png(tmp_path / 'big.png', 16)
    load = TRANSFORMS.build(dict(type='LoadImageForTokens', max_pixels=100))
    with pytest.raises(ImageDecodeError, match='big.png is 16x16 = 256 pixels,'
                       ' more than max_pixels=100: refused before decoding'):
        load(dict(img_path=str(path)))


def test_non_utf8_image_name_is_refused(tmp_path):
    import os
    from mapet.extraction.images import list_image_folder
    folder = os.fsencode(str(tmp_path)) + b'/c'
    os.makedirs(folder)
    _png(Path(os.fsdecode(folder + b'/caf\xe9.png')))
    with pytest.raises(ValueError, match=r"caf\\xe9.png' is not valid UTF-8.*"
                       'Rename it'):
        list_image_folder(str(tmp_path))


def test_mmcv_image_loader_with_token_store_is_refused(token_store):
    from mapet.engine.runners.target_checks import check_visual_token_targets
    from mmengine.dataset import Compose
    from types import SimpleNamespace
    model = MODELS.build(dict(type='MaPeT', backbone=BACKBONE, head=HEAD))
    pipeline = Compose([
        TRANSFORMS.build(dict(type='LoadImageFromFile')),
        TRANSFORMS.build(dict(type='LoadVisualTokens', store=str(token_store),
                              grid_size=2, vocab_size=16))])
    with pytest.raises(TargetMismatchError, match='LoadImageFromFile loads '
                       'the images .* decodes with mmcv/cv2.*LoadImageFor'
                       'Tokens'):
        check_visual_token_targets(model, SimpleNamespace(pipeline=pipeline))


# ------------------------------------------------------------ token store
def _copy_store(token_store, tmp_path):
    import shutil
    root = tmp_path / 'store'
    shutil.copytree(token_store, root)
    return root


def _edit_manifest(root, **fields):
    import json
    manifest = json.loads((root / 'manifest.json').read_text())
    manifest.update(fields)
    (root / 'manifest.json').write_text(json.dumps(manifest))


@pytest.mark.parametrize('edit, message', [
    (lambda r: (r / 'manifest.json').write_text(
        (r / 'manifest.json').read_text()[:40]),
     'manifest .*manifest.json is not valid JSON'),
    (lambda r: (r / 'manifest.json').write_text('[1, 2]'),
     'is not a JSON object'),
    (lambda r: _edit_manifest(r, grid=[3, 3]),
     r'grid=\[3, 3\] does not give num_tokens=4'),
    (lambda r: _edit_manifest(r, vocab_size=0),
     r'vocab_size=0 \(a positive integer\)'),
    (lambda r: _edit_manifest(r, num_images='2'),
     r"num_images='2' \(a positive integer\)"),
    (lambda r: _edit_manifest(r, tokens_sha256=None),
     r'tokens.npy in .* is corrupt: sha256 [0-9a-f]{64} != manifest None'),
    (lambda r: (r / 'index.npy').write_bytes(
        (r / 'index.npy').read_bytes()[:-20]),
     'incomplete or corrupt'),
])
def test_edited_or_truncated_token_store_is_refused(token_store, tmp_path,
                                                    edit, message):
    root = _copy_store(token_store, tmp_path)
    edit(root)
    with pytest.raises(TokenStoreError, match=message):
        TRANSFORMS.build(dict(type='LoadVisualTokens', store=str(root),
                              grid_size=2, vocab_size=16))


def test_token_store_values_outside_manifest_are_refused(token_store,
                                                         tmp_path):
    from mapet.utils.atomic import sha256_file
    # vocab_size edited down to 4 (tokens go up to 7): checksums still match.
    root = _copy_store(token_store, tmp_path)
    _edit_manifest(root, vocab_size=4)
    with pytest.raises(TokenStoreError, match='holds token 7 >= '
                       'vocab_size=4 of its manifest'):
        TRANSFORMS.build(dict(type='LoadVisualTokens', store=str(root),
                              grid_size=2, vocab_size=4))
    # An index re-sorted by hand, with a matching checksum.
    root = _copy_store(token_store, tmp_path / 'b')
    index = np.load(root / 'index.npy')
    np.save(root / 'index.npy', index[::-1].copy())
    _edit_manifest(root, index_sha256=sha256_file(root / 'index.npy'))
    with pytest.raises(TokenStoreError, match='index.npy .* is not sorted '
                       'and unique'):
        TRANSFORMS.build(dict(type='LoadVisualTokens', store=str(root),
                              grid_size=2, vocab_size=16))


@pytest.mark.parametrize('codebook, message', [
    ('UNSET: centroids_sha256 of the fitted k-CLIP codebook',
     "is neither a codebook file nor a 64-hex-digit centroids_sha256. Pin"),
    ('a' * 63, 'is neither a codebook file'),
])
def test_codebook_pin_must_be_set(token_store, codebook, message):
    with pytest.raises(ValueError, match=message):
        TRANSFORMS.build(dict(type='LoadVisualTokens', store=str(token_store),
                              grid_size=2, vocab_size=16, codebook=codebook))
    # The right pin passes.
    TRANSFORMS.build(dict(type='LoadVisualTokens', store=str(token_store),
                          grid_size=2, vocab_size=16, codebook='a' * 64))


# --------------------------------------------------------------- codebook
@pytest.mark.parametrize('make, message', [
    (lambda p: np.save(p, np.zeros((0, 8), np.float32)),
     'has K=0 centroids .* it is empty. Re-fit it with --num-centroids'),
    (lambda p: p.write_text('not a codebook'),
     'cannot be read as a .npz/.npy array file'),
    (lambda p: np.save(p, np.array([[1.0, float('nan')]], np.float32)),
     'contains NaN or inf'),
])
def test_bad_codebook_files(tmp_path, make, message):
    from mapet.models.tokenizers.codebook import load_codebook
    path = tmp_path / 'codebook.npy'
    make(path)
    with pytest.raises(ValueError, match=f'Codebook .*codebook.npy {message}'
                       if 'K=0' not in message else message):
        load_codebook(str(path))


def test_empty_codebook_is_never_written(tmp_path):
    from mapet.models.tokenizers.codebook import save_codebook
    with pytest.raises(ValueError, match=r'K, D >= 1, got \(0, 8\)'):
        save_codebook(str(tmp_path / 'c.npz'), np.zeros((0, 8)), {})
    assert not (tmp_path / 'c.npz').exists()


# ------------------------------------------------------------ checkpoints
@pytest.mark.parametrize('make, message', [
    (lambda p: p.write_bytes(b''), r'is empty \(0 bytes\)'),
    (lambda p: p.write_text('hello'), "is not a torch checkpoint .*text"),
    (lambda p: np.savez(open(p, 'wb'), a=np.zeros(2)),
     r"is a zip archive but not a torch checkpoint \(entries \['a.npy'\]"),
    (lambda p: p.write_bytes(__import__('pickle').dumps([1, 2, 3])),
     r'is a plain Python pickle \(protocol \d+\), not a torch checkpoint'),
])
def test_files_that_are_not_checkpoints(tmp_path, make, message):
    from mapet.utils.checkpoint import load_checkpoint_file
    from mapet.utils.checkpoint_format import NotACheckpointError
    path = tmp_path / 'model.pth'
    make(path)
    with pytest.raises(NotACheckpointError, match=f'model.pth {message}'):
        load_checkpoint_file(str(path))


def test_legacy_torch_format_is_still_a_checkpoint(tmp_path):
    """torch.save's pre-zip format (default protocol 2) is a pickle too:
    it must not be taken for a plain one."""
    import torch
    from mapet.utils.checkpoint import load_checkpoint_file
    path = tmp_path / 'legacy.pth'
    torch.save({'state_dict': {'w': torch.arange(3.)}}, path,
               _use_new_zipfile_serialization=False)
    assert load_checkpoint_file(str(path))['state_dict']['w'].tolist() == \
        [0., 1., 2.]


# ------------------------------------------------------ annotation pickles
def test_pickled_annotation_file_is_refused(tmp_path, demo_data_root):
    import pickle
    from mapet.engine.runners import PickledAnnotationError
    ann = tmp_path / 'train.pkl'
    ann.write_bytes(pickle.dumps(dict(metainfo={}, data_list=[])))
    cfg = dict(type='CustomDataset', data_root=str(demo_data_root),
               ann_file=str(ann), data_prefix='train', pipeline=[])
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        with pytest.raises(PickledAnnotationError, match='train.pkl of '
                           'CustomDataset is a pickle: .*Convert it once'):
            full_init_checked(cfg)
    # extract_tokens.py --dataset-config goes through the same check.
    from mapet.extraction.images import list_dataset_config
    config = tmp_path / 'ds.py'
    config.write_text(f'train_dataloader = dict(dataset={cfg!r})\n')
    with pytest.raises(PickledAnnotationError, match='is a pickle'):
        list_dataset_config(str(config))


# ---------------------------------------------------------------- CLI flags
@pytest.mark.parametrize('kind, value, message', [
    ('positive_int', '0', r'must be a positive integer \(>= 1\), got 0'),
    ('positive_int', '-1', r'must be a positive integer \(>= 1\), got -1'),
    ('positive_int', 'x', "'x' is not an integer"),
    ('fraction', '0', r'must be in \(0, 1\], got 0.0'),
    ('non_negative_int', '-2', 'must be >= 0, got -2'),
])
def test_cli_value_types(kind, value, message):
    import argparse
    from mapet.extraction import cli
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        getattr(cli, kind)(value)


@pytest.mark.parametrize('tool, args, message', [
    ('tools/tokenizers/extract_tokens.py',
     ['--codebook', 'x', '--chunk-size', '0'],
     r'argument --chunk-size: must be a positive integer \(>= 1\), got 0'),
    ('tools/tokenizers/fit_kclip_codebook.py',
     ['--work-dir', 'w', '--num-centroids', '0', '--input-size', '448'],
     r'argument --num-centroids: must be a positive integer'),
])
def test_tool_flags_are_validated(tmp_path, tools_env, tool, args, message):
    import re
    import subprocess
    import sys
    proc = subprocess.run(
        [sys.executable, tool, '--image-folder', str(tmp_path), '--out',
         str(tmp_path / 'out'), *args],
        cwd=REPO, env=tools_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert re.search(message, proc.stderr), proc.stderr
