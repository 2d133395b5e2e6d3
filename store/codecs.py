"""How sample arrays become bytes and back. The only module that knows the payload encodings.

RGB codecs, as written in the catalog's rgb_codec column:
  jpeg    the dataset's own JPEG file, byte for byte (re-encoding it losslessly costs 4-7x the bytes)
  png     the dataset's own PNG file, byte for byte
  dzstd   uint8 HxWx3, horizontal byte delta then zstd level 3: lossless, about the size of the source
          PNG (0.98x on KITTI) and 4-5x faster to decode (docs/performance.md has the measurements)
  raw     uint8 HxWx3, zstd level 3 (no delta: 1.2x PNG bytes)
Write policies (`--rgb-codec`): auto (default: keep JPEG; PNG -> dzstd when within 1.1x of the PNG's
bytes, else keep the PNG), source (keep the file's bytes), dzstd, raw.
Depth codecs (the smaller of the candidates is kept, per sample):
  u16     integer depth raw = round(depth_m * depth_scale) as uint16, zstd (lossless for datasets that ship
          integers: KITTI /256, NYU mm, ...); best for sparse lidar maps
  du16    the same integers, horizontal delta then zstd level 9; best for dense maps (smooth surfaces)
  f32     float32 metres, zstd-compressed (datasets that ship floats)
`valid` is not stored: the canonical contract makes it exactly depth_m > 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import imagecodecs
import numpy as np
import xxhash
from numcodecs import Zstd

_ZSTD = Zstd(level=3)
_DZSTD_LEVEL = 3  # rgb: level 9 saves 0.3 % of the bytes for 2-3x the encode time (bench.ingest)
_DU16_LEVEL = 9  # dense depth: level 9 keeps NYU-like stores at 1.03x the source bytes (1.07x at level 3)
# auto keeps a PNG's own bytes when the faster dzstd payload would grow the store beyond this ratio.
MAX_BYTES_RATIO = 1.1
RGB_POLICIES = ("auto", "source", "dzstd", "raw")
_PNG_END = b"IEND\xaeB`\x82"
_JPEG_SOI, _JPEG_EOI = b"\xff\xd8", b"\xff\xd9"


CHECKSUM_BYTES = 16


def checksum(*payloads: bytes) -> bytes:
    """XXH3-128 (16 bytes) over the stored payloads, length-prefixed so payload boundaries count. It detects
    corruption (not tampering) at ~20x the speed of blake2b: 0.05 ms instead of 1.1 ms for a KITTI frame.
    Stored as 16 raw bytes (format 2): half the memory of its hex text in an 8M-row catalog."""
    h = xxhash.xxh3_128()
    for p in payloads:
        h.update(len(p).to_bytes(8, "little"))
        h.update(p)
    return h.digest()


class DecodeError(ValueError):
    """Bytes that do not decode to what they claim to be."""


def image_format(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:2] == _JPEG_SOI:
        return "jpeg"
    raise DecodeError("neither PNG nor JPEG (unknown magic bytes)")


# JPEG start-of-frame markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC), which share the range.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def image_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a PNG or JPEG header, decoding nothing (a bound on pixels is checked before any
    allocation); None for other bytes or a header that does not tell."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if data[12:16] != b"IHDR" or len(data) < 24:
            return None
        return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")
    if data[:2] != _JPEG_SOI:
        return None
    i = 2  # walk the segments: FF marker, then (except standalone markers) a 2-byte length that counts itself
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
        elif marker in _JPEG_SOF:  # FF Cn, length, precision, height, width
            return int.from_bytes(data[i + 5 : i + 7], "big"), int.from_bytes(data[i + 7 : i + 9], "big")
        elif marker == 0x01 or 0xD0 <= marker <= 0xD9:
            i += 2
        else:
            i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def _check_complete(data: bytes, fmt: str) -> None:
    # libpng and libjpeg fill a truncated image with grey and only warn: check the end marker ourselves.
    if fmt == "png" and not data.rstrip(b"\x00").endswith(_PNG_END):
        raise DecodeError("truncated PNG (no IEND chunk at the end)")
    if fmt == "jpeg" and _JPEG_EOI not in data[-64:]:
        raise DecodeError("truncated JPEG (no end-of-image marker)")


def decode_image(data: bytes) -> np.ndarray:
    """PNG/JPEG bytes -> uint8 HxWx3 RGB (8-bit colour) or HxW uint16/uint8 (single channel, as stored)."""
    fmt = image_format(data)
    _check_complete(data, fmt)
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise DecodeError(f"OpenCV could not decode this {fmt.upper()}")
    if arr.ndim == 3:
        if arr.dtype != np.uint8:
            raise DecodeError(f"colour image of dtype {arr.dtype}, expected 8-bit")
        code = cv2.COLOR_BGRA2RGB if arr.shape[2] == 4 else cv2.COLOR_BGR2RGB
        arr = cv2.cvtColor(arr, code)
    return arr


def decode_rgb(data: bytes) -> np.ndarray:
    arr = decode_image(data)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2) if arr.dtype == np.uint8 else None
        if arr is None:
            raise DecodeError("single-channel 16-bit image where a colour image was expected")
    return arr


@dataclass(frozen=True)
class Encoded:
    codec: str
    data: bytes


def _dzstd(rgb: np.ndarray) -> bytes:
    return imagecodecs.zstd_encode(imagecodecs.delta_encode(np.ascontiguousarray(rgb), axis=1), level=_DZSTD_LEVEL)


def encode_rgb(rgb: np.ndarray, policy: str, source: bytes | None, source_format: str | None) -> Encoded:
    """Bytes for `rgb` under a write policy (RGB_POLICIES); without source bytes, auto and source use dzstd."""
    if policy not in RGB_POLICIES:
        raise ValueError(f"unknown rgb codec policy {policy!r}; valid: {', '.join(RGB_POLICIES)}")
    has_source = source is not None and source_format in ("jpeg", "png")
    if policy == "raw":
        return Encoded("raw", _ZSTD.encode(np.ascontiguousarray(rgb)))
    if has_source and (policy == "source" or (policy == "auto" and source_format == "jpeg")):
        return Encoded(source_format, source)
    packed = _dzstd(rgb)
    if policy == "auto" and has_source and len(packed) > MAX_BYTES_RATIO * len(source):
        return Encoded(source_format, source)
    return Encoded("dzstd", packed)


def decode_rgb_payload(codec: str, data: bytes, height: int, width: int) -> np.ndarray:
    if codec in ("jpeg", "png"):
        return decode_rgb(data)
    if codec == "dzstd":
        deltas = np.frombuffer(imagecodecs.zstd_decode(data), np.uint8).reshape(height, width, 3)
        return imagecodecs.delta_decode(deltas, axis=1)
    if codec == "raw":
        return np.frombuffer(_ZSTD.decode(data), np.uint8).reshape(height, width, 3)
    raise DecodeError(f"unknown stored rgb codec {codec!r}")


def encode_depth(depth_m: np.ndarray, depth_scale: float | None) -> tuple[Encoded, float]:
    """Integers when they reproduce depth_m bit for bit (checked), float32 otherwise. Returns the scale used."""
    if depth_scale:
        raw = np.rint(depth_m.astype(np.float64) * depth_scale)
        if raw.max(initial=0) <= np.iinfo(np.uint16).max:
            raw16 = raw.astype(np.uint16)
            if np.array_equal(_u16_to_m(raw16, depth_scale), depth_m):
                plain = Encoded("u16", _ZSTD.encode(raw16))
                deltas = imagecodecs.delta_encode(raw16, axis=1)
                delta = Encoded("du16", imagecodecs.zstd_encode(deltas, level=_DU16_LEVEL))
                return min(plain, delta, key=lambda e: len(e.data)), float(depth_scale)
    return Encoded("f32", _ZSTD.encode(np.ascontiguousarray(depth_m, np.float32))), 0.0


def _u16_to_m(raw: np.ndarray, depth_scale: float) -> np.ndarray:
    # The same float32 division the adapters use, so integer depth round-trips exactly.
    return raw.astype(np.float32) / np.float32(depth_scale)


def depth_from_u16(raw: np.ndarray, depth_scale: float) -> np.ndarray:
    """Native integer depth -> metres (float32), 0 stays 0. Adapters call this so the store round-trips."""
    return _u16_to_m(raw, depth_scale)


def decode_depth_payload(codec: str, data: bytes, height: int, width: int, depth_scale: float) -> np.ndarray:
    if codec == "u16":
        return _u16_to_m(np.frombuffer(_ZSTD.decode(data), np.uint16).reshape(height, width), depth_scale)
    if codec == "du16":
        deltas = np.frombuffer(imagecodecs.zstd_decode(data), np.uint16).reshape(height, width)
        return _u16_to_m(imagecodecs.delta_decode(deltas, axis=1), depth_scale)
    if codec == "f32":
        return np.frombuffer(_ZSTD.decode(data), np.float32).reshape(height, width).copy()
    raise DecodeError(f"unknown stored depth codec {codec!r}")
