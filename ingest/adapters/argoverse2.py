"""Argoverse 2 Sensor Dataset (argoverse/av2-api); --src is the `sensor/` folder:
  <split>/<log>/sensors/cameras/<camera>/<timestamp_ns>.jpg
  <split>/<log>/sensors/lidar/<timestamp_ns>.feather            x, y, z (float16, m) in the ego frame at the sweep time
  <split>/<log>/calibration/intrinsics.feather                  sensor_name, fx_px, fy_px, cx_px, cy_px, k1..k3,
                                                                width_px, height_px
  <split>/<log>/calibration/egovehicle_SE3_sensor.feather       sensor_name, qw, qx, qy, qz, tx_m, ty_m, tz_m
  <split>/<log>/city_SE3_egovehicle.feather                     timestamp_ns, qw, qx, qy, qz, tx_m, ty_m, tz_m
Each camera image takes the nearest sweep (within 50 ms, half the 10 Hz sweep period). As the devkit's
project_ego_to_img_motion_compensated, points go ego(lidar t) -> city -> ego(camera t) -> camera, then the
pinhole part of the intrinsics (images are not undistorted; the devkit ignores k1..k3 too).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather

from ingest.base import AdapterInfo, Item, make_sample, read_rgb
from ingest.geometry import invert_pose, pose_from_quat, project_to_depth, transform_points
from ingest.registry import register
from ingest.source import Source, SourceError
from schemas.sample import Sample

MAX_LIDAR_GAP_NS = 50_000_000  # half the 10 Hz sweep period
_SPLITS = ("train", "val", "test")
_QUAT, _TRANS = ("qw", "qx", "qy", "qz"), ("tx_m", "ty_m", "tz_m")


def read_feather(src: Source, rel: str, columns: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The named columns of a feather file as numpy arrays; a bad file or missing column names the file."""
    try:
        table = feather.read_table(pa.BufferReader(src.read_bytes(rel)))
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceError(rel, f"not a readable feather file ({exc})") from None
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise SourceError(rel, f"missing columns {', '.join(missing)}")
    return {c: table[c].to_numpy() for c in columns}


def row_of(table: dict[str, np.ndarray], key: str, value: object, rel: str, what: str) -> int:
    hits = np.nonzero(table[key] == value)[0]
    if not len(hits):
        raise SourceError(rel, f"no row for {what}")
    return int(hits[0])


def nearest(sorted_values: list[int], value: int) -> int | None:
    """The element of a sorted list closest to `value` (None when the list is empty)."""
    i = bisect.bisect_left(sorted_values, value)
    return min(sorted_values[max(i - 1, 0) : i + 1], key=lambda v: abs(v - value), default=None)


def pose_at(table: dict[str, np.ndarray], i: int) -> np.ndarray:
    return pose_from_quat(tuple(float(table[c][i]) for c in _QUAT), tuple(float(table[c][i]) for c in _TRANS))


