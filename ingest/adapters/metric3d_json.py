"""Metric3D's annotation files: `{"files": [{"rgb", "depth", "cam_in": [fx, fy, cx, cy], "depth_scale"}]}`.

--src is the JSON file. Paths resolve against the JSON's folder; a path that carries its source
repository's prefix (the official demo files say `data/kitti_demo/rgb/...`) resolves against the longest
suffix that exists under that folder. Nothing outside the folder is ever read.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator
from dataclasses import replace

from ingest.base import AdapterInfo, Item, make_sample, read_depth_png, read_rgb
from ingest.registry import register
from ingest.source import Source, SourceError
from schemas.sample import Sample

# depth_scale -> the sensor that convention comes from (Metric3D's own files carry no sensor field).
_SENSOR_BY_SCALE = {256.0: "lidar", 1000.0: "structured_light", 5000.0: "structured_light"}


def _folder(src: Source) -> tuple[Source, str]:
    url = src.url.rstrip("/")
    return replace(src, url=posixpath.dirname(url) or "."), posixpath.basename(url)  # the same options and limits


def resolve_suffix(root: Source, path: str) -> str:
    """The longest suffix of `path` that exists under root (the path itself first)."""
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise SourceError(path, "path escapes the dataset root; only files under the JSON's folder are read")
    for start in range(len(parts)):
        rel = "/".join(parts[start:])
        if root.exists(rel):
            return rel
    raise SourceError(path, "file not found under the annotation file's folder (nor any suffix of it)")


@register
class Metric3dJson:
    info = AdapterInfo(
        name="metric3d_json",
        description="Metric3D annotation JSON (files: rgb, depth, cam_in, depth_scale), any dataset",
        sensor="lidar",
        depth_encoding="uint16 PNG / depth_scale (per entry)",
        intrinsics="cam_in [fx, fy, cx, cy] per entry",
        splits="given by --split (default: test for test_*.json, else train)",
        verified="metric3d_demo kitti_demo and nyu_demo annotation files",
    )

    def items(self, src: Source, split: str | None, dataset: str) -> Iterator[Item]:
        root, name = _folder(src)
        split = split or ("test" if name.startswith("test") else "train")
        try:
            entries = json.loads(root.read_text(name))["files"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(
                f"{src.url}: not a Metric3D annotation file ({exc}); expected {{'files': [...]}}"
            ) from None
        for n, entry in enumerate(entries):
            try:
                rgb, depth = resolve_suffix(root, entry["rgb"]), resolve_suffix(root, entry["depth"])
                k_px, scale = [float(v) for v in entry["cam_in"]], float(entry["depth_scale"])
            except SourceError as exc:
                # Unresolvable paths still become items, so the load quarantines them with the reason.
                rgb, depth, k_px, scale = entry.get("rgb", ""), entry.get("depth", ""), [], 0.0
                entry = {**entry, "_error": (exc.file, exc.reason)}
            except (KeyError, TypeError, ValueError) as exc:
                rgb, depth, k_px, scale = str(entry.get("rgb", n)), "", [], 0.0
                entry = {**entry, "_error": (name, f"entry {n}: {exc!r} (needs rgb, depth, cam_in, depth_scale)")}
            scene, frame = posixpath.split(rgb)
            yield Item(
                dataset=dataset,
                split=split,
                scene=scene,
                frame=posixpath.splitext(frame)[0],
                camera=depth,  # the label file is part of the key: an index may pair one image with several
                files={"rgb": rgb, "depth": depth},
                extra={"k_px": k_px, "depth_scale": scale, "error": entry.get("_error")},
            )

    def load(self, src: Source, item: Item) -> Sample:
        if item.extra.get("error"):
            raise SourceError(*item.extra["error"])
        root, _ = _folder(src)
        scale = item.extra["depth_scale"]
        if len(item.extra["k_px"]) != 4:
            raise SourceError(item.files["rgb"], f"cam_in must have 4 values, got {item.extra['k_px']}")
        rgb, data, fmt = read_rgb(root, item.files["rgb"])
        depth = read_depth_png(root, item.files["depth"], scale)
        if depth.shape != rgb.shape[:2]:
            raise SourceError(item.files["depth"], f"depth {depth.shape} and rgb {rgb.shape[:2]} sizes differ")
        sensor = _SENSOR_BY_SCALE.get(scale, self.info.sensor)
        return make_sample(self.info, item, root, rgb, depth, tuple(item.extra["k_px"]), data, fmt, scale, sensor)
