"""Converters in tools/model_converters: key coverage, safe reading of the
official layouts, the configs they write, and feature equality with timm.

Each converter runs as a subprocess (``tools`` is no package) on a
checkpoint written here in the layout its producer writes (timm's
``CheckpointSaver`` with an ``argparse.Namespace``, BEiT's ``save_model``,
our runner's ``{'meta', 'state_dict'}``); the checks load what it wrote.
"""
import argparse
import ast
import json
import re
from pathlib import Path
from typing import Dict, List

import pytest
import timm
import torch
from mmengine.config import Config
from mmpretrain.models import ImageClassifier, VisionTransformer
from mmpretrain.registry import MODELS

import mapet  # noqa: F401
from mapet.converters import \
    official_mapet_to_mmpretrain as official_converter
from mapet.models.backbones import MaPeTViT
from mapet.utils import CorruptCheckpointError, load_checkpoint_file

DIMS, DEPTH, HEADS, FFN, IMG, CLASSES = 32, 2, 2, 64, 32, 5
ARCH = dict(
    embed_dims=DIMS, num_layers=DEPTH, num_heads=HEADS,
    feedforward_channels=FFN)
VOCAB = 16

REPO = Path(__file__).resolve().parents[2]
TOOLS = 'tools/model_converters/'
STRIP = TOOLS + 'strip_pretrain_checkpoint.py'
OFFICIAL = TOOLS + 'official_mapet_to_mmpretrain.py'
TO_TIMM = TOOLS + 'mmpretrain_to_timm.py'
#: features after a round trip through timm must match to this (float32)
FEATURE_ATOL = 1e-5


def _convert(run_tool, script: str, checkpoint, tmp_path: Path, *args,
             dst: str = 'dst.pth'):
    """Save ``checkpoint``, convert it; return (loaded output, stdout)."""
    src, dst = tmp_path / 'src.pth', tmp_path / dst
    torch.save(checkpoint, src)
    proc = run_tool(script, src, dst, *args)
    # written like a training checkpoint: atomically, with a sidecar
    from mapet.utils import verify_checksum
    verify_checksum(dst)
    return load_checkpoint_file(str(dst)), proc.stdout


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


def _randomize(module: torch.nn.Module, seed: int = 0,
               std: float = 0.2) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)


def _timm_vit(global_pool: str, num_classes: int = 0, img: int = IMG,
              **kw):
    return timm.models.vision_transformer.VisionTransformer(
        img_size=img, patch_size=16, embed_dim=DIMS, depth=DEPTH,
        num_heads=HEADS, mlp_ratio=FFN / DIMS, init_values=0.1,
        global_pool=global_pool, num_classes=num_classes, **kw).eval()


