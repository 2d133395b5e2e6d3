"""ClearGrasp real captures (cleargrasp-dataset-test-val): RealSense frames of transparent objects and of
opaque (spray-painted) replicas placed identically, depth as OpenEXR float metres.

--src holds the real folders as the archive unpacks (or one camera folder of them):
  real-val/d435/, real-test/d415/, real-test/d435/   each with camera_intrinsics.yaml (fx, fy, cx, cy, xres, yres)
  <id>-opaque-rgb-img.jpg       + <id>-opaque-depth-img.exr       clean sensor frame of the opaque scene
  <id>-transparent-rgb-img.jpg  + <id>-transparent-depth-img.exr  raw sensor depth, wrong on the glass
Two samples per frame: camera `opaque` (opaque image, opaque depth) and `transparent` (transparent image,
opaque depth). The opaque depth is ClearGrasp's ground truth for both: the camera did not move between the
two captures. The transparent frame's own depth is not ground truth and is not read.
EXR depth: single-part scanline file, half or float channels (R, G, B identical), metres; NaN, inf and
values <= 0 are invalid. OpenCV's wheel here is built without OpenEXR, so a minimal reader for the
NONE / ZIPS / ZIP compressions (the ones ClearGrasp writes) lives in this module.
"""

from __future__ import annotations

import posixpath
import struct
import zlib
from collections.abc import Iterator

import numpy as np
import yaml

from ingest.base import AdapterInfo, Item, make_sample, read_rgb
from ingest.registry import register
from ingest.source import Source, SourceError
from schemas.sample import Sample

_SPLITS = {"real-val": "val", "real-test": "test"}
_EXR_MAGIC = 20000630
_EXR_TYPES = {0: np.dtype("<u4"), 1: np.dtype("<f2"), 2: np.dtype("<f4")}  # UINT, HALF, FLOAT
_EXR_LINES_PER_CHUNK = {0: 1, 2: 1, 3: 16}  # NONE, ZIPS, ZIP


class ExrError(ValueError):
    """The bytes are not an OpenEXR file this reader handles."""


def _exr_header(data: bytes) -> tuple[dict[str, bytes], int]:
    """Attribute name -> raw value, and the offset just past the header."""
    if len(data) < 8 or struct.unpack_from("<i", data)[0] != _EXR_MAGIC:
        raise ExrError("not an OpenEXR file (bad magic number)")
    flags = struct.unpack_from("<i", data, 4)[0]
    if flags & 0x1A00:  # bit 9 tiled, bit 11 deep data, bit 12 multi-part
        raise ExrError(f"only single-part scanline EXR is supported (version flags {flags:#x})")
    attrs: dict[str, bytes] = {}
    pos = 8
    try:
        while data[pos] != 0:
            end = data.index(b"\0", pos)
            name = data[pos:end].decode("latin-1")
            end_type = data.index(b"\0", end + 1)
            (size,) = struct.unpack_from("<i", data, end_type + 1)
            start = end_type + 5
            attrs[name] = data[start : start + size]
            pos = start + size
    except (IndexError, ValueError, struct.error):
        raise ExrError("truncated OpenEXR header") from None
    return attrs, pos + 1


def _exr_channels(raw: bytes) -> list[tuple[str, np.dtype]]:
    channels, pos = [], 0
    while pos < len(raw) and raw[pos] != 0:
        end = raw.index(b"\0", pos)
        (kind,) = struct.unpack_from("<i", raw, end + 1)
        xs, ys = struct.unpack_from("<ii", raw, end + 9)
        if kind not in _EXR_TYPES or (xs, ys) != (1, 1):
            raise ExrError(f"channel type {kind} / sampling {xs}x{ys} is not supported")
        channels.append((raw[pos:end].decode("latin-1"), _EXR_TYPES[kind]))
        pos = end + 17
    return channels


def _unzip_chunk(payload: bytes, expected: int) -> bytes:
    """EXR ZIP/ZIPS chunk: zlib, then undo the byte-delta predictor and the even/odd byte split."""
    if len(payload) == expected:
        return payload  # stored uncompressed when compression would not shrink it
    # At most one byte past the expected size is inflated: a crafted chunk cannot expand beyond it.
    t = np.frombuffer(zlib.decompressobj().decompress(payload, expected + 1), np.uint8).astype(np.int64)
    if t.size != expected:
        raise ExrError(f"chunk inflates to {t.size} bytes, expected {expected}")
    t[1:] -= 128
    t = np.cumsum(t) % 256
    half = (t.size + 1) // 2
    out = np.empty(t.size, np.uint8)
    out[0::2] = t[:half]
    out[1::2] = t[half:]
    return out.tobytes()


def exr_size(data: bytes) -> tuple[int, int]:
    """(height, width) of an OpenEXR file's data window, from its header alone."""
    attrs, _ = _exr_header(data)
    try:
        xmin, ymin, xmax, ymax = struct.unpack("<iiii", attrs["dataWindow"])
    except (KeyError, struct.error) as exc:
        raise ExrError(f"missing or bad header attribute ({exc!r})") from None
    return ymax - ymin + 1, xmax - xmin + 1


