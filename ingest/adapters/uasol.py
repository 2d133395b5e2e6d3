"""UASOL outdoor stereo (Univ. of Alicante, Scientific Data 2019), per sequence folder:
  <seq>/Images/<name>.png     left RGB frames and ZED depth frames side by side
  <seq>/complete.json         {"Data": [{"color_frame_left": <name>, "depth_frame": <name>, "m": 4x4 pose}, ...]}
  <seq>/log.txt               a "LEFT CAMERA PARAMETERS" block of `key: value` lines: focal length in pixels
                              along x / y, optical center along x / y (pixels), resolution
Depth: uint16 PNG in millimetres, 0 invalid (ZED SDK stereo depth, dense).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from ingest.base import AdapterInfo, Item, make_sample, read_depth_png, read_rgb
from ingest.registry import register
from ingest.source import Source, SourceError
from schemas.sample import Sample

DEPTH_SCALE = 1000.0
_LEFT = "LEFT CAMERA PARAMETERS"
# Key patterns of the block (the release spells "alog" for "along"): what each value is.
_KEYS = {
    "fx": r"focal length.*\bx axis",
    "fy": r"focal length.*\by axis",
    "cx": r"optical cent(er|re).*\bx axis",
    "cy": r"optical cent(er|re).*\by axis",
}


def parse_left_camera(text: str, file: str) -> tuple[float, float, float, float]:
    """fx, fy, cx, cy from the LEFT CAMERA PARAMETERS block of log.txt (ends at the next PARAMETERS header)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().upper().startswith(_LEFT)), None)
    if start is None:
        raise SourceError(file, f"no {_LEFT!r} block")
    found: dict[str, float] = {}
    for line in lines[start + 1 :]:
        if "PARAMETERS" in line.upper():
            break
        key, sep, value = line.partition(":")
        for name, pattern in _KEYS.items():
            if sep and name not in found and re.search(pattern, key.strip().lower()):
                try:
                    found[name] = float(value.strip().rstrip("."))
                except ValueError:
                    raise SourceError(file, f"{key.strip()!r} is not a number: {value.strip()!r}") from None
    missing = [name for name in _KEYS if name not in found]
    if missing:
        raise SourceError(file, f"left camera block lacks {', '.join(missing)}")
    return found["fx"], found["fy"], found["cx"], found["cy"]


@register
class Uasol:
    info = AdapterInfo(
        name="uasol",
        description="UASOL outdoor ZED stereo, dense SDK depth in mm, per-sequence log.txt intrinsics",
        sensor="stereo",
        depth_encoding="uint16 PNG mm (/1000), 0 invalid",
        intrinsics="<seq>/log.txt LEFT CAMERA PARAMETERS (focal length / optical center along x, y)",
        splits="train (every sequence's complete.json)",
        eval_protocol="none (training set)",
        license="CC BY 4.0 (uncertain)",
        verified="fixture only; layout and log.txt keys from CUT3R's preprocess_uasol.py (single source)",
    )

    def items(self, src: Source, split: str | None, dataset: str) -> Iterator[Item]:
        if split not in (None, "train"):
            raise ValueError(f"uasol has split train; got {split!r}")
        for manifest in src.glob("*/complete.json"):
            seq = manifest.split("/")[0]
            try:
                frames = json.loads(src.read_text(manifest))["Data"]
                pairs = [(f["color_frame_left"], f["depth_frame"]) for f in frames]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                pairs, error = (
                    [("", "")],
                    (manifest, f"not a UASOL manifest ({exc!r}); expected Data[].color_frame_left"),
                )
            else:
                error = None
            for rgb, depth in pairs:
                yield Item(
                    dataset=dataset,
                    split="train",
                    scene=seq,
                    frame=rgb,
                    camera="left",
                    files={
                        "rgb": f"{seq}/Images/{rgb}.png",
                        "depth": f"{seq}/Images/{depth}.png",
                        "log": f"{seq}/log.txt",
                    },
                    extra={"error": error},
                )

    def load(self, src: Source, item: Item) -> Sample:
        if item.extra.get("error"):
            raise SourceError(*item.extra["error"])
        k_px = parse_left_camera(src.read_text(item.files["log"]), item.files["log"])
        rgb, data, fmt = read_rgb(src, item.files["rgb"])
        depth = read_depth_png(src, item.files["depth"], DEPTH_SCALE)
        if depth.shape != rgb.shape[:2]:
            raise SourceError(item.files["depth"], f"depth {depth.shape} and rgb {rgb.shape[:2]} sizes differ")
        return make_sample(self.info, item, src, rgb, depth, k_px, data, fmt, DEPTH_SCALE)
