"""Cityscapes disparity (mcordts/cityscapesScripts naming `{city}_{seq:06d}_{frame:06d}_{type}{ext}`):
  leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png                 RGB 2048x1024
  disparity/<split>/<city>/<stem>_disparity.png                     uint16: d = (p - 1) / 256 px, p = 0 invalid
  camera/<split>/<city>/<stem>_camera.json                          intrinsic fx fy u0 v0, extrinsic baseline (m)
  leftImg8bit_sequence/, disparity_sequence/                        the 30-frame snippets, same naming
Splits train, val, test, train_extra (-> train). depth = baseline * fx / d. A snippet frame without its own
camera file takes the camera file of its snippet (same city and sequence number): the camera package
appears to hold the annotated frames only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np

from ingest.base import AdapterInfo, Item, lookup, make_sample, read_depth_png, read_rgb
from ingest.geometry import disparity_to_depth
from ingest.registry import register
from ingest.source import Source, SourceError
from schemas.sample import Sample

_NATIVE_SPLITS = {"train": ("train", "train_extra"), "val": ("val",), "test": ("test",)}
_LAYOUTS = (("leftImg8bit", "disparity"), ("leftImg8bit_sequence", "disparity_sequence"))


def read_json(src: Source, rel: str) -> Any:
    try:
        return json.loads(src.read_text(rel))
    except json.JSONDecodeError as exc:
        raise SourceError(rel, f"not valid JSON ({exc})") from None


def field(doc: Any, path: str, file: str) -> float:
    """A numeric field at a dotted path of a JSON document; a missing or non-numeric one names the path."""
    value = lookup(doc, path, file)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise SourceError(file, f"{path} is not a number: {value!r}") from None


@register
class Cityscapes:
    info = AdapterInfo(
        name="cityscapes",
        description="Cityscapes SGM disparity (fine + sequence snippets) -> depth with the camera JSON",
        sensor="stereo",
        depth_encoding="uint16 disparity PNG, d = (p - 1) / 256 px, p = 0 invalid; depth = baseline * fx / d",
        intrinsics="camera/<split>/<city>/<stem>_camera.json intrinsic fx fy u0 v0 (snippet's file for neighbours)",
        splits="train (+ train_extra), val, test",
        eval_protocol="cityscapes: rows 256:, cols 192:1856, cap 80 m (Metric3D, commented code)",
        license="Cityscapes terms (non-commercial, registration required)",
        verified="fixture only; naming from cityscapesScripts README, encoding from its README and loaders",
    )

    def items(self, src: Source, split: str | None, dataset: str) -> Iterator[Item]:
        for sub in [split] if split else list(_NATIVE_SPLITS):
            if sub not in _NATIVE_SPLITS:
                raise ValueError(f"cityscapes has splits {', '.join(_NATIVE_SPLITS)}; got {sub!r}")
            for native in _NATIVE_SPLITS[sub]:
                yield from self._native_items(src, sub, native, dataset)

    def _native_items(self, src: Source, split: str, native: str, dataset: str) -> Iterator[Item]:
        cameras = {
            rel.rsplit("/", 1)[1].removesuffix("_camera.json"): rel for rel in src.glob(f"camera/{native}/*/*.json")
        }
        by_snippet = {stem.rsplit("_", 1)[0]: rel for stem, rel in sorted(cameras.items())}
        seen: set[str] = set()
        for rgb_root, disp_root in _LAYOUTS:
            for rel in src.glob(f"{disp_root}/{native}/*/*_disparity.png"):
                city, name = rel.split("/")[2:4]
                stem = name.removesuffix("_disparity.png")
                if stem in seen:
                    continue  # an annotated frame is also part of its snippet: list it once
                seen.add(stem)
                camera = cameras.get(stem) or by_snippet.get(stem.rsplit("_", 1)[0])
                yield Item(
                    dataset=dataset,
                    split=split,
                    scene=f"{native}/{city}",
                    frame=stem,
                    camera="left",
                    files={
                        "rgb": f"{rgb_root}/{native}/{city}/{stem}_leftImg8bit.png",
                        "disparity": rel,
                        "camera": camera or f"camera/{native}/{city}/{stem}_camera.json",
                    },
                )

    def load(self, src: Source, item: Item) -> Sample:
        cam_file = item.files["camera"]
        cam = read_json(src, cam_file)
        fx, fy = field(cam, "intrinsic.fx", cam_file), field(cam, "intrinsic.fy", cam_file)
        cx, cy = field(cam, "intrinsic.u0", cam_file), field(cam, "intrinsic.v0", cam_file)
        baseline = field(cam, "extrinsic.baseline", cam_file)
        rgb, data, fmt = read_rgb(src, item.files["rgb"])
        p = read_depth_png(src, item.files["disparity"], 1.0)  # the raw uint16 values, exact in float32
        if p.shape != rgb.shape[:2]:
            raise SourceError(item.files["disparity"], f"size {p.shape} differs from rgb {rgb.shape[:2]}")
        disparity = np.where(p > 0, (p.astype(np.float64) - 1.0) / 256.0, 0.0)  # px; p = 1 gives d = 0, invalid
        depth = disparity_to_depth(disparity, baseline, fx)
        return make_sample(self.info, item, src, rgb, depth, (fx, fy, cx, cy), data, fmt)
