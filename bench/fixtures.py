"""Benchmark inputs built from the real samples in ../shared/data/real: source folders + annotation files.

  kitti   3 KITTI frames, 1242x375 PNG RGB, uint16 PNG depth (/256)           metric3d_demo/kitti_demo
  nyu     3 NYU frames, 640x480 JPEG RGB, uint16 PNG depth (mm)                metric3d_demo/nyu_demo
  nuscenes 6 nuScenes cameras, 1600x900 JPEG RGB, sparse lidar depth (the real sweep projected with the
          sample's lidar2cam and cam2img, z > 1 m), written as uint16 PNG /256 like KITTI's
Each kind gets a folder with test_annotations.json in Metric3D's convention, so one adapter ingests all.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from ingest.geometry import project_to_depth, transform_points

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
KINDS = ("kitti", "nyu", "nuscenes")


def _require() -> None:
    if not REAL.is_dir():
        raise SystemExit(f"benchmarks need the real samples at {REAL}")


def build(kind: str, out: Path, copies: int = 1) -> Path:
    """A folder with rgb/, depth/ and test_annotations.json for `kind`; returns the JSON path. With copies > 1
    every frame is also written under new names (distinct samples, same bytes), for throughput runs."""
    _require()
    out.mkdir(parents=True, exist_ok=True)
    if kind in ("kitti", "nyu"):
        src = REAL / "metric3d_demo" / f"{kind}_demo"
        for sub in ("rgb", "depth"):
            shutil.copytree(src / sub, out / sub, dirs_exist_ok=True)
        ann = json.loads((src / "test_annotations.json").read_text())
        for e in ann["files"]:
            e["rgb"], e["depth"] = e["rgb"].split(f"{kind}_demo/")[1], e["depth"].split(f"{kind}_demo/")[1]
    elif kind == "nuscenes":
        ann = {"files": _nuscenes(out)}
    else:
        raise ValueError(f"unknown kind {kind!r}; valid: {', '.join(KINDS)}")
    base = list(ann["files"])
    for c in range(1, copies):
        for e in base:
            copy = {**e, "rgb": _copy_as(out, e["rgb"], c), "depth": _copy_as(out, e["depth"], c)}
            ann["files"].append(copy)
    path = out / "test_annotations.json"
    path.write_text(json.dumps(ann))
    return path


def _copy_as(out: Path, rel: str, c: int) -> str:
    src = out / rel
    new = src.with_name(f"{src.stem}_copy{c:03d}{src.suffix}")
    shutil.copy(src, new)
    return str(new.relative_to(out))


def _nuscenes(out: Path) -> list[dict]:
    root = REAL / "nuscenes_mini_mmdet3d_demo"
    calib = json.loads((root / "calib_extracted_from_pkl.json").read_text())
    data = root / "demo" / "data" / "nuscenes"
    points = np.fromfile(data / calib["lidar_path"], np.float32).reshape(-1, 5)[:, :3]
    (out / "rgb").mkdir(exist_ok=True)
    (out / "depth").mkdir(exist_ok=True)
    files = []
    for name, cam in sorted(calib["cameras"].items()):
        k = np.array(cam["cam2img"])
        k_px = (k[0][0], k[1][1], k[0][2], k[1][2])
        depth = project_to_depth(
            transform_points(np.array(cam["lidar2cam"]), points), k_px, (cam["height"], cam["width"]), min_depth_m=1.0
        )
        img = Path(cam["img_path"]).name
        shutil.copy(data / img, out / "rgb" / img)
        png = f"{Path(img).stem}.png"
        cv2.imwrite(str(out / "depth" / png), np.rint(depth * 256).astype(np.uint16))
        files.append(
            {"rgb": f"rgb/{img}", "depth": f"depth/{png}", "cam_in": list(k_px), "depth_scale": 256.0, "camera": name}
        )
    return files


def source_bytes(ann: Path) -> tuple[int, int]:
    """(rgb bytes, depth bytes) of the source files an annotation file names."""
    files = json.loads(ann.read_text())["files"]
    rgb = sum((ann.parent / f["rgb"]).stat().st_size for f in files)
    depth = sum((ann.parent / f["depth"]).stat().st_size for f in files)
    return rgb, depth
