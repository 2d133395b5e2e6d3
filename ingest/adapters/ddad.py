"""DDAD (and other DGP scene datasets): lidar projected into each camera, one sample per camera per sample.

--src is the folder holding the DGP dataset index, as `DDAD.tar` unpacks (`ddad_train_val/`):
  ddad.json                                   {"scene_splits": {"0": {"filenames": [...]}, "1": ...}}
                                              (0 train, 1 val, 2 test; any root *.json with scene_splits)
  <scene>/scene_<sha1>.json                   samples[] -> datum_keys + calibration_key; data[] -> datums
  <scene>/calibration/<calibration_key>.json  names[], intrinsics[] {fx,fy,cx,cy,skew}, extrinsics[]
                                              (sensor -> vehicle: rotation qw,qx,qy,qz + translation)
  <scene>/rgb/CAMERA_XX/<timestamp>.png
  <scene>/point_cloud/LIDAR/<timestamp>.npz   key `data`, columns per the datum's point_format (X,Y,Z,...)
Depth: p_cam = T_ext(camera)^-1 T_ext(lidar) p, z-depth of the nearest point per pixel, nothing densified.
"""

from __future__ import annotations

import io
import json
import posixpath
import zipfile
from collections.abc import Iterator
from typing import Any

import numpy as np

from ingest.base import AdapterInfo, Item, make_sample, read_rgb
from ingest.geometry import invert_pose, pose_from_quat, project_to_depth, transform_points
from ingest.registry import register
from ingest.source import Source, SourceError
from schemas.sample import Sample

# dgp.proto DatasetSplit: TRAIN 0, VAL 1, TEST 2 (TRAIN_OVERFIT 3 is a subset of train and is skipped).
_SPLITS = {"0": "train", "1": "val", "2": "test"}


def _json(src: Source, rel: str) -> Any:
    try:
        return json.loads(src.read_text(rel))
    except json.JSONDecodeError as exc:
        raise SourceError(rel, f"not valid JSON ({exc})") from None


def _dataset_index(src: Source) -> dict[str, Any]:
    for rel in src.glob("*.json"):
        index = _json(src, rel)
        if isinstance(index, dict) and "scene_splits" in index:
            return index
    raise ValueError(f"{src.url}: no DGP dataset index (a *.json with 'scene_splits', e.g. ddad.json) at the root")


