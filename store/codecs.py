"""How sample arrays become bytes and back. The only module that knows the payload encodings.

RGB codecs, as written in the catalog's rgb_codec column:
  jpeg    the dataset's own JPEG file, byte for byte (re-encoding it losslessly costs 4-7x the bytes)
  png     the dataset's own PNG file, byte for byte
  dzstd   uint8 HxWx3, horizontal byte delta then zstd level 1: lossless, about the size of the source
          PNG (0.98x on KITTI) and 4-5x faster to decode (docs/performance.md has the measurements)
  raw     uint8 HxWx3, zstd level 3 (no delta: 1.2x PNG bytes)
Write policies (`--rgb-codec`): auto (default: keep JPEG; PNG -> dzstd when within 1.1x of the PNG's
bytes, else keep the PNG), source (keep the file's bytes), dzstd, raw.
Depth codecs (the smaller of the candidates is kept, per sample):
  u16     integer depth raw = round(depth_m * depth_scale) as uint16, zstd (lossless for datasets that ship
          integers: KITTI /256, NYU mm, ...)
  du16    the same integers, horizontal delta then zstd level 9; best for dense maps (smooth surfaces)
  f32     float32 metres, zstd-compressed (datasets that ship floats)
  pu16    sparse maps (valid fraction below schemas.sample.SPARSE_VALID_FRAC) as points: the valid pixels'
          row-major indices and their uint16 integers; a loader never scans the dense map
  pf32    the same with float32 metres (projected lidar of datasets that ship floats)
Points payload: uint32 count, uint32 length of the index part, then zstd(byteshuffle(index gaps as uint32)),
then zstd(byteshuffle(value deltas as uint16)) or zstd(byteshuffle(float32 values)). Points are 0.64-0.86x
the bytes of the u16 map at every valid fraction below 0.5 measured (KITTI, NYU thinned, nuScenes-like); maps
of up to 65,536 pixels keep the map when it is smaller (two zstd frames' overhead can outweigh the saving).
`valid` is not stored: the canonical contract makes it exactly depth_m > 0.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import imagecodecs
import numpy as np
import xxhash
from numcodecs import Zstd

from schemas.sample import SPARSE_VALID_FRAC

_ZSTD = Zstd(level=3)
_DZSTD_LEVEL = 1  # rgb: on KITTI frames level 1 is 1 % smaller than 3, 2-3x faster to encode, 15 % faster to decode
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


# PNG colour types libpng decodes without any transform: greyscale (0) and truecolour (2). For these libpng's
# output is exactly OpenCV's (RGB instead of BGR), 20-25 % faster than cv2.imdecode + cvtColor on KITTI frames.
_PNG_PLAIN = {(0, 8), (0, 16), (2, 8)}  # (colour type, bit depth)


def _decode_plain_png(data: bytes) -> np.ndarray | None:
    if len(data) < 26 or (data[25], data[24]) not in _PNG_PLAIN:
        return None
    try:
        return imagecodecs.png_decode(data)
    except imagecodecs.PngError as exc:
        raise DecodeError(f"libpng could not decode this PNG: {exc}") from exc


def decode_image(data: bytes) -> np.ndarray:
    """PNG/JPEG bytes -> uint8 HxWx3 RGB (8-bit colour) or HxW uint16/uint8 (single channel, as stored)."""
    fmt = image_format(data)
    _check_complete(data, fmt)
    if fmt == "png" and (plain := _decode_plain_png(data)) is not None:
        return plain
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
    """Stored RGB bytes -> uint8 HxWx3 RGB."""
    if codec == "jpeg":
        # Checked at ingest to decode as colour: libjpeg writes RGB directly (no BGR pass, no channel swap).
        _check_complete(data, "jpeg")
        rgb = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)
        if rgb is None:
            raise DecodeError("OpenCV could not decode this JPEG")
        return rgb
    if codec == "png":
        return decode_rgb(data)
    if codec == "dzstd":
        deltas = np.frombuffer(imagecodecs.zstd_decode(data), np.uint8).reshape(height, width, 3)
        return imagecodecs.delta_decode(deltas, axis=1)
    if codec == "raw":
        return np.frombuffer(_ZSTD.decode(data), np.uint8).reshape(height, width, 3)
    raise DecodeError(f"unknown stored rgb codec {codec!r}")


POINT_CODECS = ("pu16", "pf32")
_POINTS_HEADER = struct.Struct("<II")  # number of points, bytes of the index part
_POINTS_LEVEL = 3  # level 9 saves 2-3 % here for 3x the encode time
# Sparse maps above this many pixels are stored as points without trying the map: points were 0.64-0.86x the
# map's bytes at every valid fraction below 0.5 measured on real maps (KITTI 375x1242, nuScenes-like 900x1600,
# NYU thinned), and compressing the map too cost 2-4 ms per sample, a tenth of ingest.
_POINTS_ALWAYS_PX = 1 << 16


@dataclass(frozen=True)
class DepthPoints:
    """A sparse depth map as its valid pixels: row-major indices (int64, ascending) and stored values, uint16
    integers (metres = value / scale) or float32 metres (scale 0)."""

    hw: tuple[int, int]
    index: np.ndarray
    values: np.ndarray
    scale: float

    def depth_m(self) -> np.ndarray:
        """The points' depths in metres (float32), by the same arithmetic as the dense decode."""
        return _u16_to_m(self.values, self.scale) if self.scale else self.values

    def dense(self) -> np.ndarray:
        """The HxW float32 depth map in metres (0 where invalid)."""
        out = np.zeros(self.hw[0] * self.hw[1], np.float32)
        out[self.index] = self.depth_m()
        return out.reshape(self.hw)


