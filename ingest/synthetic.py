"""Synthetic multi-camera scenes with known metric geometry, written in KITTI's and NYU's native layouts.

Every scene is ray-cast exactly: a ground plane with a 1 m checkerboard, cubes of 1 m side resting on it,
and (indoors) walls with a 0.5 m checkerboard. Objects of known physical size seen through cameras of
different focal lengths are what makes metric depth learnable, and what CSTM is about.

  python -m ingest.synthetic --out DIR      # then: python -m ingest.run --dataset synthetic --src DIR ...

Layout written under DIR:
  kitti/<date>/calib_cam_to_cam.txt, kitti/<date>/<drive>/image_02/data/*.png,
  kitti/data_depth_annotated/{train,val}/<drive>/proj_depth/groundtruth/image_02/*.png  (lidar-like sparse)
  nyu/sync/<scene>/rgb_*.jpg + sync_depth_*.png (train), nyu/official_splits/test/<scene>/... (test)
  synthetic.json   the cameras and counts, for people and tests
Cameras of the `val` split in the KITTI tree have focal lengths never used in `train`: the CSTM ablation
evaluates on them.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from ingest.adapters.kitti import DEPTH_SCALE as KITTI_SCALE
from ingest.adapters.nyu import DEPTH_SCALE as NYU_SCALE
from ingest.adapters.nyu import K_PX as NYU_K_PX

CUBE_SIDE_M = 1.0
GROUND_SQUARE_M = 1.0
WALL_SQUARE_M = 0.5
MAX_DEPTH_M = 80.0


@dataclass(frozen=True)
class Camera:
    name: str
    f_px: float
    width: int
    height: int
    layout: str  # "kitti" | "nyu"
    split: str  # kitti: train | val ; nyu: train | test
    cx: float | None = None  # principal point in pixels; None = the image centre
    cy: float | None = None

    def principal_point(self) -> tuple[float, float]:
        return (
            (self.width - 1) / 2.0 if self.cx is None else self.cx,
            (self.height - 1) / 2.0 if self.cy is None else self.cy,
        )


# Small images keep tests and the demo fast; focal lengths span 2.4x in training, and the unseen val
# cameras sit between and beyond them.
DEFAULT_CAMERAS = (
    Camera("cam_f150", 150.0, 352, 256, "kitti", "train"),
    Camera("cam_f250", 250.0, 352, 256, "kitti", "train"),
    Camera("cam_f360", 360.0, 352, 256, "kitti", "train"),
    Camera("cam_f200", 200.0, 352, 256, "kitti", "val"),
    Camera("cam_f450", 450.0, 352, 256, "kitti", "val"),
    Camera("kinect", NYU_K_PX[0], 640, 480, "nyu", "train", NYU_K_PX[2], NYU_K_PX[3]),
    Camera("kinect", NYU_K_PX[0], 640, 480, "nyu", "test", NYU_K_PX[2], NYU_K_PX[3]),
)


@dataclass(frozen=True)
class Box:
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    colour: tuple[int, int, int]


def _scene(rng: np.random.Generator, indoor: bool, cam_height_m: float) -> list[Box]:
    boxes = []
    for _ in range(int(rng.integers(2, 5))):
        x = float(rng.uniform(-2.0, 2.0) if indoor else rng.uniform(-4.0, 4.0))
        z = float(rng.uniform(2.0, 5.5) if indoor else rng.uniform(4.0, 20.0))
        y_top = cam_height_m - CUBE_SIDE_M  # resting on the ground (y points down)
        h = CUBE_SIDE_M / 2
        colour = tuple(int(c) for c in rng.integers(40, 255, size=3))
        boxes.append(Box((x - h, y_top, z - h), (x + h, cam_height_m, z + h), colour))
    return boxes


def _checker(u: np.ndarray, v: np.ndarray, square_m: float) -> np.ndarray:
    return ((np.floor(u / square_m) + np.floor(v / square_m)) % 2).astype(bool)


def render(camera: Camera, seed: int, indoor: bool) -> tuple[np.ndarray, np.ndarray]:
    """(rgb uint8 HxWx3, depth_m float32 HxW with 0 where nothing was hit) for one scene."""
    rng = np.random.default_rng(seed)
    cam_h = float(rng.uniform(1.0, 1.4) if indoor else rng.uniform(1.4, 1.8))
    boxes = _scene(rng, indoor, cam_h)
    h, w = camera.height, camera.width
    cx, cy = camera.principal_point()
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    a, b = (u - cx) / camera.f_px, (v - cy) / camera.f_px  # ray = (a, b, 1): its parameter t is z-depth
    depth = np.full((h, w), np.inf)
    rgb = np.zeros((h, w, 3), np.float64)
    rgb[:] = (150, 190, 235)  # sky

    def paint(t: np.ndarray, colour: np.ndarray) -> None:
        closer = t < depth
        depth[closer] = t[closer]
        rgb[closer] = colour[closer]

    with np.errstate(divide="ignore", invalid="ignore"):
        t_ground = np.where(b > 1e-9, cam_h / b, np.inf)
        gx, gz = a * t_ground, t_ground
        light = np.where(_checker(gx, gz, GROUND_SQUARE_M), 90.0, 160.0)[..., None]
        paint(t_ground, np.broadcast_to(light, (h, w, 3)) * np.array([1.0, 0.95, 0.85]))
        if indoor:
            room = float(rng.uniform(5.0, 7.0))
            half_w = 2.8
            walls = [
                (np.full((h, w), room), lambda t: (a * t, b * t)),  # back wall z = room
                (np.where(a > 1e-9, half_w / a, np.inf), lambda t: (t, b * t)),  # right wall x = +half_w
                (np.where(a < -1e-9, -half_w / a, np.inf), lambda t: (t, b * t)),  # left wall x = -half_w
                (np.where(b < -1e-9, -(2.6 - cam_h) / b, np.inf), lambda t: (a * t, t)),  # ceiling
            ]
            for k, (t_wall, coords) in enumerate(walls):
                p, q = coords(t_wall)
                shade = np.where(_checker(p, q, WALL_SQUARE_M), 120.0, 200.0)[..., None]
                tint = np.array([[0.9, 0.85, 1.0], [1.0, 0.9, 0.8], [0.8, 1.0, 0.9], [0.95, 0.95, 0.95]][k])
                paint(t_wall, np.broadcast_to(shade, (h, w, 3)) * tint)
        for box in boxes:
            lo, hi = np.array(box.lo), np.array(box.hi)
            tx0, tx1 = lo[0] / a, hi[0] / a
            ty0, ty1 = lo[1] / b, hi[1] / b
            tnear = np.maximum.reduce([np.minimum(tx0, tx1), np.minimum(ty0, ty1), np.full((h, w), lo[2])])
            tfar = np.minimum.reduce([np.maximum(tx0, tx1), np.maximum(ty0, ty1), np.full((h, w), hi[2])])
            hit = (tnear <= tfar) & (tnear > 0)
            t_box = np.where(hit, tnear, np.inf)
            face = np.argmax(np.stack([np.minimum(tx0, tx1), np.minimum(ty0, ty1), np.full((h, w), lo[2])]), axis=0)
            shade = np.array([0.75, 1.0, 0.9])[face]
            px, py = a * t_box, b * t_box
            stripes = np.where(_checker(px + py, t_box, CUBE_SIDE_M / 4), 0.8, 1.0)
            colour = np.array(box.colour)[None, None, :] * (shade * stripes)[..., None]
            paint(t_box, colour)
    depth[~np.isfinite(depth) | (depth > MAX_DEPTH_M)] = 0.0
    noise = rng.normal(0.0, 3.0, size=rgb.shape)
    return np.clip(rgb + noise, 0, 255).astype(np.uint8), depth.astype(np.float32)


def _lidar_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    # Lidar-like sparsity: every 4th row is a scan line, 70 % of its returns kept.
    mask = np.zeros((h, w), bool)
    mask[::4] = rng.random((len(range(0, h, 4)), w)) < 0.7
    return mask


def _write(path: str, image: np.ndarray, params: list[int] | None = None) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(path, image, params or []):
        raise OSError(f"could not write {path}")


def _calib_text(f_px: float, w: int, h: int, cx: float, cy: float) -> str:
    p = f"{f_px:.6e} 0.000000e+00 {cx:.6e} 0.000000e+00 0.000000e+00 {f_px:.6e} {cy:.6e} 0.000000e+00 "
    p += "0.000000e+00 0.000000e+00 1.000000e+00 0.000000e+00"
    return f"calib_time: synthetic\nS_rect_02: {w:.6e} {h:.6e}\nP_rect_02: {p}\nS_rect_03: {w:.6e} {h:.6e}\nP_rect_03: {p}\n"


def generate(
    out: str, scenes_per_camera: int = 6, seed: int = 0, cameras: tuple[Camera, ...] = DEFAULT_CAMERAS
) -> dict:
    """Write every camera's scenes under `out` in the native layouts; returns the manifest."""
    counts: dict[str, int] = {}
    for ci, cam in enumerate(cameras):
        key = f"{cam.layout}/{cam.split}/{cam.name}"
        for s in range(scenes_per_camera):
            scene_seed = seed * 1_000_003 + ci * 10_007 + s
            rng = np.random.default_rng(scene_seed + 1)
            rgb, depth = render(cam, scene_seed, indoor=cam.layout == "nyu")
            if cam.layout == "kitti":
                date = f"2030_01_{ci + 1:02d}"
                drive = f"{date}_drive_{s:04d}_sync"
                root = f"{out}/kitti"
                with open(_ensure(f"{root}/{date}/calib_cam_to_cam.txt"), "w") as f:
                    f.write(_calib_text(cam.f_px, cam.width, cam.height, *cam.principal_point()))
                frame = f"{s:010d}.png"
                _write(f"{root}/{date}/{drive}/image_02/data/{frame}", rgb)
                raw = np.rint(depth * KITTI_SCALE).astype(np.uint16) * _lidar_mask(rng, cam.height, cam.width)
                _write(f"{root}/data_depth_annotated/{cam.split}/{drive}/proj_depth/groundtruth/image_02/{frame}", raw)
            else:
                folder = "sync" if cam.split == "train" else "official_splits/test"
                base = f"{out}/nyu/{folder}/room_{ci:02d}_{s:04d}"
                raw = np.rint(depth * NYU_SCALE).astype(np.uint16)
                raw[rng.random(raw.shape) < 0.02] = 0  # Kinect-like holes
                _write(f"{base}/rgb_{s:05d}.jpg", rgb, [cv2.IMWRITE_JPEG_QUALITY, 95])
                _write(f"{base}/sync_depth_{s:05d}.png", raw)
            counts[key] = counts.get(key, 0) + 1
    manifest = {"seed": seed, "cameras": [asdict(c) for c in cameras], "counts": counts}
    with open(_ensure(f"{out}/synthetic.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def _ensure(path: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder to write the KITTI and NYU trees into")
    parser.add_argument("--scenes", type=int, default=6, help="scenes per camera (default 6)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    manifest = generate(args.out, args.scenes, args.seed)
    print(f"wrote {sum(manifest['counts'].values())} frames to {args.out}: {manifest['counts']}")


if __name__ == "__main__":
    main()
