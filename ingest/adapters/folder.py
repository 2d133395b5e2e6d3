"""Your own RGB-D data in a simple folder layout.

Layout (--src is the folder):

    dataset.json          {"depth_scale": 1000, "sensor": "structured_light"}
    intrinsics.json       {"fx": 525.0, "fy": 525.0, "cx": 319.5, "cy": 239.5}
    rgb/<name>.jpg        colour image (.jpg, .jpeg or .png; 8-bit)
    depth/<name>.png      uint16 depth, metres = value / depth_scale, 0 = no measurement
    depth/<name>.npy      or float depth in metres (HxW or HxWx1); NaN, inf and values <= 0 = no measurement
    train.txt, val.txt, test.txt   optional split files, one <name> per line

Each image `rgb/<name>.*` pairs with exactly one `depth/<name>.png` or `depth/<name>.npy` of the same size
(pixel-aligned, i.e. depth registered to the colour camera). Depth is z along the optical axis, not the
distance along the ray.

dataset.json:
  depth_scale     units per metre of the uint16 PNGs (1000 for millimetres, 256 KITTI-style, 5000 TUM-style);
                  required when any depth is a PNG, ignored for .npy
  sensor          how the depth was measured: lidar, stereo, structured_light, tof, laser_scanner, sfm,
                  rendered or synthetic
  depth_invalid   optional raw PNG value that also means "no measurement" (e.g. 65535)

intrinsics.json: pinhole intrinsics in pixels of the images as stored (undistorted). One set for every
image, optionally overridden per image:
    {"fx": 525.0, "fy": 525.0, "cx": 319.5, "cy": 239.5,
     "per_image": {"kitchen_0007": {"fx": 600.0, "fy": 600.0, "cx": 320.0, "cy": 240.0}}}

Splits: without split files every image goes to --split (default train). With split files, each name goes
to the split whose file lists it; an image listed in no file or in two is quarantined, as is a listed name
without an image. `--split` then ingests only that split.

Example:
    python -m ingest.run --dataset folder --src /data/my_rgbd --store /data/store --name my_rgbd
"""

from __future__ import annotations

import io
import json
import posixpath
from collections.abc import Iterator
from typing import Any

import numpy as np

from ingest.base import AdapterInfo, Item, make_sample, read_depth_png, read_rgb
from ingest.registry import register
from ingest.source import Source, SourceError
from schemas.sample import SENSOR_KINDS, SPLITS, Sample

DATASET_FILE = "dataset.json"
INTRINSICS_FILE = "intrinsics.json"
_RGB_EXTS = (".jpg", ".jpeg", ".png")
_K_KEYS = ("fx", "fy", "cx", "cy")


def _read_json(src: Source, rel: str) -> dict[str, Any]:
    try:
        doc = json.loads(src.read_text(rel))
    except SourceError as exc:
        raise ValueError(
            f"{src.uri(rel)}: {exc.reason}; the folder layout needs it (ingest/adapters/folder.py)"
        ) from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{src.uri(rel)}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{src.uri(rel)}: expected a JSON object")
    return doc


def _k(entry: Any, where: str) -> tuple[float, float, float, float]:
    try:
        fx, fy, cx, cy = (float(entry[key]) for key in _K_KEYS)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where}: needs numeric fx, fy, cx, cy in pixels ({exc!r})") from None
    return fx, fy, cx, cy


def _stem(rel: str) -> str:
    return posixpath.splitext(posixpath.basename(rel))[0]


def read_float_depth(src: Source, rel: str) -> np.ndarray:
    """A .npy float depth map in metres -> float32 HxW, 0 where NaN, inf or <= 0."""
    raw = src.read_bytes(rel)
    try:
        depth = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        raise SourceError(rel, f"not a readable .npy array ({exc})") from None
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[:, :, 0]
    if depth.ndim != 2 or depth.dtype.kind != "f":
        raise SourceError(rel, f"depth .npy must be float HxW metres, got {depth.dtype} with shape {depth.shape}")
    return np.where(np.isfinite(depth) & (depth > 0), depth, 0).astype(np.float32)


