"""The one image decoder of mapet: token extraction and training share it.

Visual tokens are only right if the tokenizer saw the pixels the trainer
sees. mmcv's ``LoadImageFromFile`` (cv2) and PIL disagree on EXIF-rotated
JPEGs (cv2 applies the orientation only with some flags, PIL never on its
own), on 16-bit PNGs, palettes with transparency and CMYK JPEGs. So both
sides call :func:`decode_image`:

* token extraction (``mapet/extraction/images.py``, ``CenterCropImages``);
* training pipelines (``LoadImageForTokens`` in
  ``mapet/datasets/transforms/loading.py``, in place of
  ``LoadImageFromFile``).

Rules (:data:`DECODER_ID` names them; a token store records it in its
manifest and ``LoadVisualTokens`` refuses a store decoded otherwise):

* PIL (``Image.open``), EXIF orientation applied (``ImageOps.exif_transpose``);
* 16-bit and 32-bit integer images -> 8 bit by keeping the high byte
  (``v >> 8``, what PIL does for 16-bit RGB and cv2 for 16-bit grey),
  float images clipped to [0, 255] and rounded;
* palette (``P``/``PA``), grey (``1``/``L``/``LA``), ``CMYK``, ``YCbCr``,
  ``RGBA`` -> RGB with PIL's ``convert('RGB')`` (alpha dropped, not
  composited; grey replicated);
* images larger than ``max_pixels`` are refused before they are decoded,
  truncated or unreadable files raise :class:`ImageDecodeError` naming the
  file.
"""
import io
import os
from typing import Optional, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ['DECODER_ID', 'DEFAULT_MAX_PIXELS', 'ImageDecodeError',
           'decode_image']

#: Name and version of the decoding rules above. Change it whenever the
#: rules change: stores extracted with the old rules are then refused.
DECODER_ID = 'mapet-pil-exif-rgb8/v1'
#: 16k x 16k; PIL's own bomb limit is 89 M pixels with a warning only.
DEFAULT_MAX_PIXELS = 16384 * 16384

_HIGH_BYTE_MODES = ('I;16', 'I;16B', 'I;16L', 'I;16N', 'I')


class ImageDecodeError(ValueError):
    """An image file cannot be decoded (names the file and the fix)."""


def _describe(source) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return '<image bytes>'
    return os.fsdecode(source) if isinstance(source, (str, bytes,
                                                      os.PathLike)) \
        else repr(source)


def _to_rgb8(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in _HIGH_BYTE_MODES:
        arr = np.asarray(img)
        if mode == 'I':  # 32-bit signed: 16-bit data, or a wider range
            arr = np.clip(arr, 0, 65535)
        grey = (arr.astype(np.uint32) >> 8).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == 'F':
        grey = np.clip(np.rint(np.asarray(img)), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode != 'RGB':
        img = img.convert('RGB')
    return np.asarray(img, dtype=np.uint8)


def decode_image(source: Union[str, os.PathLike, bytes],
                 max_pixels: Optional[int] = DEFAULT_MAX_PIXELS
                 ) -> np.ndarray:
    """Decode an image file or its bytes to RGB uint8 (H, W, 3).

    Args:
        source (str | PathLike | bytes): A path or the encoded bytes.
        max_pixels (int, optional): Refuse larger images (width x height)
            before decoding them. None: no limit. Defaults to 16384**2.

    Returns:
        np.ndarray: C-contiguous uint8 array (H, W, 3), RGB.

    Raises:
        ImageDecodeError: The file is missing, not an image, truncated,
            too large, or PIL cannot decode it; the message names it.
    """
    name = _describe(source)
    stream = io.BytesIO(source) if isinstance(
        source, (bytes, bytearray, memoryview)) else source
    try:
        with Image.open(stream) as img:
            width, height = img.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageDecodeError(
                    f'Image {name} is {width}x{height} = {width * height} '
                    f'pixels, more than max_pixels={max_pixels}: refused '
                    'before decoding (a corrupt header or a decompression '
                    'bomb). Resize it, or raise max_pixels if it is real.')
            img.load()
            img = ImageOps.exif_transpose(img)
            arr = _to_rgb8(img)
    except ImageDecodeError:
        raise
    except FileNotFoundError:
        raise ImageDecodeError(f'Image {name} does not exist.') from None
    except UnidentifiedImageError:
        raise ImageDecodeError(
            f'Image {name} is not an image PIL can read (empty, wrong '
            'extension or another file type). Remove it from the dataset '
            'or replace it.') from None
    except (OSError, SyntaxError, ValueError, EOFError,
            Image.DecompressionBombError) as e:
        raise ImageDecodeError(
            f'Image {name} cannot be decoded: {e}. The file is truncated '
            'or corrupt; re-download or remove it (mapet never decodes a '
            'partial image).') from None
    return np.ascontiguousarray(arr)


def oriented_size(path: Union[str, os.PathLike]) -> tuple:
    """``(width, height)`` of an image after its EXIF orientation, read from
    the header only (the size :func:`decode_image` returns, transposed)."""
    with Image.open(path) as img:
        width, height = img.size
        orientation = img.getexif().get(0x0112, 1)
    # EXIF orientations 5-8 rotate by 90 degrees: width and height swap.
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)
