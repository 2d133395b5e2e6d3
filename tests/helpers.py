"""Small builders for tests: canonical samples with known content, native-layout trees from real files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from schemas.sample import Sample, SampleMeta, make_sample_id


def make_sample(
    h: int = 24,
    w: int = 32,
    seed: int = 0,
    dataset: str = "toy",
    frame: str = "0",
    depth_scale: float | None = 256.0,
    split: str = "train",
) -> Sample:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    raw = rng.integers(1, 20000, size=(h, w)).astype(np.uint16)
    raw[rng.random((h, w)) < 0.3] = 0
    depth = raw.astype(np.float32) / np.float32(depth_scale or 256.0)
    sid = make_sample_id(dataset, split, "scene", frame, "cam")
    meta = SampleMeta(sid, dataset, split, "scene", frame, "cam", "lidar", ("mem://x",), "test", 1, depth_scale)
    return Sample(rgb, depth, depth > 0, (100.0 + seed, 101.0, w / 2, h / 2), meta).check()


def kitti_tree(real: Path, out: Path, date: str = "2011_10_03", drive: str = "2011_10_03_drive_0034_sync") -> Path:
    """KITTI's native layout built from the three real metric3d_demo frames (P_rect_02 of 2011_10_03)."""
    demo = real / "metric3d_demo" / "kitti_demo"
    for png in sorted((demo / "rgb").glob("*.png")):
        rgb_dst = out / date / drive / "image_02" / "data" / png.name
        gt_dst = out / "data_depth_annotated" / "val" / drive / "proj_depth" / "groundtruth" / "image_02" / png.name
        for src, dst in ((png, rgb_dst), (demo / "depth" / png.name, gt_dst)):
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    p = "7.070493e+02 0.000000e+00 6.040814e+02 4.575831e+01 0.000000e+00 7.070493e+02 1.805066e+02 "
    p += "-3.454157e-01 0.000000e+00 0.000000e+00 1.000000e+00 4.981016e-03"
    (out / date / "calib_cam_to_cam.txt").write_text(
        f"calib_time: 09-Jan-2012 14:00:15\nP_rect_02: {p}\nP_rect_03: {p}\n"
    )
    return out


def nyu_tree(real: Path, out: Path) -> Path:
    """NYU's BTS layouts (sync/ train and official_splits/test) from the real metric3d_demo frames."""
    demo = real / "metric3d_demo" / "nyu_demo"
    for i, jpg in enumerate(sorted((demo / "rgb").glob("*.jpg"))):
        index = jpg.stem.removeprefix("rgb_")
        folder = out / ("sync/kitchen_0001" if i < 2 else "official_splits/test/kitchen")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(jpg, folder / jpg.name)
        shutil.copy(demo / "depth" / f"sync_depth_{index}.png", folder / f"sync_depth_{index}.png")
    return out


def metric3d_annotations(folder: Path, entries: list[dict]) -> Path:
    """A Metric3D annotation file (`{"files": [...]}`) in `folder`, for the metric3d_json adapter."""
    path = folder / "annotations.json"
    path.write_text(json.dumps({"files": entries}))
    return path
