"""The example downstream project, run the way a user runs it.

The project folder is copied to a temporary directory outside the mapet
repository, so its config can only find its parent through the installed
package (``_base_ = 'mapet::...'``), and its custom module only through
``PYTHONPATH`` + ``custom_imports``.
"""
import importlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mapet  # noqa: F401  (registers mapet; enables `mapet::` bases)
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.runner import set_random_seed
from mmpretrain.registry import DATASETS, MODELS

PROJECT = Path(__file__).resolve().parents[1]
# projects/example_project/tests/ -> the mapet repository (tools, data/demo).
REPO_ROOT = PROJECT.parents[1]
CONFIG = 'configs/mapet_vit-t_colour-tokens_demo.py'
# Colour levels of the project config: 4 ** 3 token ids.
VOCAB = 4**3


@pytest.fixture(scope='module')
def demo_data_root() -> Path:
    """mapet's demo dataset (built by its converter script if missing).

    The same builder and defaults as the ``demo_data_root`` fixture of
    mapet's ``tests/conftest.py`` (which does not apply to ``projects/``),
    run as a user runs it; it reuses a complete dataset.
    """
    out = REPO_ROOT / 'data' / 'demo'
    proc = subprocess.run(
        [sys.executable, 'tools/dataset_converters/make_demo_dataset.py',
         '--out', str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'demo dataset ready' in proc.stdout
    return out


@pytest.fixture
def one_thread():
    """One intra-op thread: on a busy 2-core machine torch's thread pool
    makes the many small ops of ``init_weights`` ~10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def project_copy(tmp_path_factory) -> Path:
    """The project as a standalone folder, outside the repository."""
    dst = tmp_path_factory.mktemp('user_repo') / 'example_project'
    shutil.copytree(
        PROJECT, dst, ignore=shutil.ignore_patterns('tests', '__pycache__'))
    assert REPO_ROOT not in dst.parents
    return dst


@pytest.fixture(scope='module')
def project_module(project_copy):
    """``example_project`` imported from the copy (what PYTHONPATH does).

    Imported once: importing registers its components in mmpretrain's
    registries, which refuse a second registration of the same name.
    """
    sys.path.insert(0, str(project_copy))
    try:
        module = importlib.import_module('example_project')
        assert Path(module.__file__).parents[1] == project_copy
        yield module
    finally:
        sys.path.remove(str(project_copy))


def test_config_inherits_mapet_through_the_mim_scope(project_copy,
                                                     project_module):
    cfg = Config.fromfile(str(project_copy / CONFIG))
    # Inherited from mapet::mapet/mapet_vit-t_300e_in1k.py (paper recipe).
    backbone = cfg.model.backbone
    assert cfg.model.type == 'MaPeT' and backbone.type == 'MaPeTViT'
    assert backbone.arch == 'deit-t' and backbone.mode == 'mapet'
    assert backbone.layer_scale_init_value == 0.1
    assert backbone.drop_path_rate == 0.1
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(1.5e-3)
    assert cfg.optim_wrapper.clip_grad.max_norm == 3.0
    assert cfg.auto_scale_lr.base_batch_size == 2048
    assert cfg.default_scope == 'mmpretrain'
    # Changed by the project.
    assert backbone.img_size == 64 and backbone.cutting_point == 4
    assert cfg.model.head.num_embed == VOCAB
    tokenizer = cfg.model.target_generator
    assert tokenizer.type == 'PatchColourTokenizer'
    assert tokenizer.mean == cfg.data_preprocessor.mean
    assert tokenizer.std == cfg.data_preprocessor.std
    dataset = cfg.train_dataloader.dataset
    assert dataset.type == 'CustomDataset'
    assert dataset.data_root == 'data/demo/'
    assert [t['type'] for t in dataset.pipeline] == [
        'LoadImageFromFile', 'ResizeEdge', 'CenterCrop', 'ColorJitter',
        'RandomPatchPermutation', 'PackInputs'
    ]
    # The permutation covers the 4 x 4 patch grid of the 64 px images; the
    # mode is the backbone's (mapet), not the transform's.
    assert dataset.pipeline[4] == dict(
        type='RandomPatchPermutation', input_size=64, patch_size=16)
    assert dataset.pipeline[5]['algorithm_keys'] == ['permutation']
    assert cfg.runner_type == 'mmpretrain.MaPeTRunner'
    assert cfg.param_scheduler[1]['end'] == cfg.train_cfg.max_epochs == 20
    # mmengine stamps `_scope_='mapet'` on what a `mapet::` base defines;
    # mapet's scope nodes resolve those names among mapet's and
    # mmpretrain's components (and the project's, registered into
    # mmpretrain's registries), so they build as under the default scope.
    assert cfg.model._scope_ == 'mapet'
    assert cfg.train_cfg._scope_ == 'mapet'
    from mapet.registry import SCOPE_REGISTRIES
    models = SCOPE_REGISTRIES['MODELS']
    assert models.scope == 'mapet' and models.parent is MODELS
    for name in ('MaPeT', 'MaPeTViT', 'VisualTokenHead',
                 'SelfSupDataPreprocessor', 'PatchColourTokenizer'):
        assert models.get(name) is MODELS.get(name), name
    assert SCOPE_REGISTRIES['LOOPS'].get(cfg.train_cfg.type) is not None
    assert cfg.custom_imports.imports == ['mapet', 'example_project']


def test_colour_tokenizer_is_a_frozen_registered_tokenizer(project_module):
    cls = project_module.PatchColourTokenizer
    assert MODELS.get('PatchColourTokenizer') is cls
    mean, std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
    tok = MODELS.build(
        dict(type='PatchColourTokenizer', patch_size=8, levels=4,
             mean=mean, std=std))
    assert tok.vocab_size == 64 and list(tok.parameters()) == []
    # A 16 x 24 image: left 8 columns pure red, then green, then white;
    # top patch row as is, bottom row black.
    rgb = torch.zeros(1, 3, 16, 24)
    rgb[0, 0, :8, :8] = 1.
    rgb[0, 1, :8, 8:16] = 1.
    rgb[0, :, :8, 16:] = 1.
    m = torch.tensor(mean).view(1, 3, 1, 1) / 255
    s = torch.tensor(std).view(1, 3, 1, 1) / 255
    tokens = tok((rgb - m) / s)
    # r * 16 + g * 4 + b with bins 0..3: red 48, green 12, white 63, black 0.
    assert tokens.dtype == torch.int64
    assert tokens.tolist() == [[48, 12, 63, 0, 0, 0]]
    # A mid grey patch lands in bin 2 of every channel (0.5 * 4 = 2).
    grey = (torch.full((1, 3, 8, 8), 0.5) - m) / s
    assert tok(grey).tolist() == [[2 * 16 + 2 * 4 + 2]]
    tok.train()
    assert not tok.training
    with pytest.raises(ValueError, match='multiple of 8'):
        tok(torch.zeros(1, 3, 12, 16))


def test_config_builds_and_gives_a_chance_level_loss_on_demo_images(
        project_copy, project_module, demo_data_root, one_thread):
    cfg = Config.fromfile(str(project_copy / CONFIG))
    set_random_seed(0)  # init, drop path, colour jitter, permutations
    model = MODELS.build(cfg.model)
    assert len(model.backbone.layers) == 12  # the full ViT-T, as configured
    assert isinstance(model.target_generator,
                      project_module.PatchColourTokenizer)
    assert not any(p.requires_grad
                   for p in model.target_generator.parameters())
    model.init_weights()
    model.train()
    assert not model.target_generator.training

    dataset_cfg = cfg.train_dataloader.dataset
    dataset_cfg.data_root = str(demo_data_root)
    dataset = DATASETS.build(dataset_cfg)
    assert len(dataset) == len(
        (demo_data_root / 'meta' / 'train.txt').read_text().splitlines())
    batch = [dataset[i] for i in range(4)]
    assert batch[0]['inputs'].shape == (3, 64, 64)
    assert sorted(batch[0]['data_samples'].permutation.tolist()) == list(
        range(16))
    # The config's collate_fn, then the data preprocessor, as the Runner.
    data = model.data_preprocessor(default_collate(batch), training=True)
    images = data['inputs']
    assert images.shape == (4, 3, 64, 64)
    with torch.no_grad():
        targets = model.target_generator(images)
        losses = model.loss(data['inputs'], data['data_samples'])
    assert targets.shape == (4, 16)
    assert 0 <= int(targets.min()) and int(targets.max()) < VOCAB
    # Freshly initialised (std 0.02): near-uniform over the 64 tokens. Over
    # seeds 0-5 this batch gives 4.0 to 4.6 (ln 64 = 4.16).
    assert math.isfinite(losses['loss'].item())
    assert abs(losses['loss'].item() - math.log(VOCAB)) < 0.6


# Test-only overrides: a 2-layer, 64-dim ViT instead of ViT-T (for speed),
# 16 images in batches of 8 = 2 iterations, and the demo data's location.
SMOKE_CONFIG = """\
_base_ = './mapet_vit-t_colour-tokens_demo.py'
model = dict(
    backbone=dict(
        arch=dict(
            _delete_=True, embed_dims=64, num_layers=2, num_heads=2,
            feedforward_channels=128)),
    head=dict(embed_dims=64))
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root={data_root!r}, indices=16))
train_cfg = dict(max_epochs=1)
default_hooks = dict(logger=dict(interval=1))
"""


def test_two_training_iterations_with_tools_train(project_copy,
                                                  project_module,
                                                  demo_data_root, tmp_path):
    # (project_module: reading back the dumped config imports the project)
    smoke = project_copy / 'configs' / 'smoke_test.py'
    smoke.write_text(SMOKE_CONFIG.format(data_root=str(demo_data_root)))
    env = dict(os.environ)
    # Only the project on PYTHONPATH (mapet is an installed package); no GPU,
    # one BLAS thread (the test suite runs next to other processes).
    env['PYTHONPATH'] = str(project_copy)
    env['CUDA_VISIBLE_DEVICES'] = ''
    env.setdefault('OMP_NUM_THREADS', '1')
    env.setdefault('MKL_NUM_THREADS', '1')
    work_dir = tmp_path / 'work_dir'
    # As the README says, from the project folder; --no-amp for the CPU.
    proc = subprocess.run(
        [sys.executable,
         str(REPO_ROOT / 'tools' / 'train.py'), 'configs/smoke_test.py',
         '--work-dir',
         str(work_dir), '--no-amp'],
        cwd=project_copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    scalars = list(work_dir.glob('*/vis_data/scalars.json'))
    assert len(scalars) == 1
    lines = scalars[0].read_text().splitlines()
    records = [json.loads(line) for line in lines]
    losses = [r['loss'] for r in records if 'loss' in r]
    assert [r['iter'] for r in records if 'loss' in r] == [1, 2]
    assert all(math.isfinite(v) for v in losses)
    assert abs(losses[0] - math.log(VOCAB)) < 0.6  # chance level
    assert (work_dir / 'epoch_1.pth').is_file()
    # The dumped config is the merged one: mapet's recipe, project changes.
    dumped = Config.fromfile(str(work_dir / 'smoke_test.py'))
    assert dumped.model.backbone.cutting_point == 4
    assert dumped.model.target_generator.type == 'PatchColourTokenizer'
    assert dumped.optim_wrapper.type == 'OptimWrapper'
