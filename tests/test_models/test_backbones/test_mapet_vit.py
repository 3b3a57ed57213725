"""MaPeTViT: two-stream semantics, masks, fine-tune equivalence, errors."""
import logging
import re
import subprocess
import sys

import pytest
import torch
from mmengine.logging import MMLogger
from mmpretrain.models import VisionTransformer

from mapet.models.backbones import MaPeTViT
from mapet.models.backbones.mapet_vit import build_two_stream_mask

ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)
IMG, PATCH = 32, 8
GRID = IMG // PATCH
N = GRID * GRID
CUT = 5


def make_vit(mode='mapet', cutting_point=CUT, dtype=torch.float32, **kw):
    torch.manual_seed(0)
    kw.setdefault('layer_scale_init_value', 0.1)
    model = MaPeTViT(
        arch=ARCH,
        img_size=IMG,
        patch_size=PATCH,
        mode=mode,
        cutting_point=cutting_point,
        **kw)
    # Random non-zero tokens/embeddings (default init leaves them at 0).
    with torch.no_grad():
        for p in (model.cls_token, model.pos_embed, model.mask_token):
            if p is not None:
                p.normal_(std=0.5)
    model.eval()
    return model.to(dtype)


def randperms(batch, n=N, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(n, generator=g) for _ in range(batch)])


def patch_grad_norms(grad):
    """(B, 3, H, W) -> (B, N) gradient norm per patch, raster order."""
    b = grad.shape[0]
    g = grad.reshape(b, 3, GRID, PATCH, GRID, PATCH).permute(0, 2, 4, 1, 3, 5)
    return g.reshape(b, N, -1).norm(dim=-1)


# ---------------------------------------------------------------------------
# shapes
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('mode', ['mapet', 'pim'])
def test_two_stream_output_shape(mode):
    model = make_vit(mode)
    out = model(torch.randn(3, 3, IMG, IMG), permutation=randperms(3))
    assert isinstance(out, tuple)
    assert out[-1].shape == (3, N - CUT, ARCH['embed_dims'])


def test_mim_output_shape_and_mask_effect():
    model = make_vit('mim', cutting_point=None)
    x = torch.randn(2, 3, IMG, IMG)
    mask = torch.zeros(2, N, dtype=torch.bool)
    mask[:, :6] = True
    out = model(x, mask=mask)[-1]
    assert out.shape == (2, N, ARCH['embed_dims'])
    # Masked patches carry no pixel information: changing their pixels
    # changes nothing.
    x2 = x.clone()
    x2[:, :, :PATCH, :PATCH] += 5.  # patch 0, masked
    torch.testing.assert_close(model(x2, mask=mask)[-1], out)
    # A 2-D (B, h, w) mask is accepted too.
    torch.testing.assert_close(
        model(x, mask=mask.reshape(2, GRID, GRID))[-1], out)


# ---------------------------------------------------------------------------
# the no-leak invariant (autograd on pixels)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('mode', ['mapet', 'pim'])
def test_no_leak_invariant(mode):
    """The prediction of target z[t] depends on pixels of z[0..t-1] only."""
    model = make_vit(mode, dtype=torch.float64)
    batch = 2
    perms = randperms(batch, seed=1)
    x = torch.randn(batch, 3, IMG, IMG, dtype=torch.float64,
                    requires_grad=True)
    out = model(x, permutation=perms)[-1]
    proj = torch.randn(out.shape[-1], dtype=torch.float64)
    for k in range(N - CUT):
        t = CUT + k
        (grad, ) = torch.autograd.grad(
            out[0, k] @ proj, x, retain_graph=True)
        norms = patch_grad_norms(grad)
        z = perms[0]
        assert torch.all(norms[1] == 0), 'leak from another image'
        assert torch.all(norms[0, z[t:]] == 0), \
            f'target rank {t} sees the pixels of z[{t}:]'
        assert torch.all(norms[0, z[:t]] > 0), \
            f'target rank {t} misses context pixels'


def test_no_leak_invariant_holds_in_train_mode_with_drop_path():
    model = make_vit('mapet', drop_path_rate=0.5)
    model.train()
    perms = randperms(2, seed=2)
    x = torch.randn(2, 3, IMG, IMG, requires_grad=True)
    out = model(x, permutation=perms)[-1]
    k = 3
    (grad, ) = torch.autograd.grad(out[0, k].sum(), x)
    norms = patch_grad_norms(grad)
    assert torch.all(norms[1] == 0)
    assert torch.all(norms[0, perms[0, CUT + k:]] == 0)


