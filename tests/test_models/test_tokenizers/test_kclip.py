"""KClipTokenizer: exact nearest-centroid tokens, frozen-ness, bad inputs."""
import numpy as np
import pytest
import torch
from torch import nn

from mapet.models.tokenizers import KClipTokenizer
from mapet.models.tokenizers.codebook import load_codebook, save_codebook

CLIP_MODEL = 'RN50'
RN50_DIM = 2048
IMG_H, IMG_W = 64, 96  # 2 x 3 token grid


def reference_features(checkpoint, images: torch.Tensor) -> torch.Tensor:
    """layer4 features through open_clip's own API, (N, D) float64."""
    import open_clip
    model = open_clip.create_model(CLIP_MODEL, pretrained=str(checkpoint))
    model.eval()
    with torch.no_grad():
        out = model.visual.forward_intermediates(
            images, indices=[4], intermediates_only=True)
    feats = out['image_intermediates'][0]  # (B, D, h, w)
    return feats.flatten(2).transpose(1, 2).reshape(-1, feats.shape[1])


def brute_force(features: torch.Tensor, centroids: torch.Tensor):
    diff = features.double()[:, None, :] - centroids.double()[None]
    return (diff * diff).sum(-1).argmin(dim=1)  # first minimum on ties


@pytest.fixture(scope='module')
def kclip_case(rn50_checkpoint, tmp_path_factory):
    torch.manual_seed(1)
    images = torch.randn(3, 3, IMG_H, IMG_W)
    feats = reference_features(rn50_checkpoint, images)
    g = torch.Generator().manual_seed(2)
    # Codebook built around the features so that ties and near-ties occur:
    centroids = [
        feats[i] +
        0.01 * feats[i].abs().mean() * torch.randn(RN50_DIM, generator=g)
        for i in range(8)
    ]
    # f +- e: equidistant from f in exact arithmetic, only float32 rounding
    # separates them -- the expansion trick can order these wrongly.
    for i in range(8, 12):
        e = 1e-3 * torch.randn(RN50_DIM, generator=g)
        centroids += [feats[i] + e, feats[i] - e]
    centroids += list(torch.randn(12, RN50_DIM, generator=g) + feats.mean(0))
    centroids = torch.stack(centroids).float()
    # exact duplicates at higher indices: ties must go to the lower index
    centroids = torch.cat([centroids, centroids[:6]])
    path = tmp_path_factory.mktemp('codebook') / 'cb.npy'
    np.save(path, centroids.numpy())
    tok = KClipTokenizer(CLIP_MODEL, str(rn50_checkpoint), str(path))
    return tok, images, feats, centroids, path


