"""VisualTokenHead and the MaPeT algorithm (mapet / pim / mim)."""
import numpy as np
import pytest
import torch
from mmpretrain.structures import DataSample
from torch import nn

import mapet  # noqa: F401
from mapet.models.selfsup import MaPeT
from mapet.models.heads import VisualTokenHead

ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)
IMG, PATCH, CUT, VOCAB = 32, 8, 5, 16
N = (IMG // PATCH)**2


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


def test_head_out_of_vocab_names_both_numbers():
    head = VisualTokenHead(embed_dims=4, num_embed=8)
    with pytest.raises(ValueError, match=r'id 8 .*vocabulary of 8 '):
        head.loss(torch.zeros(1, 2, 4), torch.tensor([[1, 8]]))
    with pytest.raises(ValueError, match=r'id -1 .*vocabulary of 8 '):
        head.loss(torch.zeros(1, 2, 4), torch.tensor([[-1, 2]]))


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


def test_vocab_mismatch_and_token_grid_errors():
    with pytest.raises(ValueError, match=r'predicts 16 .*vocab_size=32'):
        make_algo(target_generator=TinyTokenizer(vocab_size=32))
    algo = make_algo()
    samples = make_samples(2)
    for s in samples:
        s.set_field(s.visual_tokens[:9], 'visual_tokens')
    with pytest.raises(ValueError, match=r'9 tokens per image.*4x4 patch'):
        algo.loss(torch.randn(2, 3, IMG, IMG), samples)
    with pytest.raises(KeyError, match='visual_tokens'):
        algo.loss(torch.randn(2, 3, IMG, IMG), make_samples(2, tokens=False))


def test_extract_feat_and_layer_depth():
    algo = make_algo()
    algo.eval()
    images = torch.randn(2, 3, IMG, IMG)
    torch.testing.assert_close(
        algo(images, mode='tensor')[0], algo.backbone(images)[0])
    assert algo.get_layer_depth('backbone.mask_token') == (0, 4)
    assert algo.get_layer_depth('backbone.layers.0.ln1.weight') == (1, 4)
    assert algo.get_layer_depth('head.cls_head.weight') == (3, 4)
