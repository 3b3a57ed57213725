"""Every benchmark config builds its model, optimiser and data pipeline.

Pattern of mmseg's tests/test_models/test_forward.py: the real configs with
the model shrunk to 64 dims / 2-4 layers, one training step on stand-in data
built here (demo ImageNet folder, Food-101 / FGVC-Aircraft / Stanford-Cars /
ADE20K layouts in a tmp dir).
"""
import copy
import math
from pathlib import Path

import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

import mapet  # noqa: F401
import downstream_helpers as H  # tests/helpers

CLS = H.configs_in('benchmarks/classification')
SEG = H.configs_in('benchmarks/segmentation')
KNN = [p for p in CLS if '_knn-' in p.name]
LINEAR = [p for p in CLS if '_linear-' in p.name]
FINETUNE = [p for p in CLS if p not in KNN and p not in LINEAR]

#: Table 9 per architecture: (peak lr, epochs, layer decay, embed dims).
TABLE9 = {
    'vit-t': (2.5e-4, 300, 1.0, 192),
    'vit-s': (5e-3, 200, 0.65, 384),
    'vit-b': (5e-4, 100, 0.65, 768),
}


def _arch(path: Path) -> str:
    return path.name.split('-p16')[0]


@pytest.fixture(scope='module')
def cross_domain_roots(tmp_path_factory, demo_data_root):
    from mmpretrain.datasets import FGVCAircraft, Food101
    root = tmp_path_factory.mktemp('cross_domain')
    return {
        'ImageNet': str(demo_data_root),
        'Food101': str(H.make_food101(root / 'food-101',
                                      Food101.METAINFO['classes'][:3])),
        'FGVCAircraft': str(H.make_fgvc_aircraft(
            root / 'fgvc_aircraft', FGVCAircraft.METAINFO['classes'][:3])),
        'StanfordCars': str(H.make_stanford_cars(root / 'stanfordcars')),
    }


def _build_dataset(dataloader_cfg: dict, data_root: str):
    from mmpretrain.registry import DATASETS
    cfg = copy.deepcopy(dataloader_cfg.dataset)
    cfg.data_root = data_root
    return DATASETS.build(cfg)


def _build_model(cfg):
    """Build ``cfg.model`` the way the Runner does (data_preprocessor)."""
    from mmpretrain.registry import MODELS
    model_cfg = copy.deepcopy(cfg.model)
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    return MODELS.build(model_cfg)


def _train_step(cfg, model, batch):
    wrapper_cfg = copy.deepcopy(cfg.optim_wrapper)
    wrapper_cfg.type = 'OptimWrapper'  # AMP needs an accelerator
    optim_wrapper = build_optim_wrapper(model, wrapper_cfg)
    losses = model.train_step(batch, optim_wrapper)
    assert all(math.isfinite(float(v.detach())) for v in losses.values())
    return optim_wrapper


@pytest.mark.parametrize('path', FINETUNE, ids=lambda p: p.name)
def test_finetune_config_recipe_and_one_step(path, demo_data_root):
    cfg = H.load(path)
    lr, epochs, decay, dims = TABLE9[_arch(path)]
    assert cfg.optim_wrapper.optimizer.lr == lr
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == decay
    assert cfg.train_cfg.max_epochs == epochs
    assert cfg.param_scheduler[0].end == 20
    assert cfg.param_scheduler[0].start_factor * lr == pytest.approx(1e-6)
    assert cfg.param_scheduler[1].eta_min == 1e-6
    assert cfg.param_scheduler[1].end == epochs
    backbone = cfg.model.backbone
    assert (backbone.type, backbone.out_type, backbone.final_norm) == \
        ('VisionTransformer', 'avg_featmap', False)
    assert backbone.drop_path_rate == 0.1
    assert backbone.layer_scale_init_value == 0.1
    assert backbone.init_cfg.type == 'Pretrained'
    assert backbone.init_cfg.prefix == 'backbone.'
    assert cfg.model.head.in_channels == dims
    assert cfg.auto_scale_lr.base_batch_size == \
        8 * cfg.train_dataloader.batch_size == 1024

    with DefaultScope.overwrite_default_scope('mmpretrain'):
        H.tiny_vit(cfg.model.backbone)
        cfg.model.head.in_channels = H.TINY_DIMS
        model = _build_model(cfg)
        dataset = _build_dataset(cfg.train_dataloader, str(demo_data_root))
        val_set = _build_dataset(cfg.val_dataloader, str(demo_data_root))
        batch = pseudo_collate([dataset[i] for i in range(2)])
        assert batch['inputs'][0].shape == (3, 224, 224)
        assert val_set[0]['inputs'].shape == (3, 224, 224)
        optim_wrapper = _train_step(cfg, model, batch)
    # layer-wise lr decay: stem gets decay ** (num_layers + 1), head full lr
    groups = {g.get('param_name'): g for g in optim_wrapper.param_groups}
    depth = H.TINY_ARCH['num_layers'] + 1
    assert groups['backbone.pos_embed']['lr'] == pytest.approx(
        lr * decay**depth)
    assert groups['backbone.pos_embed']['weight_decay'] == 0.0
    assert groups['head.fc.weight']['lr'] == pytest.approx(lr)
    assert groups['head.fc.weight']['weight_decay'] == 0.05
    assert groups['backbone.layers.0.ln1.weight']['weight_decay'] == 0.0


