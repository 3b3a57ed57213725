"""RandomPatchPermutation: payload, reproducibility, repr, errors."""
import numpy as np
import pytest
from mmpretrain.registry import TRANSFORMS

import mapet  # noqa: F401


def build(**kwargs):
    return TRANSFORMS.build(dict(type='RandomPatchPermutation', **kwargs))


def test_permutation_payload():
    t = build(input_size=224, patch_size=16)
    results = t({'img': np.zeros((224, 224, 3), np.uint8)})
    perm = results['permutation']
    assert perm.dtype == np.int64 and perm.shape == (196, )
    assert np.array_equal(np.sort(perm), np.arange(196))
    # Only the permutation: no mask (MIM uses a mask generator instead) and
    # the image is left alone.
    assert set(results) == {'img', 'permutation'}
    assert not results['img'].any()


def test_rectangular_grid():
    t = build(input_size=(32, 64), patch_size=8)
    assert t.grid == (4, 8) and t.num_patches == 32
    assert sorted(t({})['permutation']) == list(range(32))
    t = build(input_size=(32, 64), patch_size=(8, 16))
    assert t.grid == (4, 4) and t.num_patches == 16


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


def test_repr():
    assert repr(build(input_size=32, patch_size=8)) == (
        'RandomPatchPermutation(input_size=(32, 32), patch_size=(8, 8), '
        'num_patches=16)')
    assert repr(build()) == (
        'RandomPatchPermutation(input_size=(224, 224), patch_size=(16, 16), '
        'num_patches=196)')


def test_packed_into_data_sample():
    pack = TRANSFORMS.build(
        dict(type='PackInputs', algorithm_keys=['permutation']))
    results = build(input_size=32, patch_size=8)(
        {'img': np.zeros((32, 32, 3), np.uint8)})
    sample = pack(results)['data_samples']
    assert np.array_equal(np.asarray(sample.permutation),
                          results['permutation'])
    assert 'mask' not in sample


def test_bad_arguments():
    with pytest.raises(ValueError, match='not a positive multiple'):
        build(input_size=30, patch_size=8)
    with pytest.raises(ValueError, match='not a positive multiple'):
        build(input_size=32, patch_size=0)
    with pytest.raises(ValueError, match='not a positive multiple'):
        build(input_size=(0, 32), patch_size=8)
    with pytest.raises(ValueError, match=r'int or \(h, w\)'):
        build(input_size=(32, 32, 32))
    # The mode is the backbone's, the mask a mask generator's: the old
    # PermutationMaskGenerator arguments are not accepted silently.
    for removed in (dict(mode='mim'), dict(num_masking_patches=75),
                    dict(mask_ratio=0.38)):
        with pytest.raises(TypeError, match=next(iter(removed))):
            build(**removed)