def _mm_classifier(num_classes: int = CLASSES) -> ImageClassifier:
    model = ImageClassifier(
        backbone=dict(
            type='VisionTransformer', arch=ARCH, img_size=IMG,
            patch_size=16, layer_scale_init_value=0.1,
            out_type='avg_featmap', final_norm=False),
        head=dict(
            type='LinearClsHead', num_classes=num_classes, in_channels=DIMS,
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


def _zero_k_bias(ref) -> None:
    with torch.no_grad():
        for blk in ref.blocks:
            blk.attn.qkv.bias[DIMS:2 * DIMS] = 0


def _official_args(**kw) -> argparse.Namespace:
    """An ``args`` as the official (timm) train.py parses it."""
    base = dict(
        model='mapet_vit_tiny_patch16_224', img_size=None,
        input_size=None, batch_size=256, lr=1.5e-3, opt='adamw',
        drop_path=0.1, epochs=300, amp=True, output='output/',
        resume='', gp=None, least_number=60, seed=42)
    base.update(kw)
    return argparse.Namespace(**base)


def _timm_saver(state_dict, args: argparse.Namespace, epoch: int = 299,
                metric=None) -> dict:
    """The dict timm's CheckpointSaver writes (AdamW, NativeScaler)."""
    params = [torch.nn.Parameter(torch.zeros(3))]
    opt = torch.optim.AdamW(params, lr=1e-3)
    params[0].grad = torch.ones(3)
    opt.step()
    ckpt = {
        'epoch': epoch,
        'arch': args.model,
        'state_dict': state_dict,
        'optimizer': opt.state_dict(),
        'version': 2,
        'args': args,
        'amp_scaler': {
            'scale': 65536.0, 'growth_factor': 2.0, 'backoff_factor': 0.5,
            'growth_interval': 2000, '_growth_tracker': 0},
    }
    if metric is not None:
        ckpt['metric'] = metric
    return ckpt


def _build_from(config_file: Path):
    cfg = Config.fromfile(str(config_file))
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    model.eval()
    return cfg, model


# -- official checkpoints -----------------------------------------------------


@pytest.mark.parametrize('bias_style', ['q_kv', 'q_v'])
def test_official_import_matches_timm_logits(bias_style, run_tool,
                                             tmp_path):
    ref = _timm_vit('avg', num_classes=CLASSES)
    _randomize(ref)
    if bias_style == 'q_v':
        _zero_k_bias(ref)
    ckpt = _official_from_timm(ref.state_dict(), bias_style)
    ckpt['mask_token'] = torch.zeros(1, 1, DIMS)
    assert 'blocks.0.attn.q.weight' in ckpt and 'blocks.0.gamma_1' in ckpt

    # BEiT's save_model nests the weights under `model`
    out, _ = _convert(run_tool, OFFICIAL, dict(model=ckpt, epoch=3),
                      tmp_path, '--num-heads', HEADS)
    assert out['meta']['dropped'] == ['mask_token']
    assert out['meta']['kind'] == 'finetune'
    model = _mm_classifier()
    model.load_state_dict(out['state_dict'], strict=True)
    x = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        torch.testing.assert_close(
            model(x, mode='tensor'), ref(x), rtol=1e-4, atol=1e-5)


def test_official_finetuned_timm_saver_layout(run_tool, tmp_path):
    """timm CheckpointSaver layout, 1000 classes: weights, config, names."""
    ref = _timm_vit('avg', num_classes=1000)
    _randomize(ref, seed=3)
    _zero_k_bias(ref)
    weights = _official_from_timm(ref.state_dict(), 'q_v')
    args = _official_args(input_size=(3, IMG, IMG), gp='avg')
    ckpt = _timm_saver(weights, args, epoch=99, metric=75.25)
    assert isinstance(ckpt['args'], argparse.Namespace)
    assert set(ckpt) == {'epoch', 'arch', 'state_dict', 'optimizer',
                         'version', 'args', 'amp_scaler', 'metric'}
    out, stdout = _convert(run_tool, OFFICIAL, ckpt, tmp_path,
                           '--num-heads', HEADS)
    assert 'official finetune checkpoint (timm CheckpointSaver' in stdout
    # ImageNet-1k class names ride along for get_model / the inferencer
    from mmpretrain.datasets.categories import IMAGENET_CATEGORIES
    assert out['meta']['dataset_meta']['classes'] == list(
        IMAGENET_CATEGORIES)

    report = json.loads((tmp_path / 'dst.json').read_text())
    assert report['kind'] == 'finetune'
    assert report['official']['container'] == 'timm CheckpointSaver'
    assert report['official']['epoch'] == 99
    assert report['official']['metric'] == 75.25
    assert report['official']['args']['input_size'] == [3, IMG, IMG]
    assert report['reproduce']['global_pool'] == 'avg'
    assert report['reproduce']['img_size'] == IMG
    assert report['reproduce']['num_classes'] == 1000
    assert 'optimizer' not in json.dumps(report['reproduce'])

    # the written config rebuilds the model: strict load, same logits
    cfg, model = _build_from(tmp_path / report['config'])
    assert cfg.model.backbone.out_type == 'avg_featmap'
    model.load_state_dict(out['state_dict'], strict=True)
    x = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        torch.testing.assert_close(
            model(x, mode='tensor'), ref(x), rtol=1e-4, atol=1e-5)


def _official_pretrain_weights(seed: int = 4):
    """Official pre-training weights: q/kv + q_bias/v_bias, gamma_1/2,
    final norm, ``mask_positional_token`` and the ``decoder`` head."""
    ref = _timm_vit('token', img=224)
    _randomize(ref, seed=seed, std=0.05)
    _zero_k_bias(ref)
    sd = {k: v for k, v in ref.state_dict().items()
          if not k.startswith('head')}
    weights = _official_from_timm(sd, 'q_v')
    gen = torch.Generator().manual_seed(seed)
    weights['mask_positional_token'] = torch.randn(1, 1, DIMS, generator=gen)
    weights['decoder.weight'] = torch.randn(VOCAB, DIMS, generator=gen)
    weights['decoder.bias'] = torch.randn(VOCAB, generator=gen)
    return ref, weights


def test_official_pretrain_timm_saver_layout(run_tool, tmp_path):
    """Pre-training checkpoint -> our MaPeT; cutting point 49, not args."""
    ref, weights = _official_pretrain_weights()
    # the saved args say least_number=60; the official model ran with 50
    ckpt = _timm_saver(weights, _official_args(least_number=60,
                                               input_size=(3, 224, 224)))
    assert 'metric' not in ckpt  # CheckpointSaver omits a None metric
    out, stdout = _convert(run_tool, OFFICIAL, ckpt, tmp_path,
                           '--num-heads', HEADS)
    sd = out['state_dict']
    assert out['meta']['kind'] == 'pretrain'
    assert torch.equal(sd['backbone.mask_token'],
                       weights['mask_positional_token'])
    assert torch.equal(sd['head.cls_head.weight'], weights['decoder.weight'])
    assert torch.equal(sd['head.cls_head.bias'], weights['decoder.bias'])

    report = json.loads((tmp_path / 'dst.json').read_text())
    values = report['reproduce']
    assert values['cutting_point'] == 49
    assert values['img_size'] == 224 and values['vocab_size'] == VOCAB
    assert values['mode'] == 'mapet'
    assert values['drop_path_rate'] == 0.1
    assert report['official']['args']['least_number'] == 60
    assert any('args.least_number=60 was not used' in n
               for n in report['notes'])
    assert 'cutting_point=49' in stdout

    # the config: our MaPeT model with c = 49 that loads every key
    cfg, model = _build_from(tmp_path / report['config'])
    assert cfg.model.backbone.cutting_point == 49
    assert cfg.model.backbone.mode == 'mapet'
    assert cfg.model.head.num_embed == VOCAB
    model.load_state_dict(sd, strict=True)
    assert model.backbone.cutting_point == 49
    # the content stream without permutation is the official ViT
    model.backbone.out_type = 'raw'
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(
            model.backbone(x)[0], ref.forward_features(x), rtol=1e-4,
            atol=1e-5)
        # and the two-stream pre-training forward runs with c = 49
        perm = torch.randperm(196)[None]
        feats = model.backbone(x, permutation=perm)[-1]
    assert feats.shape == (1, 196 - 49, DIMS)


def test_official_refuses_unsafe_pickles(run_tool, tmp_path):
    marker = tmp_path / 'executed'

    class Payload:  # what a malicious checkpoint pickles

        def __reduce__(self):
            import os
            return os.system, (f'touch {marker}', )

    _, weights = _official_pretrain_weights()
    args = _official_args()
    bad = _timm_saver(weights, args)
    bad['args'] = Payload()
    err = _convert_fails(run_tool, OFFICIAL, bad, tmp_path)
    assert re.search(r"UnsafeCheckpointError: .*type '(posix|os)\.system'",
                     err)
    assert not marker.exists()
    # only argparse.Namespace is added to the allow-list, nothing else
    other = _timm_saver(weights, args)
    other['args'] = Path('output')
    err = _convert_fails(run_tool, OFFICIAL, other, tmp_path)
    assert re.search(r"UnsafeCheckpointError: .*type 'pathlib\.\w*Path'",
                     err)


def test_official_refuses_malformed_checkpoints():
    tool = vars(official_converter)
    _, weights = _official_pretrain_weights()
    saver = _timm_saver(weights, _official_args())
    assert tool['split_container'](saver)[2] == 'timm CheckpointSaver'
    assert tool['checkpoint_kind'](weights) == 'pretrain'
    half = dict(weights)
    del half['mask_positional_token']
    with pytest.raises(KeyError, match='Incomplete official pre-training'):
        tool['convert_official'](half)
    both = dict(weights, **{'head.weight': torch.zeros(3, DIMS)})
    with pytest.raises(KeyError, match='both a pre-training head'):
        tool['convert_official'](both)
    with pytest.raises(KeyError, match=r"--ema: the checkpoint has no "
                       r"\('state_dict_ema'"):
        tool['split_container'](saver, ema=True)
    ema = dict(saver, state_dict_ema=half)
    assert tool['split_container'](ema, ema=True)[0] is half
    with pytest.raises(KeyError, match='No weights entry'):
        tool['split_container']({'epoch': 1, 'optimizer': {}})


def test_official_config_bases_exist():
    """Each paper size maps to a config of ours (the written _base_)."""
    tool = vars(official_converter)
    tags = {known[3] for known in tool['KNOWN_ARCHS'].values()}
    assert tags == set(tool['PRETRAIN_CONFIGS'])
    for base in [*tool['PRETRAIN_CONFIGS'].values(),
                 *tool['FINETUNE_CONFIGS'].values()]:
        assert (REPO / 'configs' / base).is_file(), base


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


# -- export to timm -----------------------------------------------------------


def _our_model(case: str):
    """(model, checkpoint as our runner writes it) for the three cases,
    built from the model configs our benchmarks use."""
    if case == 'backbone':  # a MaPeT pre-training checkpoint
        backbone = MaPeTViT(
            arch=ARCH, img_size=IMG, patch_size=16,
            layer_scale_init_value=0.1, mode='mim', out_type='raw')
        backbone.eval()
        _randomize(backbone, seed=5, std=0.1)
        sd = {f'backbone.{k}': v for k, v in backbone.state_dict().items()}
        sd['head.cls_head.weight'] = torch.zeros(VOCAB, DIMS)
        sd['head.cls_head.bias'] = torch.zeros(VOCAB)
        return backbone, dict(state_dict=sd, meta=dict(epoch=300))
    name = 'vit_avgpool_finetune' if case == 'fine-tuned' \
        else 'vit_linear_probe'
    cfg = Config.fromfile(str(REPO / f'configs/_base_/models/{name}.py'))
    cfg.model.backbone.update(arch=ARCH, img_size=IMG, init_cfg=None)
    if 'frozen_stages' in cfg.model.backbone:
        cfg.model.backbone.frozen_stages = DEPTH
    cfg.model.head.update(num_classes=CLASSES, in_channels=DIMS)
    cfg.model.pop('train_cfg', None)
    model = MODELS.build(cfg.model)
    model.eval()
    _randomize(model, seed=6, std=0.1)
    # mmengine's Runner stores the config text in meta.cfg: the converter
    # reads the heads and the pooling there (parsed, never executed)
    meta = dict(epoch=1, cfg=Config(dict(model=cfg.model)).pretty_text)
    return model, dict(state_dict=model.state_dict(), meta=meta)


def _features(case: str, model, x):
    """Our (features, logits or None) for ``x``."""
    with torch.no_grad():
        if case == 'backbone':
            return model(x)[0], None  # all tokens after the final norm
        feats = model.extract_feat(x)
        feats = feats[-1] if isinstance(feats, tuple) else feats
        return feats, model(x, mode='tensor')


@pytest.mark.parametrize('case,dst', [('fine-tuned', 'ft.safetensors'),
                                      ('linear-probe', 'probe.safetensors'),
                                      ('linear-probe', 'probe.pth'),
                                      ('backbone', 'backbone.safetensors')])
def test_timm_round_trip_features(case, dst, run_tool, tmp_path,
                                  monkeypatch):
    model, ckpt = _our_model(case)
    extra = ['--num-heads', HEADS] if case == 'backbone' else []
    _, stdout = _convert(run_tool, TO_TIMM, ckpt, tmp_path, *extra, dst=dst)
    report = json.loads((tmp_path / (dst.rsplit('.', 1)[0] + '.json'))
                        .read_text())
    assert report['case'] == case
    assert f'{case} model; load it in timm with strict=True' in stdout
    assert report['create_model'] in stdout
    kwargs = report['kwargs']
    assert kwargs['init_values'] == 0.1
    assert kwargs['num_classes'] == (0 if case == 'backbone' else CLASSES)
    assert kwargs['global_pool'] == 'avg'
    assert kwargs.get('fc_norm', None) is (None if case == 'fine-tuned'
                                           else False)
    assert kwargs['img_size'] == IMG and kwargs['num_heads'] == HEADS

    # run exactly the printed lines (create_model + strict load)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(report['load'], scope)  # noqa: S102 (our own output)
    ref = scope['model'].eval()

    x = torch.randn(2, 3, IMG, IMG, generator=torch.Generator()
                    .manual_seed(7))
    ours, logits = _features(case, model, x)
    with torch.no_grad():
        tokens = ref.forward_features(x)
        if case == 'backbone':
            theirs = tokens
            pooled = ref(x)  # num_classes=0: the linear-probe features
            diff_pool = (pooled - ours[:, 1:].mean(1)).abs().max().item()
            assert diff_pool <= FEATURE_ATOL, diff_pool
        else:
            theirs = ref.forward_head(tokens, pre_logits=True)
            diff_logits = (ref(x) - logits).abs().max().item()
            assert diff_logits <= FEATURE_ATOL, diff_logits
    assert ours.shape == theirs.shape
    diff = (ours - theirs).abs().max().item()
    assert diff <= FEATURE_ATOL, f'{case}: max |diff| = {diff:.3g}'
    assert ours.abs().max() > 0.1  # not trivially zero


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
                                 tmp_path, '--without-head', '--num-heads',
                                 HEADS, '--global-pool', pool)
    assert set(_dropped(stdout)) == {'mask_token', 'head.fc.weight'}
    report = json.loads((tmp_path / 'dst.json').read_text())
    assert report['kwargs']['global_pool'] == pool

    ref = timm.create_model(report['model_name'], **report['kwargs']).eval()
    # a .pth timm export is the bare state dict timm loads
    assert 'state_dict' not in converted
    ref.load_state_dict(converted, strict=True)
    x = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        torch.testing.assert_close(
            backbone(x)[0], ref(x), rtol=1e-4, atol=1e-5)


def test_round_trip_mmpretrain_timm_safetensors_mmpretrain(run_tool,
                                                           tmp_path):
    """Ours -> timm (.safetensors) -> our official importer -> ours."""
    model = _mm_classifier()
    _randomize(model, seed=2)
    original = model.state_dict()
    src = tmp_path / 'ours.pth'
    torch.save(dict(state_dict=original, meta=dict(epoch=1)), src)
    timm_file = tmp_path / 'timm.safetensors'
    proc = run_tool(TO_TIMM, src, timm_file, '--num-heads', HEADS)
    assert _dropped(proc.stdout) == []
    # timm's fused qkv layout is read back directly from the safetensors
    back_file = tmp_path / 'back.pth'
    run_tool(OFFICIAL, timm_file, back_file, '--num-heads', HEADS)
    out = load_checkpoint_file(str(back_file))
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


# -- stripping; safetensors read back ----------------------------------------


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


def test_strip_to_safetensors_loads_back(run_tool, tmp_path):
    backbone = MaPeTViT(arch=ARCH, img_size=IMG, patch_size=16,
                        layer_scale_init_value=0.1, mode='mim')
    _randomize(backbone, seed=8)
    sd = {f'backbone.{k}': v for k, v in backbone.state_dict().items()}
    sd['head.cls_head.weight'] = torch.ones(VOCAB, DIMS)
    out, _ = _convert(run_tool, STRIP, dict(state_dict=sd), tmp_path,
                      dst='backbone.safetensors')
    path = tmp_path / 'backbone.safetensors'
    assert path.read_bytes()[8:9] == b'{'  # a safetensors header, no pickle
    assert set(out['state_dict']) == {k for k in sd if 'head' not in k}
    for key, value in out['state_dict'].items():
        assert torch.equal(value, sd[key]), key
    assert out['meta']['converter'] == 'strip_pretrain_checkpoint'
    assert out['meta']['dropped'] == {'head.': 1}
    # the same sidecar check as for .pth files
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError):
        load_checkpoint_file(str(path))