@register
class Folder:
    info = AdapterInfo(
        name="folder",
        description="your own RGB-D: rgb/<name>.jpg|png + depth/<name>.png|npy + intrinsics.json + dataset.json",
        sensor="structured_light",
        depth_encoding="uint16 PNG / dataset.json depth_scale, or float32 .npy metres; 0 invalid",
        intrinsics="intrinsics.json fx, fy, cx, cy (per_image overrides)",
        splits="train.txt / val.txt / test.txt when present, else --split (default train)",
        eval_protocol="default",
        license="the data owner's",
        verified="layout defined by this module; tested with real TUM and NYU frames laid out in it",
    )

    def items(self, src: Source, split: str | None, dataset: str) -> Iterator[Item]:
        if split is not None and split not in SPLITS:
            raise ValueError(f"folder has splits {', '.join(SPLITS)}; got {split!r}")
        config = _read_json(src, DATASET_FILE)
        sensor = config.get("sensor")
        if sensor not in SENSOR_KINDS:
            raise ValueError(
                f"{src.uri(DATASET_FILE)}: sensor must be one of {', '.join(SENSOR_KINDS)}, got {sensor!r}"
            )
        scale = config.get("depth_scale")
        if scale is not None and not (isinstance(scale, (int, float)) and scale > 0):
            raise ValueError(f"{src.uri(DATASET_FILE)}: depth_scale must be a number > 0, got {scale!r}")
        invalid = config.get("depth_invalid")
        if invalid is not None and not (isinstance(invalid, int) and 0 <= invalid <= 65535):
            raise ValueError(f"{src.uri(DATASET_FILE)}: depth_invalid must be a uint16 value, got {invalid!r}")
        intrinsics = _read_json(src, INTRINSICS_FILE)
        k_default = _k(intrinsics, src.uri(INTRINSICS_FILE))
        per_image = intrinsics.get("per_image", {})
        if not isinstance(per_image, dict):
            raise ValueError(f"{src.uri(INTRINSICS_FILE)}: per_image must map image names to intrinsics")
        k_of = {name: _k(entry, f"{src.uri(INTRINSICS_FILE)} per_image {name}") for name, entry in per_image.items()}

        listed = self._split_lists(src)
        rgb_of: dict[str, str] = {}
        for rel in src.glob("rgb/*"):
            if rel.lower().endswith(_RGB_EXTS):
                rgb_of.setdefault(_stem(rel), rel)
        depth_of: dict[str, list[str]] = {}
        for rel in src.glob("depth/*"):
            if rel.endswith((".png", ".npy")):
                depth_of.setdefault(_stem(rel), []).append(rel)

        for name in sorted(set(rgb_of) | {n for names in listed.values() for n in names}):
            splits = [s for s, names in listed.items() if name in names]
            error = None
            if not listed:
                item_split = split or "train"
            elif len(splits) == 1:
                item_split = splits[0]
            else:
                item_split = split or "train"
                where = " and ".join(f"{s}.txt" for s in splits) if splits else "no split file"
                error = (
                    rgb_of.get(name, f"rgb/{name}"),
                    f"image listed in {where}; list each image in exactly one split file",
                )
            if split is not None and item_split != split:
                continue
            depths = depth_of.get(name, [])
            if len(depths) > 1:
                error = error or (depths[0], f"two depth files for {name!r}: {depths}; keep one")
            yield Item(
                dataset=dataset,
                split=item_split,
                scene="",
                frame=name,
                camera="camera",
                files={
                    "rgb": rgb_of.get(name, f"rgb/{name}.png"),
                    "depth": depths[0] if depths else f"depth/{name}.png",
                },
                extra={
                    "k_px": k_of.get(name, k_default),
                    "depth_scale": scale,
                    "depth_invalid": invalid,
                    "sensor": sensor,
                    "error": error,
                },
            )

    @staticmethod
    def _split_lists(src: Source) -> dict[str, set[str]]:
        listed = {}
        for name in SPLITS:
            rel = f"{name}.txt"
            if src.exists(rel):
                listed[name] = {_stem(line.strip()) for line in src.read_text(rel).splitlines() if line.strip()}
        return listed

    def load(self, src: Source, item: Item) -> Sample:
        extra = item.extra
        if extra["error"]:
            raise SourceError(*extra["error"])
        rgb, data, fmt = read_rgb(src, item.files["rgb"])
        depth_rel = item.files["depth"]
        scale: float | None = None  # float depth is stored as float; integer depth keeps its scale
        if depth_rel.endswith(".npy"):
            depth = read_float_depth(src, depth_rel)
        elif extra["depth_scale"] is None:
            raise SourceError(depth_rel, f"PNG depth needs depth_scale (units per metre) in {DATASET_FILE}")
        else:
            scale = float(extra["depth_scale"])
            depth = read_depth_png(src, depth_rel, scale, extra["depth_invalid"])
        if depth.shape != rgb.shape[:2]:
            raise SourceError(depth_rel, f"depth {depth.shape} and rgb {rgb.shape[:2]} sizes differ")
        return make_sample(self.info, item, src, rgb, depth, extra["k_px"], data, fmt, scale, sensor=extra["sensor"])