def _pose(entry: dict[str, Any], file: str, what: str) -> np.ndarray:
    try:
        r, t = entry["rotation"], entry["translation"]
        return pose_from_quat((r["qw"], r["qx"], r["qy"], r["qz"]), (t["x"], t["y"], t["z"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise SourceError(file, f"{what}: bad pose ({exc!r})") from None


def _read_points(src: Source, rel: str, xyz: list[int]) -> np.ndarray:
    """Nx3 float64 points (metres) from a DGP .npz: a 2-D array under `data`, or a structured one with X,Y,Z."""
    raw = src.read_bytes(rel)
    try:
        # An .npz is a zip: the members' declared sizes bound what np.load inflates (zipfile stops there).
        declared = sum(info.file_size for info in zipfile.ZipFile(io.BytesIO(raw)).infolist())
        if declared > src.max_file_bytes:
            raise src.over_bytes(rel, f".npz content of {declared} bytes")
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            data = npz["data"]
    except SourceError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise SourceError(rel, f"not a readable .npz point cloud ({exc})") from None
    except KeyError:
        raise SourceError(rel, "no 'data' array in the .npz") from None
    if data.dtype.names:
        if not {"X", "Y", "Z"} <= set(data.dtype.names):
            raise SourceError(rel, f"structured point cloud without X, Y, Z fields: {data.dtype.names}")
        return np.stack([data["X"], data["Y"], data["Z"]], axis=1).astype(np.float64)
    if data.ndim != 2 or data.shape[1] <= max(xyz):
        raise SourceError(rel, f"point cloud shape {data.shape}, expected N x {len(xyz)}+ columns")
    return data[:, xyz].astype(np.float64)


@register
class Ddad:
    info = AdapterInfo(
        name="ddad",
        description="DDAD / DGP scenes: lidar .npz projected into each camera with the calibration extrinsics",
        sensor="lidar",
        depth_encoding="none: lidar points (vehicle frame, m) projected to z-depth, float32, 0 invalid",
        intrinsics="calibration/<key>.json intrinsics[camera] fx, fy, cx, cy (skew must be 0)",
        splits="train, val, test from the dataset index scene_splits (0, 1, 2)",
        eval_protocol="ddad: no crop, 0-200 m (packnet-sfm), front camera CAMERA_01",
        license="CC BY-NC-SA 4.0",
        verified=(
            "TRI dgp test scene (real): calibration path, 3 cameras, statistics match the sample's README; "
            "ddad.json index layout and split numbers from dgp.proto (the sample has no DDAD index)"
        ),
    )

    def items(self, src: Source, split: str | None, dataset: str) -> Iterator[Item]:
        if split is not None and split not in _SPLITS.values():
            raise ValueError(f"ddad has splits {', '.join(_SPLITS.values())}; got {split!r}")
        index = _dataset_index(src)
        for code, group in sorted(index["scene_splits"].items()):
            name = _SPLITS.get(str(code))
            if name is None or (split is not None and name != split):
                continue
            for scene_rel in group.get("filenames", []):
                yield from self._scene_items(src, dataset, name, src.safe_rel(scene_rel))

    def _scene_items(self, src: Source, dataset: str, split: str, scene_rel: str) -> Iterator[Item]:
        scene_dir = posixpath.dirname(scene_rel)
        scene = _json(src, scene_rel)
        data = {d["key"]: d for d in scene.get("data", [])}
        for sample in scene.get("samples", []):
            datums = [data[k] for k in sample.get("datum_keys", []) if k in data]
            clouds = [d for d in datums if "point_cloud" in d["datum"]]
            if not clouds:
                continue  # a sample without lidar (DDAD test) has no ground truth
            lidar = next((d for d in clouds if d["id"]["name"] == "LIDAR"), clouds[0])
            cloud = lidar["datum"]["point_cloud"]
            fmt = [str(f) for f in cloud.get("point_format", [])] or ["X", "Y", "Z"]
            xyz = [fmt.index(a) for a in ("X", "Y", "Z")] if {"X", "Y", "Z"} <= set(fmt) else [0, 1, 2]
            lidar_rel = posixpath.join(scene_dir, cloud["filename"])
            for d in datums:
                if "image" not in d["datum"]:
                    continue
                yield Item(
                    dataset=dataset,
                    split=split,
                    scene=posixpath.basename(scene_dir) or scene_rel,
                    frame=posixpath.splitext(posixpath.basename(cloud["filename"]))[0],
                    camera=d["id"]["name"],
                    files={
                        "rgb": posixpath.join(scene_dir, d["datum"]["image"]["filename"]),
                        "lidar": lidar_rel,
                        "calib": posixpath.join(scene_dir, "calibration", f"{sample['calibration_key']}.json"),
                    },
                    extra={"lidar": lidar["id"]["name"], "xyz": xyz},
                )

    def load(self, src: Source, item: Item) -> Sample:
        calib_rel = item.files["calib"]
        calib = _json(src, calib_rel)
        names = list(calib.get("names", []))
        for sensor in (item.camera, item.extra["lidar"]):
            if sensor not in names:
                raise SourceError(calib_rel, f"no calibration entry for sensor {sensor!r} (names: {names})")
        cam, lidar = names.index(item.camera), names.index(item.extra["lidar"])
        try:
            intr = calib["intrinsics"][cam]
            k_px = (float(intr["fx"]), float(intr["fy"]), float(intr["cx"]), float(intr["cy"]))
            skew = float(intr.get("skew", 0.0))
            ext_cam, ext_lidar = calib["extrinsics"][cam], calib["extrinsics"][lidar]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise SourceError(calib_rel, f"intrinsics/extrinsics of {item.camera!r} unreadable ({exc!r})") from None
        if abs(skew) > 1e-9:
            raise SourceError(calib_rel, f"{item.camera}: skew {skew:g} px, the pinhole (fx, fy, cx, cy) has none")
        lidar_to_cam = invert_pose(_pose(ext_cam, calib_rel, item.camera)) @ _pose(ext_lidar, calib_rel, "lidar")
        points = _read_points(src, item.files["lidar"], item.extra["xyz"])
        rgb, data, fmt = read_rgb(src, item.files["rgb"])
        depth = project_to_depth(transform_points(lidar_to_cam, points), k_px, rgb.shape[:2])
        return make_sample(self.info, item, src, rgb, depth, k_px, data, fmt)