def read_exr_channel(data: bytes, channel: str = "R") -> np.ndarray:
    """One channel of a scanline OpenEXR file as float32 HxW."""
    attrs, pos = _exr_header(data)
    try:
        channels = _exr_channels(attrs["channels"])
        compression = attrs["compression"][0]
        xmin, ymin, xmax, ymax = struct.unpack("<iiii", attrs["dataWindow"])
    except (KeyError, IndexError, ValueError, struct.error) as exc:
        raise ExrError(f"missing or bad header attribute ({exc!r})") from None
    if compression not in _EXR_LINES_PER_CHUNK:
        raise ExrError(f"compression {compression} is not supported (NONE, ZIPS, ZIP are)")
    names = [name for name, _ in channels]
    if channel not in names:
        raise ExrError(f"no channel {channel!r} (channels: {names})")
    width, height = xmax - xmin + 1, ymax - ymin + 1
    line_bytes = width * sum(dt.itemsize for _, dt in channels)
    index = names.index(channel)
    start = width * sum(dt.itemsize for _, dt in channels[:index])
    dtype = channels[index][1]
    lines = _EXR_LINES_PER_CHUNK[compression]
    n_chunks = -(-height // lines)
    out = np.empty((height, width), np.float32)
    try:
        offsets = struct.unpack_from(f"<{n_chunks}Q", data, pos)
        for offset in offsets:
            y, size = struct.unpack_from("<ii", data, offset)
            payload = data[offset + 8 : offset + 8 + size]
            if len(payload) != size:
                raise ExrError(f"chunk at line {y} is truncated")
            rows = min(lines, ymax + 1 - y)
            block = payload if compression == 0 else _unzip_chunk(payload, rows * line_bytes)
            if len(block) != rows * line_bytes:
                raise ExrError(f"chunk at line {y} holds {len(block)} bytes, expected {rows * line_bytes}")
            table = np.frombuffer(block, np.uint8).reshape(rows, line_bytes)
            values = table[:, start : start + width * dtype.itemsize].copy().view(dtype)
            out[y - ymin : y - ymin + rows] = values.astype(np.float32)
    except (struct.error, zlib.error) as exc:
        raise ExrError(f"truncated or corrupt OpenEXR data ({exc})") from None
    return out


def read_depth_exr(src: Source, rel: str) -> np.ndarray:
    """ClearGrasp EXR depth -> float32 metres, 0 where NaN, inf or <= 0."""
    data = src.read_bytes(rel)
    try:
        src.check_pixels(rel, *exr_size(data))  # before the reader allocates the declared window
        depth = read_exr_channel(data, "R")
    except ExrError as exc:
        raise SourceError(rel, str(exc)) from None
    return np.where(np.isfinite(depth) & (depth > 0), depth, 0).astype(np.float32)


def read_intrinsics(src: Source, rel: str) -> tuple[tuple[float, float, float, float], tuple[int, int]]:
    """((fx, fy, cx, cy), (height, width)) from camera_intrinsics.yaml."""
    try:
        doc = yaml.safe_load(src.read_text(rel))
        k_px = (float(doc["fx"]), float(doc["fy"]), float(doc["cx"]), float(doc["cy"]))
        hw = (int(doc["yres"]), int(doc["xres"]))
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise SourceError(rel, f"expected fx, fy, cx, cy, xres, yres ({exc!r})") from None
    return k_px, hw


@register
class Cleargrasp:
    info = AdapterInfo(
        name="cleargrasp",
        description="ClearGrasp real val/test (RealSense D415/D435), opaque-replica EXR depth as ground truth",
        sensor="stereo",
        depth_encoding="OpenEXR half float metres (channel R), NaN invalid",
        intrinsics="camera_intrinsics.yaml fx, fy, cx, cy (per camera folder)",
        splits="val (real-val), test (real-test)",
        eval_protocol="default",
        license="Apache-2.0 (repository); dataset terms not checked",
        verified=(
            "real-val/d435 frames 000000080 and 000000123 (real): EXR decode of all four depth files matches the "
            "sample's README; real-test/d415 layout from the ClearGrasp repository, not checked"
        ),
    )

    def items(self, src: Source, split: str | None, dataset: str) -> Iterator[Item]:
        if split is not None and split not in _SPLITS.values():
            raise ValueError(f"cleargrasp has splits {', '.join(_SPLITS.values())}; got {split!r}")
        found = src.glob("*-opaque-rgb-img.jpg") + src.glob("real-*/*/*-opaque-rgb-img.jpg")
        for rel in found:
            folder, name = posixpath.split(rel)
            top = folder.split("/")[0] if folder else posixpath.basename(posixpath.dirname(src.url.rstrip("/")))
            item_split = _SPLITS.get(top, "val")
            if split is not None and item_split != split:
                continue
            frame = name.removesuffix("-opaque-rgb-img.jpg")
            for variant in ("opaque", "transparent"):
                yield Item(
                    dataset=dataset,
                    split=item_split,
                    scene=folder or posixpath.basename(src.url.rstrip("/")),
                    frame=frame,
                    camera=variant,
                    files={
                        "rgb": posixpath.join(folder, f"{frame}-{variant}-rgb-img.jpg"),
                        "depth": posixpath.join(folder, f"{frame}-opaque-depth-img.exr"),
                        "intrinsics": posixpath.join(folder, "camera_intrinsics.yaml"),
                    },
                )

    def load(self, src: Source, item: Item) -> Sample:
        k_px, hw = read_intrinsics(src, item.files["intrinsics"])
        rgb, data, fmt = read_rgb(src, item.files["rgb"])
        if rgb.shape[:2] != hw:
            raise SourceError(item.files["rgb"], f"image {rgb.shape[:2]} differs from the intrinsics' {hw}")
        depth = read_depth_exr(src, item.files["depth"])
        if depth.shape != rgb.shape[:2]:
            raise SourceError(item.files["depth"], f"depth {depth.shape} and rgb {rgb.shape[:2]} sizes differ")
        return make_sample(self.info, item, src, rgb, depth, k_px, data, fmt)
