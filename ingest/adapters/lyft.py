"""Lyft Level 5 perception dataset (lyft/nuscenes-devkit, `lyft_dataset_sdk`): nuScenes-style JSON tables.
--src is the devkit's data_path:
  <version>/{sample_data,calibrated_sensor,sensor,ego_pose,sample,scene}.json    e.g. v1.01-train/
  images/host-*_cam*_<ts>.jpeg, lidar/host-*_lidar*_<ts>.bin                      sample_data.filename
The Kaggle archives hold the same tables as train_data/ and the files as train_images/, train_lidar/: a
table folder named `<prefix>_data` resolves `images/x` as `<prefix>_images/x`.
LiDAR .bin: float32 x 5 per point (x, y, z, intensity, ring), metres, sensor frame.
Depth: every keyframe camera image with its sample's LIDAR_TOP sweep, chained as the devkit's
map_pointcloud_to_image: lidar -> ego (lidar calibrated_sensor) -> global (ego_pose at the lidar time)
-> ego at the camera time (inverse ego_pose) -> camera (inverse camera calibrated_sensor); z > 1 m.
The tables are read once on the driver; each item carries its own calibration and pose records.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator
from typing import Any

import numpy as np

from ingest.base import AdapterInfo, Item, make_sample, read_rgb
from ingest.geometry import invert_pose, pose_from_quat, project_to_depth, transform_points
from ingest.registry import register
from ingest.source import Source, SourceError
from schemas.sample import Sample

LIDAR_CHANNEL = "LIDAR_TOP"
MIN_DEPTH_M = 1.0  # devkit map_pointcloud_to_image min_dist: closer points hit the car body
_IMAGE_EXTS = (".jpeg", ".jpg", ".png")
_TABLES = ("sample_data", "calibrated_sensor", "sensor", "ego_pose", "sample", "scene")


def read_table(src: Source, rel: str) -> list[dict[str, Any]]:
    try:
        rows = json.loads(src.read_text(rel))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{src.uri(rel)}: not valid JSON ({exc})") from None
    if not isinstance(rows, list):
        raise ValueError(f"{src.uri(rel)}: expected a list of records, got {type(rows).__name__}")
    return rows


def read_lidar_bin(src: Source, rel: str) -> np.ndarray:
    """Nx3 points (x, y, z) of a float32 x 5 .bin sweep."""
    data = src.read_bytes(rel)
    if len(data) % 20:
        raise SourceError(rel, f"{len(data)} bytes is not a whole number of 5 x float32 points (truncated?)")
    return np.frombuffer(data, "<f4").reshape(-1, 5)[:, :3]


def _pose(record: dict[str, Any]) -> np.ndarray:
    return pose_from_quat(tuple(record["rotation"]), tuple(record["translation"]))


class _Tables:
    """The six tables of one version folder, indexed by token, with the lookups that name what is missing."""

    def __init__(self, src: Source, folder: str) -> None:
        self.folder = folder
        self.rows = {name: read_table(src, f"{folder}/{name}.json") for name in _TABLES}
        self.by_token = {name: {r["token"]: r for r in rows} for name, rows in self.rows.items()}
        prefix = folder.removesuffix("_data") if folder.endswith("_data") else ""
        self.file_prefix = f"{prefix}_" if prefix else ""

    def get(self, table: str, token: str | None, what: str) -> dict[str, Any]:
        row = self.by_token[table].get(token)
        if row is None:
            raise SourceError(f"{self.folder}/{table}.json", f"no {table} record {token!r} for {what}")
        return row

    def channel(self, sd: dict[str, Any]) -> str:
        cs = self.get("calibrated_sensor", sd.get("calibrated_sensor_token"), sd.get("filename", "?"))
        return self.get("sensor", cs.get("sensor_token"), f"calibrated_sensor {cs['token']}")["channel"]

    def lidar_by_sample(self) -> dict[str, dict[str, Any]]:
        out = {}
        for sd in self.rows["sample_data"]:
            if sd.get("filename", "").endswith(".bin") and sd.get("is_key_frame", True):
                try:
                    if self.channel(sd) == LIDAR_CHANNEL:
                        out[sd["sample_token"]] = sd
                except SourceError:
                    continue  # a sweep without calibration cannot serve any camera: its cameras report it
        return out


@register
class Lyft:
    info = AdapterInfo(
        name="lyft",
        description="Lyft Level 5 keyframe cameras + LIDAR_TOP projected (nuScenes-style chain), sparse",
        sensor="lidar",
        depth_encoding="LiDAR .bin float32 x5 (x, y, z, intensity, ring), projected: z > 1 m, min z per pixel",
        intrinsics="calibrated_sensor.json camera_intrinsic (3x3)",
        splits="train (<version> folders without 'test'), test",
        eval_protocol="none (training set)",
        license="CC BY-NC-SA 4.0 (uncertain; one listing says CC BY-SA 4.0)",
        verified="fixture only; tables and chain from lyft/nuscenes-devkit (schema, map_pointcloud_to_image)",
    )

    def items(self, src: Source, split: str | None, dataset: str) -> Iterator[Item]:
        if split not in (None, "train", "test"):
            raise ValueError(f"lyft has splits train, test; got {split!r}")
        for table_file in src.glob("*/sample_data.json"):
            folder = table_file.split("/")[0]
            sub = "test" if "test" in folder else "train"
            if split in (None, sub):
                yield from self._items(_Tables(src, folder), sub, dataset)

    def _items(self, t: _Tables, split: str, dataset: str) -> Iterator[Item]:
        lidar = t.lidar_by_sample()
        for sd in t.rows["sample_data"]:
            filename = sd.get("filename", "")
            if not filename.endswith(_IMAGE_EXTS) or not sd.get("is_key_frame", True):
                continue
            camera, extra = posixpath.splitext(posixpath.basename(filename))[0], {}
            lidar_sd = lidar.get(sd.get("sample_token"), {})
            try:
                camera = t.channel(sd)
                cam_cs = t.get("calibrated_sensor", sd.get("calibrated_sensor_token"), filename)
                if not cam_cs.get("camera_intrinsic"):
                    raise SourceError(
                        f"{t.folder}/calibrated_sensor.json", f"{cam_cs['token']} has no camera_intrinsic"
                    )
                if not lidar_sd:
                    raise SourceError(
                        f"{t.folder}/sample_data.json",
                        f"sample {sd.get('sample_token')!r} has no {LIDAR_CHANNEL} keyframe",
                    )
                extra = {
                    "k": cam_cs["camera_intrinsic"],
                    "cam_cs": cam_cs,
                    "cam_pose": t.get("ego_pose", sd.get("ego_pose_token"), filename),
                    "lidar_cs": t.get(
                        "calibrated_sensor", lidar_sd.get("calibrated_sensor_token"), lidar_sd["filename"]
                    ),
                    "lidar_pose": t.get("ego_pose", lidar_sd.get("ego_pose_token"), lidar_sd["filename"]),
                }
            except SourceError as exc:
                extra = {"error": (exc.file, exc.reason)}
            sample = t.by_token["sample"].get(sd.get("sample_token"), {})
            scene = t.by_token["scene"].get(sample.get("scene_token"), {}).get("name", sample.get("scene_token", ""))
            yield Item(
                dataset=dataset,
                split=split,
                scene=scene,
                frame=str(sd.get("timestamp", sd.get("token", ""))),
                camera=camera,
                files={
                    "rgb": t.file_prefix + filename,
                    "lidar": t.file_prefix + lidar_sd["filename"] if lidar_sd else "",
                },
                extra=extra,
            )

    def load(self, src: Source, item: Item) -> Sample:
        if item.extra.get("error"):
            raise SourceError(*item.extra["error"])
        e = item.extra
        k = np.asarray(e["k"], np.float64)
        k_px = (k[0, 0], k[1, 1], k[0, 2], k[1, 2])
        # lidar -> ego(lidar t) -> global -> ego(camera t) -> camera
        lidar_to_cam = (
            invert_pose(_pose(e["cam_cs"]))
            @ invert_pose(_pose(e["cam_pose"]))
            @ _pose(e["lidar_pose"])
            @ _pose(e["lidar_cs"])
        )
        points = read_lidar_bin(src, item.files["lidar"])
        rgb, data, fmt = read_rgb(src, item.files["rgb"])
        depth = project_to_depth(transform_points(lidar_to_cam, points), k_px, rgb.shape[:2], MIN_DEPTH_M)
        return make_sample(self.info, item, src, rgb, depth, k_px, data, fmt)