def test_tokens_equal_brute_force(kclip_case):
    tok, images, feats, centroids, _ = kclip_case
    tokens = tok(images)
    assert tokens.dtype == torch.int64
    assert tokens.shape == (3, (IMG_H // 32) * (IMG_W // 32))
    expected = brute_force(feats, centroids).view(3, -1)
    assert torch.equal(tokens, expected)
    # the duplicated centroids (index >= 32) never win over their originals
    assert int(tokens.max()) < centroids.shape[0] - 6
    # the interface's features are open_clip's layer4 output, row-major
    assert torch.equal(
        tok.extract_features(images).reshape(-1, RN50_DIM), feats.float())
    assert tok.vocab_size == centroids.shape[0]


def test_nearest_centroid_exact_on_hard_ties():
    from mapet.models.tokenizers.codebook import nearest_centroid
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 64, generator=g) * 10
    c = torch.cat([
        x[:100] + 1e-4 * torch.randn(100, 64, generator=g),
        x[:100] - 1e-4 * torch.randn(100, 64, generator=g)
    ])
    c = torch.cat([c, c[:50]])  # duplicates
    got = nearest_centroid(x, c, chunk_size=64)
    expected = brute_force(x, c)
    assert torch.equal(got, expected)
    # the test has teeth: the float32 expansion gets many of these wrong
    naive = (x.pow(2).sum(1, keepdim=True) - 2 * x @ c.t() +
             c.pow(2).sum(1)).argmin(1)
    assert (naive != expected).sum() > 0


def test_nearest_centroid_fast_path_is_per_row():
    """A row without candidates must not shift a tied row's ids.

    A row that overflows float32 in the expansion ``|x|^2 - 2 x.c + |c|^2``
    (NaN distances) has no candidate. It used to get the id K (out of the
    vocabulary), and, when an exact tie (duplicate centroids) gave another
    row two candidates so that the total still equalled the number of rows,
    the fast path shifted the ids onto the wrong rows.
    """
    from mapet.models.tokenizers.codebook import nearest_centroid
    g = torch.Generator().manual_seed(0)
    c = torch.randn(3, 8, generator=g)
    c = torch.cat([c, c[2:3], torch.full((1, 8), 1e19)])  # c3 == c2
    x = torch.stack([
        c[0] + 0.01, torch.full((8, ), 1e20), c[2].clone(), c[1] - 0.01
    ])
    expected = brute_force(x, c)
    assert expected.tolist() == [0, 4, 2, 1]  # ties to the lower index
    assert nearest_centroid(x, c).tolist() == [0, 4, 2, 1]


@pytest.mark.parametrize('bad', [float('nan'), float('inf')])
def test_nearest_centroid_rejects_non_finite_features(bad):
    from mapet.models.tokenizers.codebook import nearest_centroid
    g = torch.Generator().manual_seed(0)
    c = torch.randn(3, 8, generator=g)
    c = torch.cat([c, c[2:3]])  # the reviewer's repro: c3 == c2
    x = torch.stack([c[0] + 0.01, c[1], c[2].clone(), c[1] - 0.01])
    x[1, 3] = bad
    with pytest.raises(ValueError,
                       match=r'1 feature row\(s\) in the chunk of rows '
                       r'\[0, 4\) are not finite .*first at row 1'):
        nearest_centroid(x, c)
    # later chunks report absolute rows
    x[1, 3], x[3, 0] = 0., bad
    with pytest.raises(ValueError, match=r'rows \[2, 4\).*at row 3'):
        nearest_centroid(x, c, chunk_size=2)
    c[1, 0] = bad
    with pytest.raises(ValueError, match='non-finite'):
        nearest_centroid(x[[0, 2]], c)


def test_frozen(kclip_case):
    tok = kclip_case[0]
    parent = nn.Module()
    parent.tokenizer = tok
    parent.head = nn.Linear(4, 2)
    parent.train()
    assert not tok.training
    assert all(not m.training for m in tok.modules())
    assert [n for n, p in parent.named_parameters() if p.requires_grad] == \
        ['head.weight', 'head.bias']
    bn = tok.trunk.visual.bn1
    before = bn.running_mean.clone()
    tok(kclip_case[1])
    assert torch.equal(bn.running_mean, before)
    # tokenizer weights stay out of the parent's checkpoints
    assert sorted(parent.state_dict()) == ['head.bias', 'head.weight']
    parent.load_state_dict(parent.state_dict(), strict=True)
    init_before = bn.weight.clone()
    tok.init_weights()
    assert torch.equal(bn.weight, init_before)


def test_image_size_not_multiple_of_32(kclip_case):
    with pytest.raises(ValueError, match='multiple of 32'):
        kclip_case[0](torch.randn(1, 3, 64, 80))


def test_codebook_dim_mismatch(rn50_checkpoint, tmp_path):
    path = tmp_path / 'cb.npy'
    np.save(path, np.random.rand(16, 1024).astype(np.float32))
    with pytest.raises(ValueError, match='dimension 1024 but RN50 layer4'):
        KClipTokenizer(CLIP_MODEL, str(rn50_checkpoint), str(path))


def test_codebook_file_checksums_and_metadata(tmp_path):
    cents = np.random.rand(8, RN50_DIM).astype(np.float32)
    meta = save_codebook(tmp_path / 'cb', cents,
                         dict(clip_model=CLIP_MODEL, normalize=False))
    loaded, meta2 = load_codebook(tmp_path / 'cb.npz')
    assert np.array_equal(loaded, cents)
    assert meta2['centroids_sha256'] == meta['centroids_sha256']
    assert (tmp_path / 'cb.npz.sha256').is_file()
    # a bit flip in the file is caught by the sidecar checksum
    raw = bytearray((tmp_path / 'cb.npz').read_bytes())
    raw[-200] ^= 1
    (tmp_path / 'cb.npz').write_bytes(bytes(raw))
    with pytest.raises(ValueError, match='Checksum mismatch'):
        load_codebook(tmp_path / 'cb.npz')


def test_codebook_settings_mismatch(rn50_checkpoint, tmp_path):
    cents = np.random.rand(8, RN50_DIM).astype(np.float32)
    save_codebook(tmp_path / 'cb', cents,
                  dict(clip_model=CLIP_MODEL, normalize=True, layer='layer4'))
    with pytest.raises(ValueError, match='normalize=True'):
        KClipTokenizer(
            CLIP_MODEL,
            str(rn50_checkpoint),
            str(tmp_path / 'cb.npz'),
            normalize=False)


def test_missing_codebook():
    with pytest.raises(ValueError, match='needs `codebook`'):
        KClipTokenizer(CLIP_MODEL, None, None)
