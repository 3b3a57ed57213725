"""Converters in tools/model_converters: key coverage and feature equality."""
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest
import timm
import torch
from mmpretrain.models import ImageClassifier, VisionTransformer

import mapet  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
DIMS, DEPTH, HEADS, FFN, IMG, CLASSES = 32, 2, 2, 64, 32, 5
ARCH = dict(
    embed_dims=DIMS, num_layers=DEPTH, num_heads=HEADS,
    feedforward_channels=FFN)


def _load_tool(name: str):
    path = REPO / 'tools' / 'model_converters' / f'{name}.py'
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


strip = _load_tool('strip_pretrain_checkpoint')
official = _load_tool('official_mapet_to_mmpretrain')
to_timm = _load_tool('mmpretrain_to_timm')


def _randomize(module: torch.nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)


def _timm_vit(global_pool: str, num_classes: int = 0, **kw):
    return timm.models.vision_transformer.VisionTransformer(
        img_size=IMG, patch_size=16, embed_dim=DIMS, depth=DEPTH,
        num_heads=HEADS, mlp_ratio=FFN / DIMS, init_values=0.1,
        global_pool=global_pool, num_classes=num_classes, **kw).eval()


def _mm_classifier() -> ImageClassifier:
    model = ImageClassifier(
        backbone=dict(
            type='VisionTransformer', arch=ARCH, img_size=IMG,
            patch_size=16, layer_scale_init_value=0.1,
            out_type='avg_featmap', final_norm=False),
        head=dict(
            type='LinearClsHead', num_classes=CLASSES, in_channels=DIMS,
            loss=dict(type='CrossEntropyLoss')))
    model.eval()
    return model


def _official_from_timm(sd: Dict[str, torch.Tensor],
                        bias_style: str) -> Dict[str, torch.Tensor]:
    """Rewrite timm keys into the official layout (separate q and kv)."""
    out = {}
    for key, value in sd.items():
        if '.attn.qkv.' in key:
            block = key.split('.attn.')[0]
            if key.endswith('weight'):
                out[f'{block}.attn.q.weight'] = value[:DIMS]
                out[f'{block}.attn.kv.weight'] = value[DIMS:]
            elif bias_style == 'q_kv':
                out[f'{block}.attn.q.bias'] = value[:DIMS]
                out[f'{block}.attn.kv.bias'] = value[DIMS:]
            else:  # BEiT's q_bias/v_bias: k has no bias
                out[f'{block}.attn.q_bias'] = value[:DIMS]
                out[f'{block}.attn.v_bias'] = value[2 * DIMS:]
        else:
            out[key.replace('ls1.gamma', 'gamma_1').replace(
                'ls2.gamma', 'gamma_2')] = value
    return out


@pytest.mark.parametrize('bias_style', ['q_kv', 'q_v'])
def test_official_import_matches_timm_logits(bias_style):
    ref = _timm_vit('avg', num_classes=CLASSES)
    _randomize(ref)
    if bias_style == 'q_v':
        with torch.no_grad():
            for blk in ref.blocks:
                blk.attn.qkv.bias[DIMS:2 * DIMS] = 0
    ckpt = _official_from_timm(ref.state_dict(), bias_style)
    ckpt['mask_token'] = torch.zeros(1, 1, DIMS)
    assert 'blocks.0.attn.q.weight' in ckpt and 'blocks.0.gamma_1' in ckpt

    converted, dropped = official.convert_official(ckpt)
    assert dropped == ['mask_token']
    model = _mm_classifier()
    model.load_state_dict(converted, strict=True)
    x = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        torch.testing.assert_close(
            model(x, mode='tensor'), ref(x), rtol=1e-4, atol=1e-5)