@register
class Argoverse2:
    info = AdapterInfo(
        name="argoverse2",
        description="Argoverse 2 Sensor cameras + nearest LiDAR sweep, motion-compensated projection, sparse",
        sensor="lidar",
        depth_encoding="LiDAR .feather x, y, z float16 (ego frame), projected: z > 0, min z per pixel",
        intrinsics="calibration/intrinsics.feather fx_px fy_px cx_px cy_px (distortion ignored, as the devkit)",
        splits="train, val, test (folders)",
        eval_protocol="none (training set)",
        license="CC BY-NC-SA 4.0 for the data (uncertain); devkit MIT",
        verified="fixture only; file formats and projection from argoverse/av2-api (pinhole_camera.py, io.py)",
    )

    def items(self, src: Source, split: str | None, dataset: str) -> Iterator[Item]:
        for sub in [split] if split else list(_SPLITS):
            if sub not in _SPLITS:
                raise ValueError(f"argoverse2 has splits {', '.join(_SPLITS)}; got {sub!r}")
            sweeps: dict[str, list[int]] = {}
            for rel in src.glob(f"{sub}/*/sensors/cameras/*/*.jpg"):
                log, camera, name = rel.split("/")[1], rel.split("/")[4], rel.rsplit("/", 1)[1]
                if log not in sweeps:
                    stems = (
                        p.rsplit("/", 1)[1].removesuffix(".feather")
                        for p in src.glob(f"{sub}/{log}/sensors/lidar/*.feather")
                    )
                    sweeps[log] = sorted(int(s) for s in stems if s.isdigit())
                yield self._item(dataset, sub, log, camera, name, rel, sweeps[log])

    def _item(self, dataset: str, split: str, log: str, camera: str, name: str, rel: str, sweeps: list[int]) -> Item:
        stem, lidar_dir = name.removesuffix(".jpg"), f"{split}/{log}/sensors/lidar"
        t_lidar = nearest(sweeps, int(stem)) if stem.isdigit() else None
        if not stem.isdigit():
            extra = {"error": (rel, "file name is not a nanosecond timestamp")}
        elif t_lidar is None or abs(t_lidar - int(stem)) > MAX_LIDAR_GAP_NS:
            extra = {"error": (lidar_dir, f"no sweep within {MAX_LIDAR_GAP_NS / 1e6:g} ms of camera time {stem}")}
        else:
            extra = {"t_cam": int(stem), "t_lidar": t_lidar}
        return Item(
            dataset=dataset,
            split=split,
            scene=log,
            frame=stem,
            camera=camera,
            files={
                "rgb": rel,
                "lidar": f"{lidar_dir}/{t_lidar}.feather" if t_lidar is not None else "",
                "intrinsics": f"{split}/{log}/calibration/intrinsics.feather",
                "extrinsics": f"{split}/{log}/calibration/egovehicle_SE3_sensor.feather",
                "poses": f"{split}/{log}/city_SE3_egovehicle.feather",
            },
            extra=extra,
        )

    def load(self, src: Source, item: Item) -> Sample:
        if item.extra.get("error"):
            raise SourceError(*item.extra["error"])
        f, cam = item.files, item.camera
        intr = read_feather(
            src, f["intrinsics"], ("sensor_name", "fx_px", "fy_px", "cx_px", "cy_px", "width_px", "height_px")
        )
        i = row_of(intr, "sensor_name", cam, f["intrinsics"], f"camera {cam!r}")
        extr = read_feather(src, f["extrinsics"], ("sensor_name", *_QUAT, *_TRANS))
        ego_from_cam = pose_at(extr, row_of(extr, "sensor_name", cam, f["extrinsics"], f"camera {cam!r}"))
        poses = read_feather(src, f["poses"], ("timestamp_ns", *_QUAT, *_TRANS))
        t_cam, t_lidar = item.extra["t_cam"], item.extra["t_lidar"]
        city_from_ego_cam = pose_at(poses, row_of(poses, "timestamp_ns", t_cam, f["poses"], f"camera time {t_cam}"))
        city_from_ego_lidar = pose_at(
            poses, row_of(poses, "timestamp_ns", t_lidar, f["poses"], f"lidar time {t_lidar}")
        )
        sweep = read_feather(src, f["lidar"], ("x", "y", "z"))
        points = np.stack([sweep[c].astype(np.float64) for c in ("x", "y", "z")], axis=1)
        rgb, data, fmt = read_rgb(src, f["rgb"])
        if rgb.shape[:2] != (int(intr["height_px"][i]), int(intr["width_px"][i])):
            raise SourceError(
                f["rgb"],
                f"size {rgb.shape[:2]} differs from intrinsics.feather {intr['height_px'][i]}x{intr['width_px'][i]}",
            )
        cam_from_lidar = invert_pose(ego_from_cam) @ invert_pose(city_from_ego_cam) @ city_from_ego_lidar
        k_px = tuple(float(intr[c][i]) for c in ("fx_px", "fy_px", "cx_px", "cy_px"))
        depth = project_to_depth(transform_points(cam_from_lidar, points), k_px, rgb.shape[:2])
        return make_sample(self.info, item, src, rgb, depth, k_px, data, fmt)