@pytest.mark.parametrize('path', KNN, ids=lambda p: p.name)
def test_knn_config_is_dinos_protocol_on_the_probe_backbone(path):
    """k = 20, T = 0.07; the linear probe's backbone and val split; the
    train split read with the evaluation pipeline (no augmentation)."""
    cfg = H.load(path)
    probe = H.load(path.with_name(path.name.replace(
        'knn-k20-t0.07', 'linear-8xb128-coslr-50e')))
    assert cfg.knn.k == 20 and cfg.knn.temperature == 0.07
    assert cfg.model.backbone == probe.model.backbone
    assert cfg.val_dataloader.dataset == probe.val_dataloader.dataset
    keys = cfg.knn_train_dataloader.dataset
    train = probe.train_dataloader.dataset
    assert {k: v for k, v in keys.items() if k != 'pipeline'} == \
        {k: v for k, v in train.items() if k != 'pipeline'}
    assert keys.pipeline == probe.test_pipeline != train.pipeline


@pytest.mark.parametrize('path', LINEAR, ids=lambda p: p.name)
def test_linear_probe_config_freezes_backbone(path, cross_domain_roots):
    cfg = H.load(path)
    assert cfg.train_cfg.max_epochs == 50
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert cfg.optim_wrapper.optimizer.lr == 4e-3
    assert cfg.optim_wrapper.optimizer.weight_decay == 1e-4
    assert [s.type for s in cfg.param_scheduler] == ['CosineAnnealingLR']
    assert cfg.auto_scale_lr.base_batch_size == 1024
    assert cfg.model.backbone.frozen_stages == 12
    dataset_type = cfg.train_dataloader.dataset.type
    assert cfg.model.head.num_classes == \
        cfg.data_preprocessor.num_classes

    with DefaultScope.overwrite_default_scope('mmpretrain'):
        H.tiny_vit(cfg.model.backbone)
        cfg.model.head.in_channels = H.TINY_DIMS
        model = _build_model(cfg)
        root = cross_domain_roots[dataset_type]
        dataset = _build_dataset(cfg.train_dataloader, root)
        val_set = _build_dataset(cfg.val_dataloader, root)
        assert len(val_set) > 0
        assert [t.__class__.__name__ for t in dataset.pipeline.transforms
                ][1:3] == ['RandomResizedCrop', 'RandomFlip']
        batch = pseudo_collate([dataset[i] for i in range(2)])
        before = copy.deepcopy(model.backbone.state_dict())
        _train_step(cfg, model, batch)
    assert all(not p.requires_grad for p in model.backbone.parameters())
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize('path', SEG, ids=lambda p: p.name)
def test_segmentation_config_recipe_and_one_step(path, tmp_path):
    cfg = H.load(path)
    dims = TABLE9[_arch(path)][3]
    assert cfg.default_scope == 'mmseg'
    assert cfg.model.backbone.type == 'mmpretrain.MaPeTViT'
    assert cfg.model.backbone.img_size == (512, 512)
    assert cfg.model.backbone.drop_path_rate == 0.15
    assert cfg.model.backbone.out_indices == (3, 5, 7, 11)
    assert cfg.model.neck.embed_dim == dims
    assert cfg.model.decode_head.in_channels == [dims] * 4
    opt = cfg.optim_wrapper
    assert (opt.optimizer.lr, opt.optimizer.weight_decay,
            opt.paramwise_cfg.layer_decay_rate) == (5e-5, 0.05, 0.75)
    warmup, poly = cfg.param_scheduler
    assert warmup.end == 1500
    assert warmup.start_factor * opt.optimizer.lr == pytest.approx(5e-11)
    assert (poly.type, poly.power, poly.eta_min, poly.end) == \
        ('PolyLR', 1.0, 0.0, 160000)
    assert cfg.train_cfg.max_iters == 160000
    assert 8 * cfg.train_dataloader.batch_size == 16
    assert cfg.val_evaluator.iou_metrics == ['mIoU']

    from mmseg.registry import DATASETS, MODELS
    root = H.make_ade20k(tmp_path / 'ade')
    size = (64, 64)
    with DefaultScope.overwrite_default_scope('mmseg'):
        m = cfg.model
        H.tiny_vit(m.backbone)
        m.backbone.img_size = size
        m.neck.embed_dim = H.TINY_DIMS
        m.decode_head.in_channels = [H.TINY_DIMS] * 4
        m.decode_head.channels = 16
        m.auxiliary_head.in_channels = H.TINY_DIMS
        for head in (m.decode_head, m.auxiliary_head):
            head.norm_cfg = dict(type='BN', requires_grad=True)
        m.data_preprocessor.size = size
        model = MODELS.build(m)
        ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
        ds_cfg.data_root = str(root)
        for t in ds_cfg.pipeline:
            if t.type == 'RandomResize':
                t.scale, t.ratio_range = (128, 64), (1.0, 1.0)
            if t.type == 'RandomCrop':
                t.crop_size = size
        dataset = DATASETS.build(ds_cfg)
        batch = pseudo_collate([dataset[i] for i in range(2)])
        assert batch['inputs'][0].shape[-2:] == size
        optim_wrapper = _train_step(cfg, model, batch)
    groups = {g.get('param_name'): g for g in optim_wrapper.param_groups}
    depth = m.backbone.arch['num_layers'] + 1
    assert groups['backbone.cls_token']['lr'] == pytest.approx(
        5e-5 * 0.75**depth)
    assert groups['decode_head.conv_seg.weight']['lr'] == pytest.approx(5e-5)
