"""VisualTokenHead and the MaPeT algorithm (mapet / pim / mim)."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.dataset import Compose
from mmpretrain.registry import MODELS, TRANSFORMS
from mmpretrain.structures import DataSample
from torch import nn
from torch.overrides import TorchFunctionMode

import mapet  # noqa: F401
from mapet.datasets.image_decode import DECODER_ID
from mapet.datasets.token_store import merge_store, prepare_parts, write_chunk
from mapet.engine.runners import TargetMismatchError
from mapet.engine.runners.target_checks import check_visual_token_targets
from mapet.models.heads import VisualTokenHead
from mapet.models.selfsup import MaPeT, TokenCAE

ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)
IMG, PATCH, CUT, VOCAB = 32, 8, 5, 16
N = (IMG // PATCH)**2


class NoHostReadback(TorchFunctionMode):
    """Fails on any read of a tensor value into Python (``item``, ``bool``,
    ``tolist``, ...): on a GPU each of them is a host sync. On the CPU this
    is how a test sees that a step has none."""

    READS = frozenset({
        'item', 'tolist', 'numpy', '__bool__', '__int__', '__float__',
        '__index__', 'is_nonzero', 'equal', 'allclose', 'nonzero', 'unique'
    })

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, '__name__', '')
        if name in self.READS:
            raise AssertionError(f'tensor value read back by {name}()')
        return func(*args, **(kwargs or {}))


def test_no_host_readback_guard_catches_a_check():
    """The guard used below does see a value check (it can fail)."""
    perm = torch.randperm(N)
    with pytest.raises(AssertionError, match='__bool__'):
        with NoHostReadback():
            if not (perm.sort().values == torch.arange(N)).all():
                pass
    with pytest.raises(AssertionError, match='item'):
        with NoHostReadback():
            perm.max().item()


class TinyTokenizer(nn.Module):
    """Random patch tokenizer: argmax of a random patch projection."""

    def __init__(self, vocab_size=VOCAB, patch=PATCH):
        super().__init__()
        self.vocab_size = vocab_size
        # Left trainable on purpose: MaPeT itself must freeze it.
        self.proj = nn.Conv2d(3, vocab_size, patch, patch)

    def forward(self, images):
        return self.proj(images).flatten(2).argmax(1)


def make_algo(mode='mapet', target_generator=None, vocab=VOCAB):
    torch.manual_seed(0)
    return MaPeT(
        backbone=dict(
            type='MaPeTViT',
            arch=ARCH,
            img_size=IMG,
            patch_size=PATCH,
            mode=mode,
            cutting_point=None if mode == 'mim' else CUT,
            layer_scale_init_value=0.1),
        head=dict(type='VisualTokenHead', embed_dims=32, num_embed=vocab),
        target_generator=target_generator)


def make_samples(batch, mode='mapet', tokens=True, seed=0, numpy=False):
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(batch):
        s = DataSample()
        perm = rng.permutation(N).astype(np.int64)
        s.set_field(perm if numpy else torch.from_numpy(perm), 'permutation')
        if tokens:
            tok = rng.integers(0, VOCAB, N).astype(np.int64)
            s.set_field(tok if numpy else torch.from_numpy(tok),
                        'visual_tokens')
        if mode == 'mim':
            mask = np.zeros(N, bool)
            mask[perm[:6]] = True
            s.set_mask(mask)
        samples.append(s)
    return samples


# ---------------------------------------------------------------------------
# head
# ---------------------------------------------------------------------------
def test_head_gathers_targets_in_permutation_order():
    head = VisualTokenHead(embed_dims=4, num_embed=3)
    with torch.no_grad():
        head.cls_head.weight.copy_(torch.eye(3, 4) * 50)
        head.cls_head.bias.zero_()
    target = torch.tensor([[0, 1, 2, 0]])
    index = torch.tensor([[2, 0]])  # rows predict patches 2 and 0
    feats = torch.zeros(1, 2, 4)
    feats[0, 0, 2] = feats[0, 1, 0] = 1.  # correct for 2 -> 2, 0 -> 0
    out = head.loss(feats, target, index)
    assert set(out) == {'loss', 'accuracy'}
    assert out['accuracy'].item() == 100.
    assert out['loss'].item() < 1e-6
    assert not out['accuracy'].requires_grad
    feats[0, 1] = torch.tensor([0., 1., 0., 0.])  # wrong for patch 0
    assert head.loss(feats, target, index)['accuracy'].item() == 50.


def test_head_reads_no_target_value_back():
    """No per-step vocabulary check in the head: the vocabulary is checked
    once at build time (see test_vocab_checked_once_at_build); a step reads
    no tensor value back into Python (no host sync on a GPU)."""
    head = VisualTokenHead(embed_dims=4, num_embed=8)
    feats = torch.randn(2, 3, 4, requires_grad=True)
    with NoHostReadback():
        out = head.loss(feats, torch.tensor([[1, 7, 0, 2], [3, 3, 5, 6]]),
                        torch.tensor([[0, 3, 1], [2, 1, 0]]))
        out['loss'].backward()
    assert feats.grad is not None
    with pytest.raises(ValueError, match=r'Target shape \(1, 3\) does not '
                       r'match the predicting features \(1, 2\)'):
        head.loss(torch.zeros(1, 2, 4), torch.tensor([[1, 2, 3]]))


# ---------------------------------------------------------------------------
# algorithm
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('mode', ['mapet', 'pim', 'mim'])
def test_loss_from_pre_extracted_tokens(mode):
    algo = make_algo(mode)
    algo.train()
    images = torch.randn(2, 3, IMG, IMG)
    losses = algo(images, make_samples(2, mode), mode='loss')
    assert set(losses) == {'loss', 'accuracy'}
    loss, log_vars = algo.parse_losses(losses)
    # Only ``loss`` is optimised; accuracy is logged.
    torch.testing.assert_close(loss, losses['loss'])
    assert 'accuracy' in log_vars
    assert abs(loss.item() - np.log(VOCAB)) < 1.5
    loss.backward()
    assert algo.backbone.mask_token.grad is not None


def test_numpy_fields_from_pack_inputs_are_accepted():
    algo = make_algo()
    images = torch.randn(2, 3, IMG, IMG)
    a = algo.loss(images, make_samples(2, numpy=True))['loss']
    b = algo.loss(images, make_samples(2, numpy=False))['loss']
    torch.testing.assert_close(a, b)


def test_loss_equals_manual_gather():
    algo = make_algo()
    algo.eval()
    images = torch.randn(2, 3, IMG, IMG)
    samples = make_samples(2)
    perm = torch.stack([s.permutation for s in samples])
    tokens = torch.stack([s.visual_tokens for s in samples])
    feats = algo.backbone(images, permutation=perm)[-1]
    logits = algo.head.cls_head(feats)
    expected = nn.functional.cross_entropy(
        logits.flatten(0, 1), torch.gather(tokens, 1, perm[:, CUT:]).flatten())
    torch.testing.assert_close(algo.loss(images, samples)['loss'], expected)


def test_target_generator_frozen_and_two_views():
    tok = TinyTokenizer()
    algo = make_algo(target_generator=tok)
    algo.train()
    assert not tok.training
    assert not any(p.requires_grad for p in tok.parameters())
    images = torch.randn(2, 3, IMG, IMG)
    samples = make_samples(2, tokens=False)
    one = algo.loss(images, samples)['loss']
    two = algo.loss([images, images], samples)['loss']
    torch.testing.assert_close(one, two)
    other_view = algo.loss([images, torch.randn_like(images)], samples)
    assert not torch.allclose(other_view['loss'], one)


def test_token_grid_and_missing_field_errors():
    algo = make_algo()
    samples = make_samples(2)
    for s in samples:
        s.set_field(s.visual_tokens[:9], 'visual_tokens')
    with pytest.raises(ValueError, match=r'9 tokens per image.*4x4 patch'):
        algo.loss(torch.randn(2, 3, IMG, IMG), samples)
    with pytest.raises(KeyError, match='visual_tokens'):
        algo.loss(torch.randn(2, 3, IMG, IMG), make_samples(2, tokens=False))
    # A missing per-sample field names the transform that produces it.
    samples = make_samples(2)
    del samples[1].permutation
    with pytest.raises(KeyError, match=r'data_samples\[1\] has no '
                       r'`permutation`; add RandomPatchPermutation'):
        algo.loss(torch.randn(2, 3, IMG, IMG), samples)
    with pytest.raises(KeyError, match=r'no `mask`; add a mask generator'):
        make_algo('mim').loss(torch.randn(2, 3, IMG, IMG), make_samples(2))


def test_extract_feat_and_layer_depth():
    algo = make_algo()
    algo.eval()
    images = torch.randn(2, 3, IMG, IMG)
    torch.testing.assert_close(
        algo(images, mode='tensor')[0], algo.backbone(images)[0])
    assert algo.get_layer_depth('backbone.mask_token') == (0, 4)
    assert algo.get_layer_depth('backbone.layers.0.ln1.weight') == (1, 4)
    assert algo.get_layer_depth('head.cls_head.weight') == (3, 4)


@pytest.mark.parametrize('mode', ['mapet', 'pim'])
def test_two_stream_step_has_no_host_readback(mode):
    """Permutation values are not re-validated per step: loss and backward
    of a MaPeT / PIM step read nothing back into Python (no host sync)."""
    algo = make_algo(mode)
    algo.train()
    images = torch.randn(2, 3, IMG, IMG)
    samples = make_samples(2, mode, numpy=True)
    with NoHostReadback():
        losses = algo.loss(images, samples)
        losses['loss'].backward()
    assert torch.isfinite(losses['loss'])
    assert algo.backbone.mask_token.grad is not None


# ---------------------------------------------------------------------------
# vocabulary: checked once, when the model and the pipeline are built
# ---------------------------------------------------------------------------
@pytest.fixture(scope='module')
def token_store_16(tmp_path_factory):
    """A 2x2-token store of two images, vocabulary 16."""
    root = tmp_path_factory.mktemp('store') / 'tokens'
    prepare_parts(root, dict(job='test-mapet'))
    write_chunk(root, 0, np.arange(8).reshape(2, 4), 16)
    merge_store(root, ['train/a.png', 'train/b.png'], 16, 4,
                dict(grid=[2, 2], vocab_size=16, crop='center',
                     decoder=DECODER_ID,
                     tokenizer=dict(codebook_sha256='a' * 64)))
    return root


def _dataset(store, vocab=16):
    load = TRANSFORMS.build(
        dict(type='LoadVisualTokens', store=str(store), grid_size=2,
             vocab_size=vocab))
    perm = TRANSFORMS.build(
        dict(type='RandomPatchPermutation', input_size=16, patch_size=8))
    return SimpleNamespace(pipeline=Compose([load, perm]))


def test_vocab_checked_once_at_build(token_store_16):
    """The head's vocabulary (``MaPeT.vocab_size``) is compared with the
    tokenizer's when MaPeT is built and with the token store's when the
    runner builds the training loop; the per-step check is gone."""
    algo = make_algo(vocab=16)
    assert algo.vocab_size == algo.head.num_embed == 16
    check_visual_token_targets(algo, _dataset(token_store_16))  # agrees
    with pytest.raises(TargetMismatchError,
                       match=r'model predicts 32 visual tokens but '
                       r'LoadVisualTokens reads a store with vocab_size=16'):
        check_visual_token_targets(
            make_algo(vocab=32), _dataset(token_store_16))
    with pytest.raises(ValueError, match=r'predicts 16 .*vocab_size=32; set '
                       r'head.num_embed=32'):
        make_algo(target_generator=TinyTokenizer(vocab_size=32))
    # The same checks serve TokenCAE (decoder vocabulary neck.num_classes).
    cae_cfg = dict(
        type='TokenCAE',
        backbone=dict(
            type='VisibleTokensViT', arch=ARCH, img_size=16, patch_size=8),
        neck=dict(
            type='CAENeck', num_classes=32, embed_dims=32, num_heads=2,
            regressor_depth=1, decoder_depth=1, mask_tokens_num=2,
            layer_scale_init_value=0.1),
        head=dict(type='CAEHead', loss=dict(type='CAELoss', lambd=2)))
    cae = MODELS.build(cae_cfg)
    assert isinstance(cae, TokenCAE) and cae.vocab_size == 32
    with pytest.raises(TargetMismatchError, match='model predicts 32'):
        check_visual_token_targets(cae, _dataset(token_store_16))
    with pytest.raises(ValueError, match=r'predicts 32 .*vocab_size=16; set '
                       r'neck.num_classes=16'):
        MODELS.build(
            dict(cae_cfg, target_generator=TinyTokenizer(vocab_size=16)))