# ---------------------------------------------------------------------------
# cached masks == the SPEC table, built per token in original patch order
# ---------------------------------------------------------------------------
def reference_mask(z, c, mode):
    """SPEC visibility table, one token at a time, original patch order.

    Content tokens: CLS, x_0..x_{N-1} (raster order), then (mapet) m_p for
    every target p in increasing patch index. Query rows: g_p for every
    target p in increasing patch index. Returns (rows, cols, bool table).
    """
    n = len(z)
    rank = {int(p): r for r, p in enumerate(z)}
    context = {int(p) for p in z[:c]}
    targets = sorted(int(p) for p in z[c:])
    cols = [('cls', None)] + [('x', j) for j in range(n)]
    if mode == 'mapet':
        cols += [('m', p) for p in targets]
    rows = list(cols) + [('g', p) for p in targets]

    def r(tok):
        return -1 if tok[0] == 'cls' else rank[tok[1]]

    def in_context(tok):
        return tok[0] == 'cls' or tok[1] in context

    def visible(row, col):
        kind = row[0]
        if kind in ('cls', 'x') and in_context(row):  # context content row
            return in_context(col) if col[0] != 'm' else True
        if kind == 'x':  # target content row
            return r(col) <= r(row) if col[0] != 'm' else r(col) > r(row)
        if kind == 'm':  # mask token in the content stream
            return in_context(col) if col[0] != 'm' else True
        # query row g_p
        return r(col) < r(row) if col[0] != 'm' else r(col) >= r(row)

    table = torch.tensor([[visible(a, b) for b in cols] for a in rows])
    return rows, cols, table


@pytest.mark.parametrize('mode', ['mapet', 'pim'])
@pytest.mark.parametrize('n,c', [(16, 5), (16, 1), (16, 15), (9, 4)])
def test_cached_mask_matches_spec_table(mode, n, c):
    grid = int(n**0.5)
    model = MaPeTViT(
        arch=ARCH,
        img_size=grid * PATCH,
        patch_size=PATCH,
        mode=mode,
        cutting_point=c)
    cached = model.get_attention_mask(n, torch.device('cpu'))
    assert cached is model.get_attention_mask(n, torch.device('cpu'))
    g = torch.Generator().manual_seed(n * 100 + c)
    for _ in range(3):
        z = torch.randperm(n, generator=g)
        rows, cols, table = reference_mask(z.tolist(), c, mode)
        # The gathered (rank-order) layout of MaPeTViT, as tokens.
        gathered_cols = [('cls', None)] + [('x', int(p)) for p in z]
        if mode == 'mapet':
            gathered_cols += [('m', int(p)) for p in z[c:]]
        gathered_rows = gathered_cols + [('g', int(p)) for p in z[c:]]
        row_idx = [rows.index(t) for t in gathered_rows]
        col_idx = [cols.index(t) for t in gathered_cols]
        expected = table[row_idx][:, col_idx]
        assert cached.dtype == torch.bool
        assert torch.equal(cached, expected)


def test_mask_cache_key_and_builder_errors():
    model = make_vit('mapet')
    a = model.get_attention_mask(N, torch.device('cpu'))
    model.cutting_point = CUT + 1
    b = model.get_attention_mask(N, torch.device('cpu'))
    assert a.shape != b.shape  # cached per cutting point, not stale
    assert len(model._mask_cache) == 2
    with pytest.raises(ValueError, match='mapet.*pim'):
        build_two_stream_mask(N, CUT, 'mim')


# ---------------------------------------------------------------------------
# the efficient formulation == a naive per-sample reference of the SPEC table
# ---------------------------------------------------------------------------
def _naive_attention(layer, q_in, kv_in, visible):
    """Plain multi-head attention with full qkv projections, bool mask."""
    attn = layer.attn
    heads, head_dims = attn.num_heads, attn.head_dims

    def split(t):
        return t.reshape(t.shape[0], 3, heads, head_dims).permute(1, 2, 0, 3)

    q = split(attn.qkv(q_in))[0]
    _, k, v = split(attn.qkv(kv_in))
    scores = (q @ k.transpose(-2, -1)) * head_dims**-0.5
    scores = scores.masked_fill(~visible, float('-inf'))
    out = (scores.softmax(-1) @ v).transpose(0, 1).reshape(q_in.shape[0], -1)
    return attn.gamma1(attn.proj(out))


