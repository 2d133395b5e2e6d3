"""SUN RGB-D (SUNRGBD.zip) frame folders, raw depth with the dataset's 3-bit circular shift.

--src is the SUNRGBD folder (or any folder above frame folders). A frame folder sits at varying depth,
e.g. kv1/NYUdata/NYU0001/, and holds:
  image/<name>.jpg     colour
  depth/<name>.png     uint16, stored rotated: mm = (v >> 3) | (v << 13) in 16 bits; depth_m = mm / 1000
                       (depth_bfx/ holds the hole-filled copy, which is not ground truth and is not read)
  intrinsics.txt       3x3 K, row-major, whitespace-separated (pixels)
A frame folder without intrinsics.txt is quarantined: no intrinsics are guessed. The toolbox clamps depth
at 8 m when it builds point clouds; that clamp is not applied here (depth is kept as measured).
Sensor by sub-collection: kv1 Kinect v1, xtion Asus Xtion (structured light), kv2 Kinect v2 (time of
flight), realsense (taken as active stereo). The official train/test split ships in the toolbox
(allsplit.mat), not in SUNRGBD.zip: every frame gets --split (default train).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator

import numpy as np

from ingest.base import AdapterInfo, Item, make_sample, read_rgb
from ingest.registry import register
from ingest.source import Source, SourceError
from schemas.sample import Sample
from store.codecs import DecodeError, decode_image, depth_from_u16

DEPTH_SCALE = 1000.0  # after un-rotating, millimetres
SENSORS = {"kv1": "structured_light", "xtion": "structured_light", "kv2": "tof", "realsense": "stereo"}


def unrotate_depth(raw: np.ndarray) -> np.ndarray:
    """SUN RGB-D stored value -> millimetres: a 3-bit right rotation of the 16-bit word."""
    v = raw.astype(np.uint16)
    return ((v >> 3) | (v << 13)).astype(np.uint16)


def parse_intrinsics(text: str, file: str) -> tuple[float, float, float, float]:
    try:
        k = np.asarray([float(v) for v in text.split()], np.float64)
    except ValueError:
        raise SourceError(file, "intrinsics.txt must hold 9 numbers (3x3 K, row-major)") from None
    if k.size != 9:
        raise SourceError(file, f"intrinsics.txt has {k.size} numbers, expected 9 (3x3 K, row-major)")
    k = k.reshape(3, 3)
    if k[0, 1] != 0 or k[2].tolist() != [0.0, 0.0, 1.0]:
        raise SourceError(file, f"intrinsics.txt is not a pinhole K without skew: {k.tolist()}")
    return k[0, 0], k[1, 1], k[0, 2], k[1, 2]


@register
class Sunrgbd:
    info = AdapterInfo(
        name="sunrgbd",
        description="SUN RGB-D frame folders (image/, depth/ with 3-bit circular shift -> mm, intrinsics.txt)",
        sensor="structured_light",
        depth_encoding="uint16 PNG rotated 3 bits: mm = (v >> 3) | (v << 13), / 1000 m, 0 invalid",
        intrinsics="<frame>/intrinsics.txt (3x3 K, row-major); missing file -> quarantined",
        splits="not in SUNRGBD.zip (toolbox allsplit.mat): every frame gets --split (default train)",
        eval_protocol="default",
        license="not stated by the source",
        # kv1/NYUdata holds the 1449 labelled NYUv2 frames (the 654 test frames included), taken from the raw scenes.
        shares=(("nyu", "NYUv2 frames"), ("nyu_raw", "NYUv2 scenes")),
        verified=(
            "one Open3D SUN RGB-D frame (real): depth decode matches the sample's README; the sample has no "
            "intrinsics.txt, so the intrinsics format (3x3 row-major) and the realsense sensor kind are unverified"
        ),
    )

    def items(self, src: Source, split: str | None, dataset: str) -> Iterator[Item]:
        split = split or "train"
        depth_of = {posixpath.dirname(posixpath.dirname(rel)): rel for rel in src.glob("**/depth/*.png")}
        for rel in src.glob("**/image/*.jpg"):
            frame_dir = posixpath.dirname(posixpath.dirname(rel))
            parts = frame_dir.split("/")
            sensor = next((p for p in parts if p in SENSORS), "")
            yield Item(
                dataset=dataset,
                split=split,
                scene=frame_dir,
                frame=posixpath.basename(rel).removesuffix(".jpg"),
                camera=sensor,
                files={
                    "rgb": rel,
                    "depth": depth_of.get(frame_dir, posixpath.join(frame_dir, "depth")),
                    "intrinsics": posixpath.join(frame_dir, "intrinsics.txt"),
                },
            )

    def load(self, src: Source, item: Item) -> Sample:
        k_px = parse_intrinsics(src.read_text(item.files["intrinsics"]), item.files["intrinsics"])
        depth_rel = item.files["depth"]
        if not depth_rel.endswith(".png"):
            raise SourceError(depth_rel, "no depth PNG in the frame folder")
        try:
            raw = decode_image(src.read_bytes(depth_rel))
        except DecodeError as exc:
            raise SourceError(depth_rel, str(exc)) from None
        if raw.ndim != 2 or raw.dtype != np.uint16:
            raise SourceError(depth_rel, f"depth PNG must be single-channel uint16, got {raw.dtype} {raw.shape}")
        depth = depth_from_u16(unrotate_depth(raw), DEPTH_SCALE)
        rgb, data, fmt = read_rgb(src, item.files["rgb"])
        if depth.shape != rgb.shape[:2]:
            raise SourceError(depth_rel, f"depth {depth.shape} and rgb {rgb.shape[:2]} sizes differ")
        sensor = SENSORS.get(item.camera, self.info.sensor)
        return make_sample(self.info, item, src, rgb, depth, k_px, data, fmt, DEPTH_SCALE, sensor=sensor)
