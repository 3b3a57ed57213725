"""Device colour jitter equals mmpretrain's ColorJitter pixel for pixel."""
import numpy as np
import pytest
import torch
from mmpretrain.datasets.transforms import ColorJitter, PackInputs
from mmpretrain.registry import MODELS, TRANSFORMS

import mapet  # noqa: F401  (registers)
from mapet.datasets.transforms import DeferredColorJitter
from mapet.models.utils import color_jitter_batch

MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]
JITTER = dict(brightness=0.4, contrast=0.4, saturation=0.4)


def _images(n: int, size: int = 24, seed: int = 0) -> np.ndarray:
    """BGR uint8 images with flat, saturated and dark regions."""
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    imgs[:, :4] = 255  # saturated rows: clipping when brightened
    imgs[:, 4:8] = 0
    imgs[1::3] //= 4  # dark images: contrast means near 0
    return imgs


def _cpu_and_deferred(imgs: np.ndarray, seed: int, **jitter):
    """mmpretrain's ColorJitter and DeferredColorJitter on the same draws."""
    cpu, deferred = ColorJitter(**jitter), DeferredColorJitter(**jitter)
    expected, params = [], []
    for i, img in enumerate(imgs):
        np.random.seed(seed * 1000 + i)
        expected.append(cpu(dict(img=img.copy()))['img'])
        np.random.seed(seed * 1000 + i)
        out = deferred(dict(img=img.copy()))
        np.testing.assert_array_equal(out['img'], img)  # untouched
        params.append(out['color_jitter'])
    return np.stack(expected), np.stack(params)


@pytest.mark.parametrize('jitter', [
    JITTER,
    dict(brightness=0.8, contrast=0., saturation=(0.2, 1.9)),
    dict(brightness=0., contrast=(0.1, 3.0), saturation=0.),
])
def test_batch_jitter_equals_color_jitter_bit_for_bit(jitter):
    imgs = _images(24)
    for seed in range(3):
        expected, params = _cpu_and_deferred(imgs, seed, **jitter)
        rgb = torch.from_numpy(imgs[..., ::-1].copy()).permute(0, 3, 1, 2)
        got = color_jitter_batch(rgb, torch.from_numpy(params))
        assert got.dtype == torch.float32
        got = got.permute(0, 2, 3, 1).numpy()[..., ::-1]
        np.testing.assert_array_equal(got, expected.astype(np.float32))
    # The jitter does something: not the identity on these images.
    assert not np.array_equal(expected, imgs)


def test_draws_follow_color_jitter_and_identity_factors():
    np.random.seed(3)
    params = DeferredColorJitter(brightness=0.4)(dict())['color_jitter']
    assert params.dtype == np.float64 and params.shape == (7,)
    assert sorted(params[:4]) == [0, 1, 2, 3]
    assert 0.6 <= params[4] <= 1.4
    assert params[5] == params[6] == 1.0  # contrast, saturation disabled
    # All factors 1.0: the batch comes back unchanged.
    imgs = torch.from_numpy(_images(4)).permute(0, 3, 1, 2)
    ones = torch.ones(4, 7, dtype=torch.float64)
    ones[:, :4] = torch.tensor([3, 1, 0, 2])
    assert torch.equal(color_jitter_batch(imgs, ones), imgs.float())
    # A float32 batch is jittered into a new tensor, never in place.
    floats, jitter = imgs.float(), ones.clone()
    jitter[:, 4:] = 1.3
    out = color_jitter_batch(floats, jitter)
    assert torch.equal(floats, imgs.float()) and not torch.equal(out, floats)


def test_repr_and_hue_refused():
    t = TRANSFORMS.build(dict(type='DeferredColorJitter', **JITTER))
    assert repr(t) == ('DeferredColorJitter(brightness=(0.6, 1.4), '
                       'contrast=(0.6, 1.4), saturation=(0.6, 1.4), '
                       'hue=None)')
    with pytest.raises(ValueError, match="hue=0.1 is not supported on the "
                       "device; use dict\\(type='ColorJitter'"):
        DeferredColorJitter(hue=0.1)
    with pytest.raises(ValueError, match='expects \\(2, 7\\) parameters'):
        color_jitter_batch(torch.zeros(2, 3, 4, 4), torch.ones(2, 6))


def _batch(imgs: np.ndarray, seed: int, jitter: bool = True) -> dict:
    pipeline = ([DeferredColorJitter(**JITTER)] if jitter else []) + [
        PackInputs(algorithm_keys=['color_jitter'])]
    inputs, samples = [], []
    for i, img in enumerate(imgs):
        np.random.seed(seed * 1000 + i)
        r = dict(img=img.copy())
        for t in pipeline:
            r = t(r)
        inputs.append(r['inputs'])
        samples.append(r['data_samples'])
    return dict(inputs=torch.stack(inputs), data_samples=samples)


def test_preprocessor_equals_cpu_jitter_then_selfsup_preprocessor():
    imgs = _images(8)
    expected, _ = _cpu_and_deferred(imgs, 7, **JITTER)
    plain = MODELS.build(dict(type='SelfSupDataPreprocessor', mean=MEAN,
                              std=STD, to_rgb=True))
    device = MODELS.build(dict(type='ColorJitterDataPreprocessor', mean=MEAN,
                               std=STD, to_rgb=True))
    want = plain(dict(inputs=torch.from_numpy(expected).permute(0, 3, 1, 2),
                      data_samples=None), training=True)['inputs']
    got = device(_batch(imgs, 7), training=True)['inputs']
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    # Validation batches carry no jitter and pass unchanged.
    val = device(_batch(imgs, 7, jitter=False), training=False)['inputs']
    want_val = plain(dict(inputs=torch.from_numpy(imgs).permute(0, 3, 1, 2),
                          data_samples=None))['inputs']
    torch.testing.assert_close(val, want_val, rtol=0, atol=0)


def test_preprocessor_refuses_training_batches_without_jitter():
    device = MODELS.build(dict(type='ColorJitterDataPreprocessor', mean=MEAN,
                               std=STD, to_rgb=True))
    with pytest.raises(ValueError, match="add dict\\(type='DeferredColorJi"
                       "tter', ...\\) to the train pipeline"):
        device(_batch(_images(2), 0, jitter=False), training=True)
    mixed = _batch(_images(2), 0)
    mixed['data_samples'][1] = _batch(_images(1), 0, False)['data_samples'][0]
    with pytest.raises(ValueError, match='1 of 2 samples of the batch carry'):
        device(mixed, training=True)
