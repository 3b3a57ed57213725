"""Every pre-training config loads, builds its model and follows the paper."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmpretrain.registry import MODELS, TRANSFORMS

import mapet  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted(
    str(p.relative_to(REPO)) for folder in ('mapet', 'pim', 'mim')
    for p in (REPO / 'configs' / folder).glob('*.py'))
# arch -> (embed dims, MaPeT / PIM cutting point) of the paper.
PAPER = {'t': (192, 50), 's': (384, 50), 'b': (768, 60)}


def _pipeline_step(cfg, name):
    steps = [t for t in cfg.train_dataloader.dataset.pipeline
             if t['type'] == name]
    assert len(steps) == 1, name
    return steps[0]


def test_all_eighteen_configs_present():
    assert len(CONFIGS) == 18
    for method in ('mapet', 'pim', 'mim'):
        for arch in 'tsb':
            for tok in ('', '_vqkd'):
                name = f'{method}_vit-{arch}{tok}_300e_in1k.py'
                assert f'configs/{method}/{name}' in CONFIGS


@pytest.mark.parametrize('path', CONFIGS)
def test_config_loads_and_builds(path):
    cfg = Config.fromfile(str(REPO / path))
    name = Path(path).stem
    method, arch = name.split('_')[0], name.split('_vit-')[1][0]
    dims, cut = PAPER[arch]

    model = MODELS.build(cfg.model)
    bb = model.backbone
    assert type(model).__name__ == 'MaPeT'
    assert bb.mode == method
    assert bb.embed_dims == dims and bb.num_layers == 12
    assert bb.arch_settings['feedforward_channels'] == 4 * dims
    assert bb.layers[0].attn.num_heads == dims // 64
    assert bb.cutting_point == (None if method == 'mim' else cut)
    assert bb.patch_resolution == (14, 14)
    torch.testing.assert_close(bb.layers[0].attn.gamma1.weight,
                               torch.full((dims, ), 0.1))
    assert model.head.num_embed == 8192
    assert model.head.cls_head.in_features == dims

    gen = _pipeline_step(cfg, 'PermutationMaskGenerator')
    assert gen['mode'] == method
    built = TRANSFORMS.build(gen)
    assert built.num_patches == 196
    if method == 'mim':
        assert built.num_masking_patches == 75
    tokens = _pipeline_step(cfg, 'LoadVisualTokens')
    assert (tokens['grid_size'], tokens['vocab_size'], tokens['crop']) == (
        14, 8192, 'center')
    assert ('vqkd' in tokens['store']) == ('vqkd' in name)
    assert _pipeline_step(cfg, 'ColorJitter')['brightness'] == 0.4
    assert _pipeline_step(cfg, 'PackInputs')['algorithm_keys'] == [
        'permutation', 'visual_tokens'
    ]

    assert cfg.train_dataloader.batch_size * 64 == 2048
    assert cfg.auto_scale_lr.base_batch_size == 2048
    assert cfg.train_cfg.max_epochs == 300
    assert cfg.custom_imports.imports == ['mapet']


def test_vqkd_config_differs_only_in_token_store():
    a = Config.fromfile(str(REPO / 'configs/pim/pim_vit-s_300e_in1k.py'))
    b = Config.fromfile(str(REPO / 'configs/pim/pim_vit-s_vqkd_300e_in1k.py'))
    a_dict, b_dict = a.to_dict(), b.to_dict()
    for d in (a_dict, b_dict):
        d.pop('token_store', None)
        for t in d['train_dataloader']['dataset']['pipeline']:
            t.pop('store', None)
    assert a_dict == b_dict


def test_schedule_follows_table_8():
    cfg = Config.fromfile(str(REPO / 'configs/mapet/mapet_vit-b_300e_in1k.py'))
    opt = cfg.optim_wrapper
    assert opt.type == 'AmpOptimWrapper'
    assert (opt.optimizer.type, opt.optimizer.lr, opt.optimizer.betas,
            opt.optimizer.eps, opt.optimizer.weight_decay) == ('AdamW', 1.5e-3,
                                                               (0.9, 0.999),
                                                               1e-8, 0.05)
    assert opt.clip_grad.max_norm == 3.0
    warmup, cosine = cfg.param_scheduler
    assert warmup.type == 'LinearLR' and warmup.end == 10
    assert abs(warmup.start_factor * 1.5e-3 - 1e-6) < 1e-12
    assert cosine.type == 'CosineAnnealingLR' and cosine.eta_min == 1e-5
    assert (cosine.begin, cosine.end) == (10, 300)
    assert cfg.model.backbone.drop_path_rate == 0.1


def test_no_weight_decay_on_norms_biases_tokens():
    cfg = Config.fromfile(str(REPO / 'configs/mapet/mapet_vit-t_300e_in1k.py'))
    cfg.model.backbone.update(
        arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                  feedforward_channels=64),
        img_size=32, patch_size=8, cutting_point=5)
    cfg.model.head.update(embed_dims=32, num_embed=16)
    model = MODELS.build(cfg.model)
    optim_cfg = cfg.optim_wrapper.copy()
    optim_cfg.type = 'OptimWrapper'  # AMP needs a GPU
    optim_cfg.pop('loss_scale')
    wrapper = build_optim_wrapper(model, optim_cfg)
    decay = {}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            decay[names[id(p)]] = group['weight_decay']
    for name, wd in decay.items():
        no_decay = (name.endswith('bias') or '.ln' in name or 'gamma' in name
                    or name.split('.')[-1] in ('cls_token', 'pos_embed',
                                               'mask_token'))
        assert wd == (0.0 if no_decay else 0.05), name
    assert decay['backbone.mask_token'] == 0.0
    assert decay['backbone.layers.0.attn.qkv.weight'] == 0.05


def test_cutting_point_override_for_the_ablation():
    cfg = Config.fromfile(
        str(REPO / 'configs/mapet/mapet_vit-b_vqkd_300e_in1k.py'))
    cfg.merge_from_dict({'model.backbone.cutting_point': 30})
    assert cfg.model.backbone.cutting_point == 30
    cfg.merge_from_dict({'model.backbone.cutting_point': 196})
    with pytest.raises(ValueError, match=r'outside \[1, N-1\]'):
        MODELS.build(cfg.model)
