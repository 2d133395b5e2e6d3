"""KITTI 3D object layout (and datasets converted to it): Velodyne scans projected into the left colour camera.

--src holds `training/` and/or `testing/` as the object benchmark unpacks:
  <set>/image_2/<id>.png        rectified left colour image (size varies with the recording date)
  <set>/velodyne/<id>.bin       float32 x 4 (x, y, z, reflectance), Velodyne frame, metres
  <set>/calib/<id>.txt          `KEY: values` lines: P0..P3 (3x4), R0_rect (3x3), Tr_velo_to_cam (3x4), ...
Depth: X_rect = R0_rect Tr_velo_to_cam p; P2 = K [I | t] gives camera 2's frame X_rect + t, whose z is the
depth (the P2 third row: z + P2[2,3]); u, v = round(K X / z). Nearest z per pixel, nothing densified.
Splits: training -> train, testing -> test (testing has scans but no labels; depth needs only the scans).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ingest.base import AdapterInfo, Item, make_sample, read_rgb
from ingest.geometry import project_to_depth, transform_points
from ingest.registry import register
from ingest.source import Source, SourceError
from schemas.sample import Sample

_SETS = {"train": "training", "test": "testing"}
# Entry names and value counts; the tracking benchmark spells the last two R_rect and Tr_velo_cam.
_ENTRIES = {"P2": ("P2",), "R0_rect": ("R0_rect", "R_rect"), "Tr_velo_to_cam": ("Tr_velo_to_cam", "Tr_velo_cam")}
_SIZES = {"P2": 12, "R0_rect": 9, "Tr_velo_to_cam": 12}


def parse_object_calib(text: str, file: str) -> dict[str, np.ndarray]:
    """P2 (3x4), R0_rect (3x3), Tr_velo_to_cam (3x4) from a KITTI object calib file."""
    values: dict[str, list[float]] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if sep:
            try:
                values[name.strip()] = [float(v) for v in rest.split()]
            except ValueError:
                raise SourceError(file, f"{name.strip()}: non-numeric values") from None
    out = {}
    for key, names in _ENTRIES.items():
        found = next((values[n] for n in names if n in values), None)
        if found is None:
            raise SourceError(file, f"no {key} entry in the calibration file")
        if len(found) != _SIZES[key]:
            raise SourceError(file, f"{key} has {len(found)} values, expected {_SIZES[key]}")
        out[key] = np.asarray(found, np.float64).reshape(3, -1)
    return out


def velo_to_cam2(calib: dict[str, np.ndarray], file: str) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """4x4 Velodyne -> camera 2 transform and camera 2's (fx, fy, cx, cy) from P2 = K [I | t]."""
    p2 = calib["P2"]
    fx, fy, cx, cy = p2[0, 0], p2[1, 1], p2[0, 2], p2[1, 2]
    if fx <= 0 or fy <= 0 or p2[0, 1] != 0 or p2[2, 2] != 1:
        raise SourceError(file, f"P2 is not a rectified pinhole projection K [I | t]: {p2.tolist()}")
    tz = p2[2, 3]
    t = np.array([(p2[0, 3] - cx * tz) / fx, (p2[1, 3] - cy * tz) / fy, tz])  # metres
    rect = np.eye(4)
    rect[:3, :3] = calib["R0_rect"]
    velo = np.eye(4)
    velo[:3, :] = calib["Tr_velo_to_cam"]
    shift = np.eye(4)
    shift[:3, 3] = t
    return shift @ rect @ velo, (fx, fy, cx, cy)


def read_velodyne(src: Source, rel: str) -> np.ndarray:
    """Nx3 float64 points (m) from a KITTI .bin of float32 x, y, z, reflectance."""
    data = src.read_bytes(rel)
    if len(data) == 0 or len(data) % 16:
        raise SourceError(rel, f"{len(data)} bytes is not a whole number of 4-float32 points")
    return np.frombuffer(data, "<f4").reshape(-1, 4)[:, :3].astype(np.float64)


@register
class KittiObject:
    info = AdapterInfo(
        name="kitti_object",
        description="KITTI 3D object layout (image_2 + velodyne .bin + calib P2/R0_rect/Tr_velo_to_cam)",
        sensor="lidar",
        depth_encoding="none: Velodyne .bin (float32 x4, m) projected to camera-2 z-depth, float32, 0 invalid",
        intrinsics="P2 of calib/<id>.txt: fx = P2[0,0], fy = P2[1,1], cx = P2[0,2], cy = P2[1,2]",
        splits="train (training/), test (testing/)",
        eval_protocol="default",
        license="CC BY-NC-SA 3.0 (KITTI); converted datasets keep their own terms",
        # The object benchmark's frames are taken from the raw drives (devkit mapping), Eigen test drives included.
        shares=(("kitti", "KITTI raw drives"),),
        verified=(
            "OpenPCDet KITTI frames 000000, 000001 and an Argoverse 1 frame in KITTI format (real): statistics "
            "match the samples' READMEs; R_rect / Tr_velo_cam spellings from the tracking devkit, not checked"
        ),
    )

    def items(self, src: Source, split: str | None, dataset: str) -> Iterator[Item]:
        for sub in [split] if split else list(_SETS):
            if sub not in _SETS:
                raise ValueError(f"kitti_object has splits {', '.join(_SETS)}; got {sub!r}")
            folder = _SETS[sub]
            for rel in src.glob(f"{folder}/image_2/*.png"):
                frame = rel.rsplit("/", 1)[1].removesuffix(".png")
                yield Item(
                    dataset=dataset,
                    split=sub,
                    scene=folder,
                    frame=frame,
                    camera="image_2",
                    files={
                        "rgb": rel,
                        "velodyne": f"{folder}/velodyne/{frame}.bin",
                        "calib": f"{folder}/calib/{frame}.txt",
                    },
                )

    def load(self, src: Source, item: Item) -> Sample:
        calib_rel = item.files["calib"]
        to_cam, k_px = velo_to_cam2(parse_object_calib(src.read_text(calib_rel), calib_rel), calib_rel)
        points = read_velodyne(src, item.files["velodyne"])
        rgb, data, fmt = read_rgb(src, item.files["rgb"])
        depth = project_to_depth(transform_points(to_cam, points), k_px, rgb.shape[:2])
        return make_sample(self.info, item, src, rgb, depth, k_px, data, fmt)