@dataclass(frozen=True)
class DepthGrid:
    """A dense depth map as stored: HxW uint16 integers (metres = value / scale) or float32 metres (scale 0)."""

    values: np.ndarray
    scale: float

    def depth_m(self) -> np.ndarray:
        """The HxW float32 depth map in metres."""
        return _u16_to_m(self.values, self.scale) if self.scale else self.values


def points_of(depth: np.ndarray, scale: float = 0.0) -> DepthPoints:
    """The valid (non-zero) pixels of a stored-value map as DepthPoints."""
    index = np.flatnonzero(depth != 0)  # on a bool mask: 4x faster than on the values
    return DepthPoints(depth.shape, index, depth.ravel()[index], scale)


def _encode_points(index: np.ndarray, stored: np.ndarray) -> bytes:
    """Ascending row-major indices of the valid pixels and their stored values (uint16 or float32)."""
    gaps = np.diff(index, prepend=0).astype(np.uint32)  # the first index, then the steps (< 2**32 pixels)
    if stored.dtype == np.uint16:
        stored = imagecodecs.delta_encode(stored)  # neighbouring points lie on nearby surfaces
    index_part = imagecodecs.zstd_encode(imagecodecs.byteshuffle_encode(gaps).tobytes(), level=_POINTS_LEVEL)
    value_part = imagecodecs.zstd_encode(imagecodecs.byteshuffle_encode(stored).tobytes(), level=_POINTS_LEVEL)
    return _POINTS_HEADER.pack(index.size, len(index_part)) + index_part + value_part


def _decode_points(codec: str, data: bytes, height: int, width: int, depth_scale: float) -> DepthPoints:
    if len(data) < _POINTS_HEADER.size:
        raise DecodeError(f"{codec} payload of {len(data)} bytes is shorter than its header")
    count, index_bytes = _POINTS_HEADER.unpack_from(data)
    body = memoryview(data)[_POINTS_HEADER.size :]
    dtype = np.uint16 if codec == "pu16" else np.float32
    try:
        gaps = np.frombuffer(imagecodecs.zstd_decode(body[:index_bytes]), np.uint32)
        stored = np.frombuffer(imagecodecs.zstd_decode(body[index_bytes:]), dtype)
    except imagecodecs.ZstdError as exc:
        raise DecodeError(f"{codec} payload does not decompress: {exc}") from exc
    if gaps.size != count or stored.size != count:
        raise DecodeError(f"{codec} payload holds {gaps.size} indices and {stored.size} values, header says {count}")
    gaps = imagecodecs.byteshuffle_decode(gaps)
    index = np.cumsum(gaps, dtype=np.int64)
    stored = imagecodecs.byteshuffle_decode(stored)
    if codec == "pu16":
        stored = imagecodecs.delta_decode(stored)
    if count and (index[-1] >= height * width or not (gaps[1:] > 0).all()):  # ascending: every step > 0
        raise DecodeError(f"{codec} payload has point indices outside the {width}x{height} map or out of order")
    return DepthPoints((height, width), index, stored, depth_scale if codec == "pu16" else 0.0)


