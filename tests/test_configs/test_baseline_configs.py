"""BEiT / CAE fair-baseline configs (paper Table 2) and their modules."""
import copy
import math

import numpy as np
import pytest
import torch
from mmengine.dataset import Compose, default_collate
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmpretrain.models import VisionTransformer
from mmpretrain.registry import MODELS

import downstream_helpers as H  # tests/helpers
from mapet.models.backbones import VisibleTokensViT

BASELINES = H.configs_in('beit') + H.configs_in('cae')
NUM_PATCHES = 196


def _pipeline_without_token_store(cfg):
    """The config's pipeline; visual tokens are injected by the caller."""
    transforms = [
        t for t in cfg.train_dataloader.dataset.pipeline
        if t.type != 'LoadVisualTokens'
    ]
    return Compose(transforms)


@pytest.mark.parametrize('path', BASELINES, ids=lambda p: p.name)
def test_baseline_config_matches_mapet_recipe_and_trains(
        path, demo_data_root):
    cfg = H.load(path)
    mapet_cfg = H.load(H.CONFIGS / 'mapet' / path.name.replace(
        path.name.split('_')[0], 'mapet', 1))
    # identical targets, schedule and data (but the masking transform)
    for key in ('optim_wrapper', 'param_scheduler', 'train_cfg',
                'auto_scale_lr', 'data_preprocessor'):
        assert cfg[key] == mapet_cfg[key], key
    stores = [(t.type, t.get('store')) for t in
              cfg.train_dataloader.dataset.pipeline
              if t.type == 'LoadVisualTokens']
    assert stores == [('LoadVisualTokens', [
        t.store for t in mapet_cfg.train_dataloader.dataset.pipeline
        if t.type == 'LoadVisualTokens'][0])]
    masks = [t for t in cfg.train_dataloader.dataset.pipeline
             if 'Mask' in t.type]
    expected = 75 if path.parent.name == 'beit' else 98  # 40 % / 50 %
    assert [(m.type, m.num_masking_patches) for m in masks] == \
        [('BEiTMaskGenerator', expected)]

    with DefaultScope.overwrite_default_scope('mmpretrain'):
        pipeline = _pipeline_without_token_store(cfg)
    rng = np.random.default_rng(0)
    samples = []
    for i in range(2):
        results = dict(
            img_path=str(next((demo_data_root / 'train').rglob('*.png'))),
            visual_tokens=rng.integers(0, 8192, NUM_PATCHES))
        samples.append(pipeline(results))
    assert cfg.train_dataloader.collate_fn.type == "default_collate"
    batch = default_collate(samples)
    assert batch['data_samples'][0].mask.sum() == expected

    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model_cfg = copy.deepcopy(cfg.model)
        H.tiny_vit(model_cfg.backbone)
        if 'neck' in model_cfg and model_cfg.neck:
            model_cfg.neck.embed_dims = H.TINY_DIMS
            model_cfg.neck.num_heads = H.TINY_ARCH['num_heads']
            model_cfg.neck.regressor_depth = 1
            model_cfg.neck.decoder_depth = 1
        else:
            model_cfg.head.embed_dims = H.TINY_DIMS
        model_cfg.data_preprocessor = cfg.data_preprocessor
        model = MODELS.build(model_cfg)
        model.init_weights()
        wrapper_cfg = copy.deepcopy(cfg.optim_wrapper)
        wrapper_cfg.type = 'OptimWrapper'
        wrapper_cfg.pop('loss_scale', None)
        optim_wrapper = build_optim_wrapper(model, wrapper_cfg)
        before = model.backbone.layers[0].attn.qkv.weight.detach().clone()
        losses = model.train_step(batch, optim_wrapper)
    loss = float(losses['loss'].detach())
    assert math.isfinite(loss) and loss > 0
    assert not torch.equal(before, model.backbone.layers[0].attn.qkv.weight)


def test_visible_tokens_vit_is_a_plain_vit():
    kwargs = dict(arch=H.TINY_ARCH, img_size=32, patch_size=16,
                  layer_scale_init_value=0.1, out_type='raw')
    ours = VisibleTokensViT(**kwargs)
    ours.eval()
    ref = VisionTransformer(**kwargs)
    ref.eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_(0, 0.2)
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        full = ref(x)[0]
        torch.testing.assert_close(ours(x)[0], full)
        # nothing masked: same tokens as the plain forward
        none = torch.zeros(2, 4, dtype=torch.bool)
        torch.testing.assert_close(ours(x, none), full)
        # masked patches are dropped: the CLS + 3 visible tokens remain
        mask = torch.tensor([[1, 0, 0, 0], [0, 0, 1, 0]], dtype=torch.bool)
        assert ours(x, mask).shape == (2, 4, H.TINY_DIMS)
    with pytest.raises(ValueError, match='same number of visible'):
        ours(x, torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0]]).bool())
