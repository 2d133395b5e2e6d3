"""PNG decoding: libpng directly for plain greyscale/truecolour PNGs, OpenCV otherwise; the same pixels either way."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from store.codecs import DecodeError, decode_image


def _opencv_reference(data: bytes) -> np.ndarray:
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB if arr.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return arr


def _png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def _palette_png(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).quantize(16).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: _png(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)),  # truecolour 8-bit (libpng)
        lambda rng: _png(rng.integers(0, 256, (37, 53), dtype=np.uint8)),  # greyscale 8-bit (libpng)
        lambda rng: _png(rng.integers(0, 65536, (37, 53), dtype=np.uint16)),  # greyscale 16-bit depth (libpng)
        lambda rng: _png(rng.integers(0, 256, (37, 53, 4), dtype=np.uint8)),  # with alpha (OpenCV)
        lambda rng: _palette_png(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)),  # palette (OpenCV)
    ],
    ids=["rgb8", "grey8", "grey16", "rgba8", "palette"],
)
def test_decoded_pixels_match_opencv(make):
    data = make(np.random.default_rng(0))
    ours = decode_image(data)
    reference = _opencv_reference(data)
    assert ours.dtype == reference.dtype and np.array_equal(ours, reference)


def test_16_bit_colour_is_refused():
    data = _png(np.random.default_rng(2).integers(0, 65536, (37, 53, 3), dtype=np.uint16))
    with pytest.raises(DecodeError, match="expected 8-bit"):
        decode_image(data)


def test_damaged_plain_png_is_a_decode_error():
    data = bytearray(_png(np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)))
    data[60:200] = bytes(140)  # inside the image data, the end marker intact
    with pytest.raises(DecodeError):
        decode_image(bytes(data))