def test_official_import_fails_on_unmapped_key():
    ref = _timm_vit('avg', num_classes=CLASSES)
    ckpt = _official_from_timm(ref.state_dict(), 'q_kv')
    ckpt['blocks.0.attn.relative_position_bias_table'] = torch.zeros(3)
    with pytest.raises(KeyError, match='relative_position_bias_table'):
        official.convert_official(ckpt)
    del ckpt['blocks.0.attn.relative_position_bias_table']
    del ckpt['blocks.1.attn.kv.weight']
    with pytest.raises(KeyError, match='blocks.1'):
        official.convert_official(ckpt)


@pytest.mark.parametrize('pool', ['token', 'avg'])
def test_timm_export_matches_features(pool):
    final_norm = pool == 'token'
    backbone = VisionTransformer(
        arch=ARCH, img_size=IMG, patch_size=16, layer_scale_init_value=0.1,
        final_norm=final_norm,
        out_type='cls_token' if final_norm else 'avg_featmap')
    backbone.eval()  # VisionTransformer.train() returns None: don't chain
    _randomize(backbone, seed=1)
    sd = {f'backbone.{k}': v for k, v in backbone.state_dict().items()}
    sd['backbone.mask_token'] = torch.zeros(1, 1, DIMS)  # pre-training only
    sd['head.fc.weight'] = torch.zeros(8, DIMS)
    converted, dropped = to_timm.convert_to_timm(sd)
    assert set(dropped) == {'mask_token', 'head.fc.weight'}

    ref = _timm_vit(pool)
    ref.load_state_dict(converted, strict=True)
    x = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        torch.testing.assert_close(
            backbone(x)[0], ref(x), rtol=1e-4, atol=1e-5)


def test_round_trip_mmpretrain_timm_official_mmpretrain():
    model = _mm_classifier()
    _randomize(model, seed=2)
    original = model.state_dict()
    timm_sd, _ = to_timm.convert_to_timm(original, with_head=True)
    back, dropped = official.convert_official(
        _official_from_timm(timm_sd, 'q_kv'))
    assert dropped == []
    assert set(back) == set(original)
    for key, value in original.items():
        assert torch.equal(back[key], value), key


def test_timm_export_fails_on_unknown_backbone_key():
    sd = {'backbone.layers.0.attn.q_bias': torch.zeros(DIMS)}
    with pytest.raises(KeyError, match='q_bias'):
        to_timm.convert_to_timm(sd)


def test_strip_keeps_backbone_and_checks_every_key():
    sd = {
        'backbone.cls_token': torch.ones(1),
        'backbone.mask_token': torch.ones(1),
        'head.fc.weight': torch.ones(1),
        'target_generator.codebook': torch.ones(1),
    }
    kept, dropped = strip.strip_to_backbone(sd)
    assert list(kept) == ['backbone.cls_token', 'backbone.mask_token']
    assert dropped == {'head.': 1, 'target_generator.': 1}
    with pytest.raises(KeyError, match='extra.weight'):
        strip.strip_to_backbone({**sd, 'extra.weight': torch.ones(1)})
    with pytest.raises(KeyError, match='No key starts with'):
        strip.strip_to_backbone({'head.fc.weight': torch.ones(1)})


def test_strip_cli_writes_weights_only_checkpoint(tmp_path, tools_env):
    src, dst = tmp_path / 'pretrain.pth', tmp_path / 'backbone.pth'
    torch.save(
        dict(
            state_dict={
                'backbone.pos_embed': torch.arange(4.),
                'head.fc.weight': torch.ones(2)
            },
            meta=dict(epoch=3)), src)
    tool = REPO / 'tools' / 'model_converters' / \
        'strip_pretrain_checkpoint.py'
    subprocess.run([sys.executable, str(tool), str(src), str(dst)],
                   check=True, env=tools_env, cwd=REPO)
    out = torch.load(dst, weights_only=True)
    assert list(out['state_dict']) == ['backbone.pos_embed']
    assert torch.equal(out['state_dict']['backbone.pos_embed'],
                       torch.arange(4.))
    assert out['meta']['dropped'] == {'head.': 1}
    # written like a training checkpoint: atomically, with a sidecar
    from mapet.utils import verify_checksum
    verify_checksum(dst)
