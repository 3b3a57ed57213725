"""Speed paths of MaPeTViT: activation checkpointing, torch.compile, bf16.

Tiny architectures (depth 2, width 64, 32 px, patch 8) on CPU. Nothing here
is timed; the benchmarks live in tools/analysis_tools/.
"""
import copy

import pytest
import torch

import mapet  # noqa: F401
from mapet.models.backbones import MaPeTViT
from mapet.models.backbones.mapet_vit import (TwoStreamEncoderLayer,
                                              transformer_block_wrap_policy)
from mapet.models.selfsup import MaPeT
from mmpretrain.models import VisionTransformer
from mmpretrain.structures import DataSample

ARCH = dict(embed_dims=64, num_layers=2, num_heads=2, feedforward_channels=128)
IMG, PATCH, N, C = 32, 8, 16, 5


def _backbone(mode='mapet', **kwargs):
    kw = dict(
        arch=ARCH,
        img_size=IMG,
        patch_size=PATCH,
        mode=mode,
        cutting_point=C if mode != 'mim' else None,
        drop_path_rate=0.1,
        layer_scale_init_value=0.1,
        out_type='raw')
    kw.update(kwargs)
    torch.manual_seed(0)
    model = MaPeTViT(**kw)
    model.init_weights()
    return model


def _inputs(batch=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, IMG, IMG, generator=g)
    perm = torch.stack([torch.randperm(N, generator=g) for _ in range(batch)])
    mask = torch.zeros(batch, N, dtype=torch.bool)
    mask[:, torch.randperm(N, generator=g)[:6]] = True
    return x, perm, mask


def _fwd(model, mode, x, perm, mask):
    if mode == 'mim':
        return model(x, mask=mask)[0]
    return model(x, permutation=perm)[0]


def _grads(model, mode, x, perm, mask, seed=123):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the same drop-path draws
    out = _fwd(model, mode, x, perm, mask)
    (out.square().mean() + out.sum() * 1e-3).backward()
    return out.detach(), {
        n: p.grad.clone()
        for n, p in model.named_parameters() if p.grad is not None
    }


# -- activation checkpointing ------------------------------------------------
@pytest.mark.parametrize('mode', ['mapet', 'pim', 'mim'])
def test_with_cp_gradients_equal(mode):
    """with_cp=True recomputes blocks in backward; outputs and gradients
    equal the stored-activation path (drop path active, RNG preserved)."""
    ref = _backbone(mode).train()
    ckpt = copy.deepcopy(ref)
    ckpt.with_cp = True
    x, perm, mask = _inputs()
    out_ref, g_ref = _grads(ref, mode, x, perm, mask)
    out_cp, g_cp = _grads(ckpt, mode, x, perm, mask)
    torch.testing.assert_close(out_cp, out_ref, rtol=0, atol=1e-6)
    assert g_ref.keys() == g_cp.keys() and len(g_ref) > 10
    for name in g_ref:
        torch.testing.assert_close(
            g_cp[name], g_ref[name], rtol=1e-5, atol=1e-7, msg=name)


def test_with_cp_actually_checkpoints():
    """Fewer tensors are saved for backward with with_cp=True."""
    x, perm, _ = _inputs()
    saved = {}
    for with_cp in (False, True):
        model = _backbone(with_cp=with_cp).train()
        count = [0]

        def pack(t):
            count[0] += 1
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(x, permutation=perm)
        saved[with_cp] = count[0]
    assert saved[True] < saved[False] / 2, saved


def test_with_cp_keeps_state_dict_and_vit_compat():
    plain = _backbone()
    ckpt = _backbone(with_cp=True)
    assert plain.state_dict().keys() == ckpt.state_dict().keys()
    for layer in ckpt.layers:
        assert isinstance(layer, TwoStreamEncoderLayer)
    # The blocks are still mmpretrain blocks: ViT loads the weights.
    vit = VisionTransformer(
        arch=ARCH, img_size=IMG, patch_size=PATCH, out_type='raw',
        layer_scale_init_value=0.1)
    state = {k: v for k, v in ckpt.state_dict().items() if k != 'mask_token'}
    vit.load_state_dict(state, strict=True)
    x = _inputs()[0]
    ckpt.eval()
    vit.eval()
    torch.testing.assert_close(ckpt(x)[0], vit(x)[0])


