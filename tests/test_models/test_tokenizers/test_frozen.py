"""FrozenVQKD / FrozenDALLE: released-file loading, tokens, frozen-ness."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mapet.models.tokenizers import FrozenDALLE, FrozenVQKD

NUM_EMBED = 32
EMBED_DIMS = 8
IMG = 32
TINY_VQKD_ENCODER = dict(
    arch=dict(
        embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
    img_size=IMG,
    patch_size=16,
    out_type='featmap',
    final_norm=True,
    with_cls_token=True,
    use_abs_pos_emb=True,
    use_rel_pos_bias=False,
    layer_scale_init_value=0.,
    norm_cfg=dict(type='LN', eps=1e-6))
TINY_DALLE = dict(
    group_count=4, n_hid=8, n_blk_per_group=1, vocab_size=NUM_EMBED)


def _reference_vqkd():
    from mmpretrain.models.selfsup.beit import VQKD
    torch.manual_seed(0)
    return VQKD(
        encoder_config=TINY_VQKD_ENCODER,
        num_embed=NUM_EMBED,
        embed_dims=EMBED_DIMS,
        quantize_kmeans_init=False)


@pytest.fixture(scope='module')
def vqkd_file(tmp_path_factory):
    ref = _reference_vqkd()
    state = dict(ref.state_dict())
    # released full checkpoints also hold the (unused) decoder
    state['decoder.blocks.0.weight'] = torch.zeros(2)
    path = tmp_path_factory.mktemp('vqkd') / 'vqkd_encoder.pth'
    torch.save({'state_dict': state}, path)
    return path, ref


def _frozen_vqkd(path):
    return FrozenVQKD(
        encoder_config=TINY_VQKD_ENCODER,
        num_embed=NUM_EMBED,
        embed_dims=EMBED_DIMS,
        checkpoint=str(path))


def test_vqkd_loads_released_file_and_tokens(vqkd_file):
    path, ref = vqkd_file
    tok = _frozen_vqkd(path)
    for (k, a), b in zip(ref.state_dict().items(),
                         tok.vqkd.state_dict().values()):
        assert torch.equal(a, b), k
    images = torch.randn(2, 3, IMG, IMG * 2)
    tokens = tok(images)
    assert tokens.shape == (2, (IMG // 16) * (IMG * 2 // 16))
    ref.eval()
    with torch.no_grad():
        feats = ref.encoder(images)[0].flatten(2).transpose(1, 2)
        z = F.normalize(
            ref.encode_task_layer(feats), dim=-1).reshape(-1, EMBED_DIMS)
    code = ref.quantize.embedding.weight
    diff = z.double()[:, None] - code.double()[None]
    expected = (diff * diff).sum(-1).argmin(1).view(2, -1)
    assert torch.equal(tokens, expected)
    assert tok.vocab_size == NUM_EMBED


def test_vqkd_codebook_unchanged_after_training_steps(vqkd_file):
    tok = _frozen_vqkd(vqkd_file[0])
    parent = nn.Module()
    parent.target_generator = tok
    parent.head = nn.Linear(3 * 16 * 16, NUM_EMBED)
    trainable = [p for p in parent.parameters() if p.requires_grad]
    assert len(trainable) == 2  # only the head
    optim = torch.optim.AdamW(trainable, lr=1e-2)
    snapshot = {
        k: v.clone()
        for k, v in nn.Module.state_dict(tok.vqkd, keep_vars=False).items()
    }
    parent.train()
    for _ in range(3):
        images = torch.randn(2, 3, IMG, IMG)
        targets = parent.target_generator(images).flatten()
        patches = F.unfold(images, 16, stride=16).transpose(1, 2)
        logits = parent.head(patches.reshape(-1, 3 * 16 * 16))
        loss = F.cross_entropy(logits, targets)
        optim.zero_grad()
        loss.backward()
        optim.step()
    assert not tok.training and not tok.vqkd.quantize.training
    for k, v in tok.vqkd.state_dict().items():
        assert torch.equal(v, snapshot[k]), f'{k} changed'
    # contrast: mmpretrain's VQKD in train mode EMA-updates its codebook
    raw = _reference_vqkd().train()
    before = raw.quantize.embedding.weight.clone()
    raw(torch.randn(2, 3, IMG, IMG))
    assert not torch.equal(raw.quantize.embedding.weight, before)


def test_vqkd_checkpoint_mismatch(tmp_path):
    ref = _reference_vqkd()
    state = {
        k: v
        for k, v in ref.state_dict().items()
        if not k.startswith('encode_task_layer')
    }
    torch.save(state, tmp_path / 'bad.pth')
    with pytest.raises(ValueError, match='missing keys.*encode_task_layer'):
        _frozen_vqkd(tmp_path / 'bad.pth')


def test_dalle_loads_file_tokens_frozen(tmp_path):
    from mmpretrain.models.selfsup.cae import DALLEEncoder
    torch.manual_seed(0)
    ref = DALLEEncoder(**TINY_DALLE)
    torch.save(ref.state_dict(), tmp_path / 'dalle_encoder.pth')
    tok = FrozenDALLE(
        checkpoint=str(tmp_path / 'dalle_encoder.pth'), **TINY_DALLE)
    images = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        expected = ref(images).argmax(1).flatten(1)
    assert torch.equal(tok(images), expected)
    assert tok.stride == 8 and tok.vocab_size == NUM_EMBED
    assert not any(p.requires_grad for p in tok.parameters())
    # mmpretrain's DALL-E encoder is trainable as built: we freeze it
    assert any(p.requires_grad for p in ref.parameters())
    parent = nn.Sequential(tok)
    parent.train()
    assert not tok.training
    with pytest.raises(ValueError, match='multiple of 8'):
        tok(torch.randn(1, 3, 36, 36))
    bad = {k: v for k, v in ref.state_dict().items() if 'output' not in k}
    torch.save(bad, tmp_path / 'bad.pth')
    with pytest.raises(ValueError, match='missing keys'):
        FrozenDALLE(checkpoint=str(tmp_path / 'bad.pth'), **TINY_DALLE)
