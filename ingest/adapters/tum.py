"""TUM RGB-D benchmark sequences as the .tgz files unpack, RGB and depth paired by timestamp.

--src is one sequence folder or a folder of them:
  <seq>/rgb.txt, <seq>/depth.txt   `timestamp filename` lines (`#` comments), timestamps in seconds
  <seq>/rgb/<timestamp>.png        640x480 colour
  <seq>/depth/<timestamp>.png      uint16, depth_m = value / 5000, 0 invalid, registered to the colour camera
Pairs: TUM associate.py rule, each depth frame matched one-to-one to the closest colour frame within 0.02 s,
closest pairs first. Intrinsics by sequence name (rgbd_dataset_freiburgN_...): TUM's calibrated colour
camera for freiburg1/2/3; any other name gets TUM's default 525, 525, 319.5, 239.5. The freiburg1/2
colour images are distorted (TUM lists d0..d4) and are used as shipped, like the depth registered to them.
TUM ships no train/val/test split: every frame gets --split (default train).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator

import numpy as np

from ingest.base import AdapterInfo, Item, make_sample, read_depth_png, read_rgb
from ingest.registry import register
from ingest.source import Source, SourceError
from schemas.sample import Sample

DEPTH_SCALE = 5000.0  # TUM: 5000 units per metre
MAX_DIFF_S = 0.02  # associate.py --max_difference default
# TUM "file formats" page, calibrated colour camera (pixels); the default is ROS' PrimeSense model.
K_BY_SENSOR = {
    "freiburg1": (517.3, 516.5, 318.6, 255.3),
    "freiburg2": (520.9, 521.0, 325.1, 249.7),
    "freiburg3": (535.4, 539.2, 320.1, 247.6),
}
K_DEFAULT = (525.0, 525.0, 319.5, 239.5)


def read_list(src: Source, rel: str) -> list[tuple[float, str]]:
    """(timestamp s, file) rows of a TUM rgb.txt / depth.txt."""
    rows = []
    for n, line in enumerate(src.read_text(rel).splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        try:
            rows.append((float(fields[0]), fields[1]))
        except (ValueError, IndexError):
            raise ValueError(f"{src.uri(rel)} line {n}: expected `timestamp filename`, got {line!r}") from None
    return rows


def associate(rgb_ts: np.ndarray, depth_ts: np.ndarray, max_diff: float = MAX_DIFF_S) -> list[tuple[int, int]]:
    """(rgb index, depth index) pairs: one-to-one, |dt| < max_diff, closest pairs taken first."""
    order = np.argsort(rgb_ts, kind="stable")
    sorted_ts = rgb_ts[order]
    candidates = []
    for j, t in enumerate(depth_ts):
        # Strictly inside the window, as associate.py compares |dt| < max_difference.
        lo = int(np.searchsorted(sorted_ts, t - max_diff, side="right"))
        hi = int(np.searchsorted(sorted_ts, t + max_diff, side="left"))
        candidates += [(abs(sorted_ts[i] - t), int(order[i]), j) for i in range(lo, hi)]
    used_rgb: set[int] = set()
    used_depth: set[int] = set()
    pairs = []
    for _, i, j in sorted(candidates):
        if i not in used_rgb and j not in used_depth:
            used_rgb.add(i)
            used_depth.add(j)
            pairs.append((i, j))
    return sorted(pairs, key=lambda p: p[1])


def intrinsics_for(sequence: str) -> tuple[float, float, float, float]:
    match = re.search(r"freiburg[123]", sequence)
    return K_BY_SENSOR[match.group(0)] if match else K_DEFAULT


@register
class Tum:
    info = AdapterInfo(
        name="tum",
        description="TUM RGB-D sequences (rgb.txt/depth.txt paired within 0.02 s), uint16 depth / 5000",
        sensor="structured_light",
        depth_encoding="uint16 PNG / 5000 m, 0 invalid, registered to the colour camera",
        intrinsics="TUM calibrated colour camera by sequence name (freiburg1/2/3), else 525, 525, 319.5, 239.5",
        splits="none shipped: every frame gets --split (default train)",
        eval_protocol="default",
        license="CC BY 4.0 (TUM site, not checked)",
        verified=(
            "one Open3D TUM frame laid out as a sequence (real): depth statistics match the sample's README; "
            "its sequence is unknown, so the per-freiburg intrinsics and distortion remark are from TUM's page"
        ),
    )

    def items(self, src: Source, split: str | None, dataset: str) -> Iterator[Item]:
        split = split or "train"
        for list_rel in src.glob("rgb.txt") + src.glob("*/rgb.txt"):
            folder = posixpath.dirname(list_rel)
            sequence = folder or posixpath.basename(src.url.rstrip("/"))
            rgb = read_list(src, list_rel)
            depth = read_list(src, posixpath.join(folder, "depth.txt"))
            pairs = associate(np.array([t for t, _ in rgb]), np.array([t for t, _ in depth]))
            for i, j in pairs:
                yield Item(
                    dataset=dataset,
                    split=split,
                    scene=sequence,
                    frame=f"{depth[j][0]:.6f}",
                    camera="kinect",
                    files={"rgb": posixpath.join(folder, rgb[i][1]), "depth": posixpath.join(folder, depth[j][1])},
                    extra={"k_px": intrinsics_for(sequence)},
                )

    def load(self, src: Source, item: Item) -> Sample:
        rgb, data, fmt = read_rgb(src, item.files["rgb"])
        depth = read_depth_png(src, item.files["depth"], DEPTH_SCALE)
        if depth.shape != rgb.shape[:2]:
            raise SourceError(item.files["depth"], f"depth {depth.shape} and rgb {rgb.shape[:2]} sizes differ")
        return make_sample(self.info, item, src, rgb, depth, item.extra["k_px"], data, fmt, DEPTH_SCALE)
