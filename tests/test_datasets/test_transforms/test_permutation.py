"""PermutationMaskGenerator: payload, reproducibility, repr, errors."""
import numpy as np
import pytest
from mmpretrain.registry import TRANSFORMS

import mapet  # noqa: F401


def build(**kwargs):
    return TRANSFORMS.build(dict(type='PermutationMaskGenerator', **kwargs))


def test_permutation_payload():
    t = build(input_size=224, patch_size=16)
    results = t({'img': np.zeros((224, 224, 3), np.uint8)})
    perm = results['permutation']
    assert perm.dtype == np.int64 and perm.shape == (196, )
    assert np.array_equal(np.sort(perm), np.arange(196))
    assert 'mask' not in results


def test_rectangular_grid():
    t = build(input_size=(32, 64), patch_size=8)
    assert t.num_patches == 32
    assert sorted(t({})['permutation']) == list(range(32))


def test_seeded_numpy_rng_reproducible_and_varies_per_image():
    t = build(input_size=64, patch_size=16)
    np.random.seed(3)
    a = [t({})['permutation'] for _ in range(4)]
    np.random.seed(3)
    b = [t({})['permutation'] for _ in range(4)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], a[1])


def test_seeded_by_mmengine_randomness():
    """``randomness.seed`` (mmengine set_random_seed) fixes the stream."""
    from mmengine.runner import set_random_seed
    t = build(input_size=64, patch_size=16)
    set_random_seed(7)
    a = t({})['permutation']
    set_random_seed(7)
    assert np.array_equal(t({})['permutation'], a)


def test_mim_mask_default_ratio_and_consistency():
    t = build(mode='mim')
    assert t.num_masking_patches == 75  # BEiT's 75 of 196
    results = t({})
    mask, perm = results['mask'], results['permutation']
    assert mask.dtype == bool and mask.shape == (196, ) and mask.sum() == 75
    assert mask[perm[:75]].all()
    # Scaled to other grids; explicit count and ratio.
    assert build(mode='mim', input_size=112).num_masking_patches == 19
    assert build(mode='mim', num_masking_patches=10).num_masking_patches == 10
    assert build(mode='mim', mask_ratio=0.5).num_masking_patches == 98


def test_repr():
    assert repr(build(input_size=32, patch_size=8, mode='mim')) == (
        "PermutationMaskGenerator(input_size=(32, 32), patch_size=(8, 8), "
        "mode='mim', num_patches=16, num_masking_patches=6)")
    assert repr(build()) == (
        "PermutationMaskGenerator(input_size=(224, 224), patch_size=(16, 16), "
        "mode='mapet', num_patches=196, num_masking_patches=None)")


def test_packed_into_data_sample():
    pack = TRANSFORMS.build(
        dict(type='PackInputs', algorithm_keys=['permutation']))
    results = build(input_size=32, patch_size=8, mode='mim')(
        {'img': np.zeros((32, 32, 3), np.uint8)})
    sample = pack(results)['data_samples']
    assert np.array_equal(np.asarray(sample.permutation),
                          results['permutation'])
    assert sample.mask.shape == (16, ) and int(sample.mask.sum()) == 6


def test_bad_arguments():
    with pytest.raises(ValueError, match="Unknown mode 'bert'"):
        build(mode='bert')
    with pytest.raises(ValueError, match='not divisible'):
        build(input_size=30, patch_size=8)
    with pytest.raises(ValueError, match='mode="mim" only'):
        build(mode='mapet', num_masking_patches=10)
    with pytest.raises(ValueError, match=r'\[1, 195\]'):
        build(mode='mim', num_masking_patches=196)
    with pytest.raises(ValueError, match=r'\(0, 1\)'):
        build(mode='mim', mask_ratio=1.5)
