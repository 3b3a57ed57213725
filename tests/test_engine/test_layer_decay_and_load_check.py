"""PretrainedLoadCheckHook and BackboneLayerDecayOptimWrapperConstructor."""
import logging

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmpretrain.models import VisionTransformer
from torch import nn

import downstream_helpers as H  # tests/helpers
from mapet.engine.hooks import PretrainedLoadCheckHook, check_pretrained_load
from mapet.models.backbones import MaPeTViT
from mapet.utils.atomic import write_checksum
from mapet.utils.checkpoint import (CorruptCheckpointError,
                                    UnsafeCheckpointError)


def _create_marker(path: str) -> None:
    """What a malicious checkpoint would run when unpickled."""
    with open(path, 'w') as f:
        f.write('executed')


class _Payload:
    """Unpickling calls :func:`_create_marker`."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (_create_marker, (self.path, ))


def _vit(**kwargs) -> VisionTransformer:
    cfg = dict(arch=H.TINY_ARCH, img_size=32, patch_size=16,
               layer_scale_init_value=0.1)
    cfg.update(kwargs)
    return VisionTransformer(**cfg)


@pytest.fixture
def pretrain_ckpt(tmp_path):
    """A MaPeT-like pre-training checkpoint: backbone (+ mask_token), head."""
    backbone = MaPeTViT(arch=H.TINY_ARCH, img_size=32, patch_size=16,
                        layer_scale_init_value=0.1, mode='mim')
    with torch.no_grad():
        for p in backbone.parameters():
            p.normal_()
    state = {f'backbone.{k}': v for k, v in backbone.state_dict().items()}
    state['head.fc.weight'] = torch.zeros(3, H.TINY_DIMS)
    path = tmp_path / 'pretrain.pth'
    torch.save(dict(state_dict=state, meta=dict()), path)
    return str(path), backbone


def _init(model: nn.Module, ckpt: str) -> nn.Module:
    model.init_cfg = dict(type='Pretrained', checkpoint=ckpt,
                          prefix='backbone.')
    model.init_weights()
    return model


def test_finetune_allowances_pass_and_report(pretrain_ckpt):
    ckpt, source = pretrain_ckpt
    model = _init(_vit(out_type='avg_featmap', final_norm=False), ckpt)
    report = check_pretrained_load(
        model, ckpt, prefix='backbone.', allowed_missing=['ln2.*'],
        allowed_unexpected=['ln1.*', 'mask_token'])
    assert report.errors == []
    assert report.missing == ['ln2.bias', 'ln2.weight']
    assert report.unexpected == ['ln1.bias', 'ln1.weight', 'mask_token']
    assert 'layers.1.attn.qkv.weight' in report.loaded
    assert torch.equal(model.pos_embed, source.pos_embed)
    assert 'unexpected (ignored)' in report.format()


def test_disallowed_keys_and_overwrites_fail(pretrain_ckpt):
    ckpt, _ = pretrain_ckpt
    model = _init(_vit(out_type='avg_featmap', final_norm=False), ckpt)
    report = check_pretrained_load(model, ckpt, prefix='backbone.')
    assert any('missing' in e and 'ln2.weight' in e for e in report.errors)
    assert any('mask_token' in e for e in report.errors)
    with torch.no_grad():
        model.layers[0].ln1.weight.add_(1)  # as a later initialiser would
    report = check_pretrained_load(
        model, ckpt, prefix='backbone.', allowed_missing=['ln2.*'],
        allowed_unexpected=['ln1.*', 'mask_token'])
    assert report.overwritten == ['layers.0.ln1.weight']
    assert len(report.errors) == 1


def test_resized_pos_embed_needs_allowance(pretrain_ckpt):
    ckpt, _ = pretrain_ckpt
    model = _init(_vit(img_size=64, out_type='featmap', final_norm=False),
                  ckpt)
    kwargs = dict(prefix='backbone.', allowed_unexpected=['ln1.*',
                                                          'mask_token'])
    report = check_pretrained_load(model, ckpt, **kwargs)
    assert report.resized == ['pos_embed']
    assert any('shape mismatches' in e for e in report.errors)
    assert check_pretrained_load(
        model, ckpt, allowed_resized=['pos_embed'], **kwargs).errors == []


def test_checkpoint_read_safely_with_mmengine_key_handling(
        pretrain_ckpt, tmp_path):
    """The re-read goes through mapet's verified weights-only loader (not
    mmengine's, which falls back to unrestricted unpickling); prefix and
    ``module.`` handling are PretrainedInit's."""
    ckpt, source = pretrain_ckpt
    model = _init(_vit(out_type='avg_featmap', final_norm=False), ckpt)
    allow = dict(allowed_missing=['ln2.*'],
                 allowed_unexpected=['ln1.*', 'mask_token'])
    # `prefix` without its trailing dot selects the same keys.
    report = check_pretrained_load(model, ckpt, prefix='backbone', **allow)
    assert report.errors == [] and len(report.loaded) == len(
        model.state_dict()) - 2
    # Only the keys under the prefix are compared (head.fc.weight -> weight).
    report = check_pretrained_load(model, ckpt, prefix='head.fc.')
    assert report.unexpected == ['weight'] and report.loaded == []
    with pytest.raises(ValueError, match='decoder. is not in the '
                       'pretrained model .*pretrain.pth'):
        check_pretrained_load(model, ckpt, prefix='decoder')

    # A DDP checkpoint without prefix: `module.` is stripped.
    ddp = tmp_path / 'ddp.pth'
    torch.save({f'module.{k}': v for k, v in source.state_dict().items()},
               ddp)
    report = check_pretrained_load(model, str(ddp), **allow)
    assert report.errors == []
    assert 'layers.1.attn.qkv.weight' in report.loaded

    # A payload is refused by name and never executed.
    marker = tmp_path / 'marker'
    evil = tmp_path / 'evil.pth'
    torch.save(dict(state_dict=torch.load(ckpt)['state_dict'],
                    meta=_Payload(str(marker))), evil)
    with pytest.raises(UnsafeCheckpointError,
                       match=f"type '{__name__}._create_marker'"):
        check_pretrained_load(model, str(evil), prefix='backbone.', **allow)
    assert not marker.exists()

    # A file that no longer matches its sidecar is refused before loading.
    write_checksum(ckpt)
    assert check_pretrained_load(model, ckpt, prefix='backbone.',
                                 **allow).errors == []
    data = bytearray(open(ckpt, 'rb').read())
    data[len(data) // 2] ^= 0xFF
    open(ckpt, 'wb').write(bytes(data))
    with pytest.raises(CorruptCheckpointError,
                       match='does not match its checksum'):
        check_pretrained_load(model, ckpt, prefix='backbone.', **allow)


class _Runner:
    """The part of mmengine's Runner the hook reads."""

    def __init__(self, model, cfg=None, has_loaded=False):
        self.model = model
        self.cfg = cfg or {}
        # mmengine sets it in load_or_resume when a checkpoint was loaded.
        self._has_loaded = has_loaded
        self.logger = logging.getLogger('pretrained-check-test')


def test_hook_raises_before_training(pretrain_ckpt):
    ckpt, _ = pretrain_ckpt
    model = nn.Module()
    model.backbone = _init(_vit(out_type='avg_featmap', final_norm=False),
                           ckpt)
    PretrainedLoadCheckHook(
        allowed_missing=['ln2.*'],
        allowed_unexpected=['ln1.*', 'mask_token']).before_train(
            _Runner(model))
    with pytest.raises(RuntimeError, match='ln2.weight'):
        PretrainedLoadCheckHook(
            allowed_unexpected=['ln1.*', 'mask_token']).before_train(
                _Runner(model))
    # A loaded checkpoint (load_from / resume) replaced the initial weights:
    # nothing to check.
    PretrainedLoadCheckHook().before_train(
        _Runner(model, dict(load_from='x.pth'), has_loaded=True))
    # `--resume auto` on a first run loads nothing: the check still runs.
    with pytest.raises(RuntimeError, match='ln2.weight'):
        PretrainedLoadCheckHook(
            allowed_unexpected=['ln1.*', 'mask_token']).before_train(
                _Runner(model, dict(resume=True)))


def test_layer_decay_constructor_needs_backbone_depths():
    from mmpretrain.registry import OPTIM_WRAPPER_CONSTRUCTORS
    model = nn.Module()
    model.backbone = nn.Linear(2, 2)
    model.decode_head = nn.Linear(2, 2)
    cfg = dict(
        type='OptimWrapper',
        optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.05),
        constructor='BackboneLayerDecayOptimWrapperConstructor',
        paramwise_cfg=dict(layer_decay_rate=0.5))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        assert OPTIM_WRAPPER_CONSTRUCTORS.get(cfg['constructor'])
        with pytest.raises(NotImplementedError, match='get_layer_depth'):
            build_optim_wrapper(model, cfg)
        model.backbone = _vit()
        wrapper = build_optim_wrapper(model, cfg)
    lrs = {g.get('param_name'): g['lr'] for g in wrapper.param_groups}
    depths = H.TINY_ARCH['num_layers'] + 2
    assert lrs['backbone.cls_token'] == 0.5**(depths - 1)
    assert lrs['backbone.layers.0.attn.qkv.weight'] == 0.5**(depths - 2)
    assert lrs['backbone.layers.1.attn.qkv.weight'] == 0.5**(depths - 3)
    assert lrs['decode_head.weight'] == 1.0
