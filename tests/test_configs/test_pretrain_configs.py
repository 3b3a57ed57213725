"""Every pre-training config loads, builds its model and follows the paper."""
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, default_collate
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
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


def _types(cfg):
    return [t['type'] for t in cfg.train_dataloader.dataset.pipeline]


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

    tokens = _pipeline_step(cfg, 'LoadVisualTokens')
    assert (tokens['grid_size'], tokens['vocab_size'], tokens['crop']) == (
        14, 8192, 'center')
    assert ('vqkd' in tokens['store']) == ('vqkd' in name)
    assert _pipeline_step(cfg, 'ColorJitter')['brightness'] == 0.4
    if method == 'mim':
        # mmpretrain's random patch masking; PackInputs packs `mask` itself.
        assert 'RandomPatchPermutation' not in _types(cfg)
        gen = TRANSFORMS.build(_pipeline_step(cfg, 'SimMIMMaskGenerator'))
        assert gen.rand_size == 14 and gen.mask_count == 75
        keys = ['visual_tokens']
    else:
        # Same permutation transform for MaPeT and PIM: the mode is the
        # backbone's only.
        assert not any('Mask' in t for t in _types(cfg))
        gen = TRANSFORMS.build(_pipeline_step(cfg, 'RandomPatchPermutation'))
        assert gen.grid == bb.patch_resolution and gen.num_patches == 196
        keys = ['permutation', 'visual_tokens']
    assert _pipeline_step(cfg, 'PackInputs')['algorithm_keys'] == keys
    assert _types(cfg)[-1] == 'PackInputs'
    assert cfg.runner_type == 'mmpretrain.MaPeTRunner'
    assert cfg.default_hooks.nan_guard == dict(type='NaNGuardHook')

    assert cfg.train_dataloader.batch_size * 64 == 2048
    assert cfg.auto_scale_lr.base_batch_size == 2048
    assert cfg.train_cfg.max_epochs == 300
    assert cfg.custom_imports.imports == ['mapet']


def test_mim_mask_is_75_random_of_196_patches():
    """The MIM configs' SimMIMMaskGenerator masks exactly 75 of the 196
    patches of every image (BEiT's count), a new random set per image,
    packed as ``data_sample.mask`` on the backbone's 14x14 patch grid; the
    MIM model predicts exactly those patches."""
    cfg = Config.fromfile(str(REPO / 'configs/mim/mim_vit-t_300e_in1k.py'))
    steps = cfg.train_dataloader.dataset.pipeline
    start = _types(cfg).index('SimMIMMaskGenerator')
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        tail = Compose(steps[start:])  # mask generator, PackInputs
    rng = np.random.default_rng(0)
    np.random.seed(0)
    samples = [
        tail(dict(
            img=np.zeros((224, 224, 3), np.uint8),
            visual_tokens=rng.integers(0, 8192, 196)))
        for _ in range(32)
    ]
    masks = np.stack([np.asarray(s['data_samples'].mask) for s in samples])
    assert masks.shape == (32, 14, 14)
    assert set(np.unique(masks)) == {0, 1}
    assert (masks.reshape(32, -1).sum(1) == 75).all()
    # random masking: the images get different sets, every patch gets hit
    assert len({m.tobytes() for m in masks}) == 32
    assert masks.any(0).all()
    assert 'permutation' not in samples[0]['data_samples']

    # The MIM model (tiny ViT on the same 14x14 grid) predicts exactly the
    # 75 masked patches of each image.
    cfg.model.backbone.update(
        arch=dict(embed_dims=32, num_layers=1, num_heads=2,
                  feedforward_channels=64),
        drop_path_rate=0.)
    cfg.model.head.update(embed_dims=32, num_embed=8192)
    model = MODELS.build(cfg.model)
    batch = default_collate(samples[:2])
    predicted = []
    model.head.cls_head.register_forward_hook(
        lambda m, args, out: predicted.append(args[0].shape[0]))
    losses = model.loss(torch.randn(2, 3, 224, 224), batch['data_samples'])
    assert torch.isfinite(losses['loss'])
    assert predicted == [2 * 75]