def naive_spec_forward(model, x, perms):
    """Official-style two-stream forward, one sample at a time.

    Tokens stay in original patch order and every sample gets its own
    visibility table (``reference_mask``); every block runs two attention
    calls (content stream, query stream). Returns the query stream after
    the final norm with the targets in *rank* order, like ``MaPeTViT``.
    """
    c = model.cutting_point
    patches, _ = model.patch_embed(x)
    pos = model.pos_embed[0]
    e = model.num_extra_tokens
    outs = []
    for b, z in enumerate(perms.tolist()):
        rows, cols, table = reference_mask(z, c, model.mode)
        keep_r = [i for i, t in enumerate(rows) if t[0] != 'cls' or e]
        keep_c = [i for i, t in enumerate(cols) if t[0] != 'cls' or e]
        rows = [rows[i] for i in keep_r]
        cols = [cols[i] for i in keep_c]
        table = table[keep_r][:, keep_c]

        def token(t):
            if t[0] == 'cls':
                return model.cls_token[0, 0] + pos[0]
            if t[0] == 'x':
                return patches[b, t[1]] + pos[e + t[1]]
            return model.mask_token[0, 0] + pos[e + t[1]]  # m_p and g_p

        h = torch.stack([token(t) for t in cols])
        g = torch.stack([token(t) for t in rows[len(cols):]])
        h, g = model.pre_norm(h), model.pre_norm(g)
        content_vis, query_vis = table[:len(cols)], table[len(cols):]
        for layer in model.layers:
            hn, gn = layer.ln1(h), layer.ln1(g)
            h, g = (h + _naive_attention(layer, hn, hn, content_vis),
                    g + _naive_attention(layer, gn, hn, query_vis))
            h = layer.ffn(layer.ln2(h), identity=h)
            g = layer.ffn(layer.ln2(g), identity=g)
        g = model.ln1(g)
        # Query rows are the targets in increasing patch index; MaPeTViT
        # returns them in rank order (row k predicts z[c + k]).
        targets = sorted(z[c:])
        outs.append(g[[targets.index(p) for p in z[c:]]])
    return torch.stack(outs)


@pytest.mark.parametrize('mode', ['mapet', 'pim'])
@pytest.mark.parametrize('with_cls_token', [True, False])
def test_matches_naive_per_sample_reference(mode, with_cls_token):
    model = make_vit(
        mode,
        dtype=torch.float64,
        with_cls_token=with_cls_token,
        out_type='cls_token' if with_cls_token else 'raw')
    perms = randperms(3, seed=3)
    x = torch.randn(3, 3, IMG, IMG, dtype=torch.float64)
    with torch.no_grad():
        ref = naive_spec_forward(model, x, perms)
        out = model(x, permutation=perms)[-1]
    assert ref.shape == out.shape == (3, N - CUT, ARCH['embed_dims'])
    torch.testing.assert_close(out, ref)
    # The reference does see the layout: another sample's permutation
    # gives other query features.
    assert not torch.allclose(model(x, permutation=perms.roll(1, 0))[-1], ref)