def _as_u16(depth_m: np.ndarray, depth_scale: float) -> np.ndarray | None:
    """The integers round(depth_m * depth_scale) as uint16 when they give back depth_m bit for bit, else None."""
    raw = np.rint(depth_m * np.float32(depth_scale))  # exact in float32: values <= 65535, 24-bit mantissas
    if raw.max(initial=0) > np.iinfo(np.uint16).max:
        return None
    raw16 = raw.astype(np.uint16)
    return raw16 if np.array_equal(_u16_to_m(raw16, depth_scale), depth_m) else None


def encode_depth(depth_m: np.ndarray, depth_scale: float | None) -> tuple[Encoded, float]:
    """Integers when they reproduce depth_m bit for bit (checked), float32 otherwise; sparse maps as points
    unless the map is smaller. Returns the scale used (0 for float32)."""
    flat = np.ascontiguousarray(depth_m, np.float32).reshape(-1)
    index = np.flatnonzero(flat != 0)  # on a bool mask: 4x faster than on float32 values
    if index.size >= SPARSE_VALID_FRAC * flat.size:
        raw16 = _as_u16(depth_m, depth_scale) if depth_scale else None
        if raw16 is None:
            return Encoded("f32", _ZSTD.encode(flat)), 0.0
        deltas = imagecodecs.delta_encode(raw16, axis=1)
        candidates = [
            Encoded("u16", _ZSTD.encode(raw16)),
            Encoded("du16", imagecodecs.zstd_encode(deltas, level=_DU16_LEVEL)),
        ]
        return min(candidates, key=lambda e: len(e.data)), float(depth_scale)
    # Sparse: points; only the valid values are converted and checked. Small maps also try the plain map (the
    # delta map is never the smaller for sparse maps), whose single zstd frame can beat the points' two.
    values = flat[index]
    raw16 = _as_u16(values, depth_scale) if depth_scale else None
    stored, scale = (values, 0.0) if raw16 is None else (raw16, float(depth_scale))
    points = Encoded("pf32" if raw16 is None else "pu16", _encode_points(index, stored))
    if flat.size > _POINTS_ALWAYS_PX:
        return points, scale
    dense = np.zeros(flat.size, stored.dtype)
    dense[index] = stored
    return min(
        [points, Encoded("f32" if raw16 is None else "u16", _ZSTD.encode(dense))], key=lambda e: len(e.data)
    ), scale


def _u16_to_m(raw: np.ndarray, depth_scale: float) -> np.ndarray:
    # The same float32 division the adapters use, so integer depth round-trips exactly.
    return raw.astype(np.float32) / np.float32(depth_scale)


def depth_from_u16(raw: np.ndarray, depth_scale: float) -> np.ndarray:
    """Native integer depth -> metres (float32), 0 stays 0. Adapters call this so the store round-trips."""
    return _u16_to_m(raw, depth_scale)


def decode_depth_stored(
    codec: str, data: bytes, height: int, width: int, depth_scale: float
) -> DepthPoints | DepthGrid:
    """Depth as stored, for loaders: points for the point codecs, else the map of stored values."""
    if codec in POINT_CODECS:
        return _decode_points(codec, data, height, width, depth_scale)
    if codec == "u16":
        return DepthGrid(np.frombuffer(_ZSTD.decode(data), np.uint16).reshape(height, width), depth_scale)
    if codec == "du16":
        deltas = np.frombuffer(imagecodecs.zstd_decode(data), np.uint16).reshape(height, width)
        return DepthGrid(imagecodecs.delta_decode(deltas, axis=1), depth_scale)
    if codec == "f32":
        return DepthGrid(np.frombuffer(_ZSTD.decode(data), np.float32).reshape(height, width).copy(), 0.0)
    raise DecodeError(f"unknown stored depth codec {codec!r}")


def decode_depth_payload(codec: str, data: bytes, height: int, width: int, depth_scale: float) -> np.ndarray:
    """Depth as the canonical HxW float32 map in metres, whatever the codec."""
    stored = decode_depth_stored(codec, data, height, width, depth_scale)
    return stored.dense() if isinstance(stored, DepthPoints) else stored.depth_m()