METHODS_VS_MAPET = {
    # PIM: the backbone's mode only (same permutation transform).
    'pim': {
        'model.backbone.mode': 'pim'
    },
    # MIM: single stream, no cutting point, random masking instead of the
    # permutation, `mask` packed by PackInputs itself.
    'mim': {
        'model.backbone.mode': 'mim',
        'model.backbone.cutting_point': None,
        'train_dataloader.dataset.pipeline[5]': dict(
            type='SimMIMMaskGenerator',
            input_size=224,
            mask_patch_size=16,
            model_patch_size=16,
            mask_ratio=0.38),
        'train_dataloader.dataset.pipeline[6].algorithm_keys':
        ['visual_tokens'],
    },
    # BEiT: MIM with BEiT's block-wise masking of 75 of 196 patches.
    'beit': {
        'model.backbone.mode': 'mim',
        'model.backbone.cutting_point': None,
        'train_dataloader.dataset.pipeline[5]': dict(
            type='BEiTMaskGenerator',
            input_size=14,
            num_masking_patches=75,
            min_num_patches=16,
            max_num_patches=None),
        'train_dataloader.dataset.pipeline[6].algorithm_keys':
        ['visual_tokens'],
    },
}
# Config-file helper variables (the mask transforms put in the pipeline).
HELPER_VARIABLES = ('random_mask', 'block_mask')


def _differences(a, b, path=''):
    """{path: value in b} of every leaf where two config dicts differ."""
    if isinstance(a, dict) and isinstance(b, dict) and \
            a.get('type') == b.get('type'):
        out = {}
        for key in sorted(set(a) | set(b), key=str):
            sub = f'{path}.{key}' if path else str(key)
            if key not in a or key not in b:
                out[sub] = b.get(key, '<absent>')
            else:
                out.update(_differences(a[key], b[key], sub))
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and \
            len(a) == len(b):
        out = {}
        for i, (x, y) in enumerate(zip(a, b)):
            out.update(_differences(x, y, f'{path}[{i}]'))
        return out
    return {} if a == b else {path: b}


def test_differences_see_nested_changes():
    base = dict(a=1, m=dict(type='X', b=[dict(type='T', k=1)]))
    assert _differences(base, base) == {}
    changed = dict(a=1, m=dict(type='X', b=[dict(type='T', k=2)]), n=0)
    assert _differences(base, changed) == {'m.b[0].k': 2, 'n': 0}
    swapped = dict(a=1, m=dict(type='Y', b=[]))
    assert _differences(base, swapped) == {'m': swapped['m']}


@pytest.mark.parametrize('tok', ['', '_vqkd'])
@pytest.mark.parametrize('arch', 'tsb')
@pytest.mark.parametrize('method', sorted(METHODS_VS_MAPET))
def test_baseline_differs_from_mapet_only_where_expected(method, arch, tok):
    name = f'vit-{arch}{tok}_300e_in1k.py'
    mapet_cfg = Config.fromfile(str(REPO / 'configs/mapet' / f'mapet_{name}'))
    cfg = Config.fromfile(str(REPO / 'configs' / method / f'{method}_{name}'))
    assert _types(mapet_cfg)[5:] == ['RandomPatchPermutation', 'PackInputs']
    expected = dict(METHODS_VS_MAPET[method])
    ours = cfg.to_dict()
    for helper in HELPER_VARIABLES:
        ours.pop(helper, None)
    assert _differences(mapet_cfg.to_dict(), ours) == expected


@pytest.mark.parametrize('method', ['mapet', 'pim', 'mim', 'beit'])
def test_vqkd_config_differs_only_in_token_store(method):
    a = Config.fromfile(
        str(REPO / f'configs/{method}/{method}_vit-s_300e_in1k.py'))
    b = Config.fromfile(
        str(REPO / f'configs/{method}/{method}_vit-s_vqkd_300e_in1k.py'))
    assert 'kclip' in _pipeline_step(a, 'LoadVisualTokens')['store']
    assert 'vqkd' in _pipeline_step(b, 'LoadVisualTokens')['store']
    a_dict, b_dict = a.to_dict(), b.to_dict()
    for d in (a_dict, b_dict):
        d.pop('token_store', None)
        for t in d['train_dataloader']['dataset']['pipeline']:
            t.pop('store', None)
            t.pop('codebook', None)  # each store pins its own codebook
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
