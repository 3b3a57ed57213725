"""One decoder: the tokenizer and the trainer see identical pixels.

Token extraction (``CenterCropImages``, used by ``extract_tokens.py`` and
``fit_kclip_codebook.py``) and the training pipeline
(``LoadImageForTokens``) both decode with
:func:`mapet.datasets.image_decode.decode_image`. For EXIF-rotated JPEGs,
16-bit PNGs (grey and RGB), palette PNGs with transparency, grey, grey+alpha,
RGBA and CMYK images the two sides give the same array, and it is the
expected one (orientation applied, high byte of 16-bit data).
"""
import numpy as np
import pytest
from mmpretrain.registry import TRANSFORMS
from PIL import Image

from mapet.datasets.image_decode import DECODER_ID, decode_image
from mapet.extraction.images import CenterCropImages, ImageRecord

S = 16  # square: the extraction's resize + centre crop are the identity


def _rgb(h=S, w=S) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _exif_rotated(path):
    # EXIF orientation 6: displayed rotated by 90 degrees clockwise.
    stored = _rgb(S, S)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(path, 'PNG', exif=exif)
    return np.rot90(stored, k=-1)  # 90 degrees clockwise


def _jpeg_exif_rotated(path):
    stored = _rgb(S, S)
    exif = Image.Exif()
    exif[0x0112] = 8  # 90 degrees counter-clockwise
    Image.fromarray(stored).save(path, 'JPEG', quality=95, exif=exif)
    with Image.open(path) as img:
        decoded = np.asarray(img.convert('RGB'))
    return np.rot90(decoded, k=1)


def _grey16(path):
    v = (np.arange(S * S, dtype=np.uint32).reshape(S, S) * 257 + 100)
    v = v.astype(np.uint16)
    Image.fromarray(v).save(path)  # mode I;16
    return np.repeat((v >> 8).astype(np.uint8)[..., None], 3, axis=2)


def _rgb16(path):
    import cv2
    v = (np.arange(S * S * 3, dtype=np.uint32).reshape(S, S, 3) * 85)
    v = (v % 65536).astype(np.uint16)
    cv2.imwrite(str(path), v[..., ::-1])  # 48-bit RGB PNG
    return (v >> 8).astype(np.uint8)


def _palette(path):
    rgb = _rgb()
    img = Image.fromarray(rgb).quantize(colors=16)
    img.info['transparency'] = 0
    img.save(path, transparency=0)
    return np.asarray(img.convert('RGB'))


def _grey(path):
    g = _rgb()[..., 0]
    Image.fromarray(g, 'L').save(path)
    return np.repeat(g[..., None], 3, axis=2)


def _grey_alpha(path):
    g = _rgb()[..., :2]
    Image.fromarray(g, 'LA').save(path)
    return np.repeat(g[..., :1], 3, axis=2)


def _rgba(path):
    rgba = np.concatenate([_rgb(), np.full((S, S, 1), 7, np.uint8)], 2)
    Image.fromarray(rgba, 'RGBA').save(path)
    return rgba[..., :3]


def _cmyk(path):
    cmyk = Image.fromarray(_rgb()).convert('CMYK')
    cmyk.save(path, 'JPEG', quality=95)
    with Image.open(path) as img:
        assert img.mode == 'CMYK'
        return np.asarray(img.convert('RGB'))


CASES = {
    'exif-rotated.png': _exif_rotated,
    'exif-rotated.jpg': _jpeg_exif_rotated,
    'grey16.png': _grey16,
    'rgb16.png': _rgb16,
    'palette-transparent.png': _palette,
    'grey.png': _grey,
    'grey-alpha.png': _grey_alpha,
    'rgba.png': _rgba,
    'cmyk.jpg': _cmyk,
}


def _extraction_pixels(path) -> np.ndarray:
    """What the tokenizer sees, back on the 0-255 scale."""
    ds = CenterCropImages([ImageRecord('x', str(path))], size=S,
                          mean=(0., 0., 0.), std=(1., 1., 1.))
    tensor, _ = ds[0]
    return np.rint(tensor.numpy().transpose(1, 2, 0) * 255).astype(np.uint8)


@pytest.mark.parametrize('name', sorted(CASES))
def test_tokenizer_and_trainer_decode_identically(tmp_path, name):
    path = tmp_path / name
    expected = CASES[name](path)
    trainer = TRANSFORMS.build(dict(type='LoadImageForTokens'))(
        dict(img_path=str(path)))['img'][..., ::-1]  # BGR -> RGB
    tokenizer = _extraction_pixels(path)
    assert trainer.dtype == np.uint8 and trainer.shape == (S, S, 3)
    np.testing.assert_array_equal(trainer, expected)
    np.testing.assert_array_equal(tokenizer, trainer)
    np.testing.assert_array_equal(decode_image(path.read_bytes()), trainer)


def test_the_two_old_decoders_disagreed(tmp_path):
    """Why one decoder: before, extraction decoded with
    ``Image.open(p).convert('RGB')`` and training with mmcv's
    ``LoadImageFromFile`` (cv2); they disagree on EXIF-rotated, 16-bit grey
    and CMYK images (the figures are in docs/reliability.md)."""
    differing = []
    for name, make in sorted(CASES.items()):
        path = tmp_path / name
        make(path)
        with Image.open(path) as img:
            old_extraction = np.asarray(img.convert('RGB'))
        old_trainer = TRANSFORMS.build(dict(type='LoadImageFromFile'))(
            dict(img_path=str(path)))['img'][..., ::-1]
        if not np.array_equal(old_trainer, old_extraction):
            differing.append(name)
    assert differing == ['cmyk.jpg', 'exif-rotated.jpg', 'exif-rotated.png',
                         'grey16.png']


def test_decoder_is_recorded_and_required(tmp_path):
    """The store's manifest names the decoder; LoadVisualTokens checks it."""
    from mapet.datasets.token_store import (TokenStoreError, merge_store,
                                            prepare_parts, write_chunk)

    def store(name, **fields):
        root = tmp_path / name
        prepare_parts(root, dict(job=name))
        write_chunk(root, 0, np.zeros((1, 4), np.int64), 16)
        merge_store(root, ['a.png'], 16, 4,
                    dict(grid=[2, 2], vocab_size=16, crop='center', **fields))
        return str(root)

    args = dict(type='LoadVisualTokens', grid_size=2, vocab_size=16)
    TRANSFORMS.build(dict(args, store=store('ok', decoder=DECODER_ID)))
    old = store('old')
    with pytest.raises(TokenStoreError, match='image decoder: the manifest '
                       'records none .* re-extract it .*allow_unrecorded_'
                       'decoder=True'):
        TRANSFORMS.build(dict(args, store=old))
    TRANSFORMS.build(dict(args, store=old, allow_unrecorded_decoder=True))
    with pytest.raises(TokenStoreError, match="image decoder: store 'cv2', "
                       f"trainer '{DECODER_ID}'"):
        TRANSFORMS.build(dict(args, store=store('cv2', decoder='cv2')))