def test_analytic_flops_match_flop_counter(repo_root, tools_env):
    """tools/analysis_tools/pretrain_step.py measures one MaPeT step with
    FlopCounterMode: the forward FLOPs equal the analytic count of the
    design with the last block computing the query rows only."""
    proc = subprocess.run([
        sys.executable, 'tools/analysis_tools/pretrain_step.py', '--archs',
        't', '--img-size', '64', '--patch-size', '16', '--cutting-point',
        '5', '--batch-size', '1', '--vocab', '16', '--repeats', '5',
        '--warmup', '0', '--device', 'cpu'
    ],
                          cwd=repo_root,
                          env=tools_env,
                          capture_output=True,
                          text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    def ratio(label):
        found = re.search(re.escape(label) + r'\s+([0-9.]+)', proc.stdout)
        assert found, proc.stdout
        return float(found.group(1))

    assert ratio('MaPeT fwd FLOPs / analytic as implemented') == 1.0
    # The last block skips the content rows: fewer FLOPs than the design
    # (1 - 1/12 of a block's content rows, for ViT-T, N=16, c=5).
    assert ratio('MaPeT fwd FLOPs / analytic design') < 0.96
    assert 'N=16, c=5' in proc.stdout


# ---------------------------------------------------------------------------
# fine-tuning path and state_dict loading
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('out_type',
                         ['cls_token', 'featmap', 'avg_featmap', 'raw'])
def test_finetune_path_equals_vision_transformer(out_type):
    model = make_vit(out_type=out_type, out_indices=[0, 1])
    vit = VisionTransformer(
        arch=ARCH,
        img_size=IMG,
        patch_size=PATCH,
        layer_scale_init_value=0.1,
        out_type=out_type,
        out_indices=[0, 1])
    state = {k: v for k, v in model.state_dict().items() if k != 'mask_token'}
    vit.load_state_dict(state, strict=True)  # every key present, none extra
    vit.eval()
    x = torch.randn(2, 3, IMG, IMG)
    outs, refs = model(x), vit(x)
    assert len(outs) == len(refs) == 2
    for a, b in zip(outs, refs):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_state_dict_into_stock_vit_reports_only_mask_token():
    model = make_vit()
    vit = VisionTransformer(
        arch=ARCH, img_size=IMG, patch_size=PATCH, layer_scale_init_value=0.1)
    result = vit.load_state_dict(model.state_dict(), strict=False)
    assert result.missing_keys == []
    assert result.unexpected_keys == ['mask_token']
    with pytest.raises(RuntimeError, match='mask_token'):
        vit.load_state_dict(model.state_dict(), strict=True)


def test_pretrained_init_cfg_from_mapet_checkpoint(tmp_path):
    """What a fine-tuning config does: Pretrained init, prefix='backbone.'."""
    from mapet.models.selfsup import MaPeT
    algo = MaPeT(
        backbone=make_vit(),
        head=dict(type='VisualTokenHead', embed_dims=ARCH['embed_dims'],
                  num_embed=16))
    ckpt = tmp_path / 'mapet.pth'
    torch.save(dict(state_dict=algo.state_dict(), meta=dict()), ckpt)

    vit = VisionTransformer(
        arch=ARCH,
        img_size=IMG,
        patch_size=PATCH,
        layer_scale_init_value=0.1,
        init_cfg=dict(
            type='Pretrained', checkpoint=str(ckpt), prefix='backbone.'))
    logger = MMLogger.get_current_instance()
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        vit.init_weights()
    finally:
        logger.removeHandler(handler)
    vit.eval()
    x = torch.randn(2, 3, IMG, IMG)
    torch.testing.assert_close(vit(x), algo.backbone(x), rtol=0, atol=0)
    text = '\n'.join(r.getMessage() for r in records)
    assert 'unexpected key in source state_dict: mask_token' in text
    assert 'missing keys' not in text


# ---------------------------------------------------------------------------
# layer depth
# ---------------------------------------------------------------------------
def test_get_layer_depth():
    model = make_vit()
    total = ARCH['num_layers'] + 2
    assert model.get_layer_depth('backbone.mask_token', 'backbone.') == (
        0, total)
    assert model.get_layer_depth('backbone.pos_embed', 'backbone.') == (0,
                                                                        total)
    assert model.get_layer_depth('backbone.layers.1.attn.qkv.weight',
                                 'backbone.') == (2, total)
    assert model.get_layer_depth('head.cls_head.weight',
                                 'backbone.') == (total - 1, total)


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------
def test_bad_permutations():
    model = make_vit()
    x = torch.randn(2, 3, IMG, IMG)
    # Shape and dtype are checked (no host sync needed); the values are not
    # (RandomPatchPermutation makes a permutation of 0..N-1 by
    # construction, see test_permutation.py).
    with pytest.raises(ValueError, match=r'shape \(2, 15\).*\(2, 16\)'):
        model(x, permutation=randperms(2)[:, :-1])
    with pytest.raises(ValueError, match=r'shape \(1, 16\).*\(2, 16\)'):
        model(x, permutation=randperms(1))
    with pytest.raises(ValueError, match='integer'):
        model(x, permutation=randperms(2).float())
    with pytest.raises(ValueError, match='integer'):
        model(x, permutation=randperms(2) > 3)
    with pytest.raises(TypeError, match='LongTensor'):
        model(x, permutation=randperms(2).tolist())
    with pytest.raises(ValueError, match='takes `permutation`, not `mask`'):
        model(x, mask=torch.zeros(2, N, dtype=torch.bool))


@pytest.mark.parametrize('cut', [0, N, -3, 2.5])
def test_cutting_point_outside_range(cut):
    with pytest.raises(ValueError, match=r'outside \[1, N-1\] = \[1, 15\]'):
        make_vit(cutting_point=cut)


def test_cutting_point_checked_against_input_grid():
    model = make_vit(cutting_point=15)
    small = torch.randn(1, 3, IMG // 2, IMG // 2)  # 2x2 grid, N = 4
    with pytest.raises(ValueError, match=r'\[1, 3\].*2x2'):
        model(small, permutation=randperms(1, n=4))


def test_missing_cutting_point_and_unknown_mode():
    model = make_vit(cutting_point=None)
    with pytest.raises(ValueError, match='needs `cutting_point`'):
        model(torch.randn(1, 3, IMG, IMG), permutation=randperms(1))
    with pytest.raises(ValueError, match="Unknown mode 'xlnet'"):
        make_vit(mode='xlnet')
    mim = make_vit('mim', cutting_point=None)
    with pytest.raises(ValueError, match='takes `mask`, not `permutation`'):
        mim(torch.randn(1, 3, IMG, IMG), permutation=randperms(1))
    with pytest.raises(ValueError, match=r'\(1, 16\)'):
        mim(torch.randn(1, 3, IMG, IMG), mask=torch.zeros(1, 5).bool())


def test_drop_path_one_draw_per_sample_for_both_streams():
    """Each residual branch drops both streams with one per-sample draw."""
    model = make_vit('mapet', drop_path_rate=0.5)
    model.train()
    shapes = []
    for layer in model.layers:
        for module in (layer.attn.out_drop, layer.ffn.dropout_layer):
            module.register_forward_hook(
                lambda m, args, out: shapes.append(tuple(args[0].shape)))
    model(torch.randn(2, 3, IMG, IMG), permutation=randperms(2))
    content = 1 + N + (N - CUT)
    rows = content + (N - CUT)
    # Two residual branches per block; the last block computes query rows.
    assert shapes[:2] == [(2, rows, ARCH['embed_dims'])] * 2
    assert shapes[2:] == [(2, N - CUT, ARCH['embed_dims'])] * 2
    # A dropped sample loses the branch in both streams at once.
    drop = model.layers[0].attn.out_drop
    torch.manual_seed(0)
    out = drop(torch.ones(64, rows, 1))
    per_sample = out.flatten(1)
    assert torch.all(per_sample == per_sample[:, :1])


def test_mim_mask_must_be_bool_or_01_integers():
    model = make_vit('mim', cutting_point=None)
    x = torch.randn(2, 3, IMG, IMG)
    mask = torch.zeros(2, N, dtype=torch.bool)
    mask[:, :6] = True
    ref = model(x, mask=mask)[-1]
    # an exact 0/1 integer mask means the same as the bool one
    torch.testing.assert_close(model(x, mask=mask.long())[-1], ref)
    torch.testing.assert_close(model(x, mask=mask.to(torch.uint8))[-1], ref)
    soft = mask.float() * 0.3  # bool() would silently make 0.3 True
    with pytest.raises(ValueError, match='must be a bool tensor.*float32'):
        model(x, mask=soft)
    with pytest.raises(ValueError, match='must be a bool tensor.*float32'):
        model(x, mask=mask.float())  # floats are rejected outright
    with pytest.raises(ValueError, match='values other than 0 and 1'):
        model(x, mask=mask.long() * 2)


@pytest.mark.parametrize('mode', ['mapet', 'pim', 'mim'])
def test_pretraining_needs_final_norm(mode):
    cut = None if mode == 'mim' else CUT
    model = make_vit(mode, cutting_point=cut, final_norm=False)
    x = torch.randn(2, 3, IMG, IMG)
    kw = dict(mask=torch.zeros(2, N, dtype=torch.bool)) if mode == 'mim' \
        else dict(permutation=randperms(2))
    with pytest.raises(ValueError, match=r'after the final LayerNorm; set '
                       r'final_norm=True'):
        model(x, **kw)
    # the fine-tuning / dense-prediction path (segmentation configs) works
    model.out_type = 'featmap'
    assert model(x)[-1].shape == (2, ARCH['embed_dims'], GRID, GRID)


def test_train_and_eval_return_the_module():
    model = make_vit()
    assert model.train() is model and model.training
    assert model.eval() is model and not model.training
    assert model.train(False) is model and not model.training
