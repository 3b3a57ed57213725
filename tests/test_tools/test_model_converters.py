"""Converters in tools/model_converters: key coverage and feature equality.

Each converter runs as a subprocess (``tools`` is no package) on a
checkpoint written here; the checks load what it wrote.
"""
import ast
import re
from pathlib import Path
from typing import Dict, List

import pytest
import timm
import torch
from mmpretrain.models import ImageClassifier, VisionTransformer

import mapet  # noqa: F401

DIMS, DEPTH, HEADS, FFN, IMG, CLASSES = 32, 2, 2, 64, 32, 5
ARCH = dict(
    embed_dims=DIMS, num_layers=DEPTH, num_heads=HEADS,
    feedforward_channels=FFN)


TOOLS = 'tools/model_converters/'
STRIP = TOOLS + 'strip_pretrain_checkpoint.py'
OFFICIAL = TOOLS + 'official_mapet_to_mmpretrain.py'
TO_TIMM = TOOLS + 'mmpretrain_to_timm.py'


def _convert(run_tool, script: str, checkpoint, tmp_path: Path, *args):
    """Save ``checkpoint``, convert it; return (loaded output, stdout)."""
    src, dst = tmp_path / 'src.pth', tmp_path / 'dst.pth'
    torch.save(checkpoint, src)
    proc = run_tool(script, src, dst, *args)
    # written like a training checkpoint: atomically, with a sidecar
    from mapet.utils import verify_checksum
    verify_checksum(dst)
    return torch.load(dst, weights_only=True), proc.stdout


def _convert_fails(run_tool, script: str, checkpoint, tmp_path: Path,
                   *args) -> str:
    """Save ``checkpoint``, convert it; it must fail: return stderr."""
    src, dst = tmp_path / 'bad_src.pth', tmp_path / 'bad_dst.pth'
    torch.save(checkpoint, src)
    proc = run_tool(script, src, dst, *args, check=False)
    assert proc.returncode != 0
    assert not dst.exists()
    return proc.stderr


def _dropped(stdout: str) -> List[str]:
    """The ``dropped [...]`` list mmpretrain_to_timm.py prints."""
    return ast.literal_eval(re.search(r'dropped (\[.*?\])', stdout)[1])


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
def test_official_import_matches_timm_logits(bias_style, run_tool,
                                             tmp_path):
    ref = _timm_vit('avg', num_classes=CLASSES)
    _randomize(ref)
    if bias_style == 'q_v':
        with torch.no_grad():
            for blk in ref.blocks:
                blk.attn.qkv.bias[DIMS:2 * DIMS] = 0
    ckpt = _official_from_timm(ref.state_dict(), bias_style)
    ckpt['mask_token'] = torch.zeros(1, 1, DIMS)
    assert 'blocks.0.attn.q.weight' in ckpt and 'blocks.0.gamma_1' in ckpt

    # released checkpoints nest the weights under `model`
    out, _ = _convert(run_tool, OFFICIAL, dict(model=ckpt), tmp_path)
    assert out['meta']['dropped'] == ['mask_token']
    model = _mm_classifier()
    model.load_state_dict(out['state_dict'], strict=True)
    x = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        torch.testing.assert_close(
            model(x, mode='tensor'), ref(x), rtol=1e-4, atol=1e-5)


def test_official_import_fails_on_unmapped_key(run_tool, tmp_path):
    ref = _timm_vit('avg', num_classes=CLASSES)
    ckpt = _official_from_timm(ref.state_dict(), 'q_kv')
    ckpt['blocks.0.attn.relative_position_bias_table'] = torch.zeros(3)
    err = _convert_fails(run_tool, OFFICIAL, ckpt, tmp_path)
    assert re.search(r'KeyError: .*Unmapped keys.*'
                     r'blocks\.0\.attn\.relative_position_bias_table', err)
    del ckpt['blocks.0.attn.relative_position_bias_table']
    del ckpt['blocks.1.attn.kv.weight']
    err = _convert_fails(run_tool, OFFICIAL, ckpt, tmp_path)
    assert re.search(r'KeyError: .*blocks\.1: expected attn\.q\.weight and '
                     r'attn\.kv\.weight', err)


@pytest.mark.parametrize('pool', ['token', 'avg'])
def test_timm_export_matches_features(pool, run_tool, tmp_path):
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
    converted, stdout = _convert(run_tool, TO_TIMM, dict(state_dict=sd),
                                 tmp_path)
    assert set(_dropped(stdout)) == {'mask_token', 'head.fc.weight'}

    ref = _timm_vit(pool)
    ref.load_state_dict(converted, strict=True)
    x = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        torch.testing.assert_close(
            backbone(x)[0], ref(x), rtol=1e-4, atol=1e-5)


def test_round_trip_mmpretrain_timm_official_mmpretrain(run_tool, tmp_path):
    model = _mm_classifier()
    _randomize(model, seed=2)
    original = model.state_dict()
    timm_sd, stdout = _convert(run_tool, TO_TIMM,
                               dict(state_dict=original, meta=dict(epoch=1)),
                               tmp_path, '--with-head')
    assert _dropped(stdout) == []
    out, _ = _convert(run_tool, OFFICIAL,
                      _official_from_timm(timm_sd, 'q_kv'), tmp_path)
    back = out['state_dict']
    assert out['meta']['dropped'] == []
    assert set(back) == set(original)
    for key, value in original.items():
        assert torch.equal(back[key], value), key


def test_timm_export_fails_on_unknown_backbone_key(run_tool, tmp_path):
    sd = {'backbone.layers.0.attn.q_bias': torch.zeros(DIMS)}
    err = _convert_fails(run_tool, TO_TIMM, sd, tmp_path)
    assert re.search(r"KeyError: .*Unmapped backbone keys.*"
                     r"'layers\.0\.attn\.q_bias'", err)


def test_strip_keeps_backbone_and_checks_every_key(run_tool, tmp_path):
    sd = {
        'backbone.cls_token': torch.ones(1),
        'backbone.pos_embed': torch.arange(4.),
        'backbone.mask_token': torch.ones(1),
        'head.fc.weight': torch.ones(1),
        'target_generator.codebook': torch.ones(1),
    }
    out, _ = _convert(run_tool, STRIP, dict(state_dict=sd,
                                            meta=dict(epoch=3)), tmp_path)
    assert list(out['state_dict']) == [
        'backbone.cls_token', 'backbone.pos_embed', 'backbone.mask_token'
    ]
    assert torch.equal(out['state_dict']['backbone.pos_embed'],
                       torch.arange(4.))
    assert out['meta']['dropped'] == {'head.': 1, 'target_generator.': 1}
    extra = {**sd, 'extra.weight': torch.ones(1)}
    err = _convert_fails(run_tool, STRIP, dict(state_dict=extra), tmp_path)
    assert re.search(r"KeyError: .*neither in the backbone.*'extra\.weight'",
                     err)
    err = _convert_fails(run_tool, STRIP,
                         dict(state_dict={'head.fc.weight': torch.ones(1)}),
                         tmp_path)
    assert "KeyError: \"No key starts with 'backbone.'" in err