def test_fsdp_wrap_policy_selects_blocks():
    model = _backbone()
    picked = [
        name for name, m in model.named_modules()
        if transformer_block_wrap_policy(m, recurse=False, nonwrapped_numel=0)
    ]
    assert picked == ['layers.0', 'layers.1']


# -- torch.compile -------------------------------------------------------------
def _tiny_mapet(mode='mapet', with_cp=False):
    torch.manual_seed(0)
    model = MaPeT(
        backbone=dict(
            type='MaPeTViT',
            arch=ARCH,
            img_size=IMG,
            patch_size=PATCH,
            mode=mode,
            cutting_point=C,
            drop_path_rate=0.1,
            layer_scale_init_value=0.1,
            out_type='raw',
            with_cp=with_cp),
        head=dict(type='VisualTokenHead', embed_dims=64, num_embed=32))
    model.init_weights()
    return model


def _samples(batch=2, seed=2):
    g = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(batch):
        s = DataSample()
        s.set_field(torch.randperm(N, generator=g), 'permutation')
        s.set_field(torch.randint(32, (N, ), generator=g), 'visual_tokens')
        samples.append(s)
    return samples


@pytest.mark.parametrize('mode,with_cp', [('mapet', False), ('pim', False),
                                          ('mapet', True)])
def test_no_graph_break_in_pretraining_loss(mode, with_cp):
    """The whole pre-training loss, including the per-step validation of the
    permutation and cutting point and the layer loop, is one graph."""
    import torch._dynamo as dynamo
    model = _tiny_mapet(mode, with_cp).train()
    x = _inputs()[0]
    dynamo.reset()
    explain = dynamo.explain(model.loss)(x, _samples())
    assert explain.graph_break_count == 0, [
        str(b.reason) for b in explain.break_reasons
    ]
    assert explain.graph_count == 1


def test_no_graph_break_backbone_mim():
    import torch._dynamo as dynamo
    model = _backbone('mim').train()
    x, _, mask = _inputs()
    dynamo.reset()
    explain = dynamo.explain(model)(x, mask=mask)
    assert explain.graph_break_count == 0, [
        str(b.reason) for b in explain.break_reasons
    ]


def test_compiled_train_step_matches_eager():
    """fullgraph compile (AOT autograd) of the loss: loss and gradients equal
    eager for the same drop-path draws."""
    eager = _tiny_mapet().train()
    compiled_model = copy.deepcopy(eager)
    compiled_loss = torch.compile(
        compiled_model.loss, backend='aot_eager', fullgraph=True)
    x, samples = _inputs()[0], _samples()
    results = []
    for fn, model in ((eager.loss, eager), (compiled_loss, compiled_model)):
        torch.manual_seed(7)
        loss = fn(x, samples)['loss']
        loss.backward()
        results.append((loss.detach(), {
            n: p.grad.clone()
            for n, p in model.named_parameters() if p.grad is not None
        }))
    (l_e, g_e), (l_c, g_c) = results
    torch.testing.assert_close(l_c, l_e, rtol=1e-5, atol=1e-6)
    assert g_e.keys() == g_c.keys()
    for name in g_e:
        torch.testing.assert_close(
            g_c[name], g_e[name], rtol=1e-4, atol=1e-6, msg=name)


def test_inductor_forward_matches_eager():
    """The real backend (inductor, C++ on CPU): outputs equal eager."""
    model = _backbone().eval()
    x, perm, _ = _inputs()
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        ref = model(x, permutation=perm)[0]
        out = compiled(x, permutation=perm)[0]
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
