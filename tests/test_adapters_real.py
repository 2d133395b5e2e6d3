"""Real samples laid out in each dataset's native tree, ingested, checked against the samples' README figures.

The figures (min / median / max depth in metres, valid fraction) come from each sample folder's README in
shared/data/real, computed there by independent decoding/projection. Medians must agree within 1 %, the
valid fraction within 0.1 percentage points, min and max within 1 % (the READMEs round them).
Every layout also gets bad inputs, which must be quarantined with the file and the reason.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from ingest.engine import ingest
from store import open_store

# (min m, median m, max m, valid fraction) as the READMEs state them.
Stats = tuple[float, float, float, float]
INTEGER_CODECS = ("u16", "du16")  # the store keeps integer depth losslessly as either


def _ingest(adapter: str, src: Path, store: Path, **kw) -> tuple[object, dict[tuple[str, str], dict], list[dict]]:
    summary = ingest(adapter, str(src), str(store), workers=0, progress=False, **kw)
    handle = open_store(str(store))
    rows = {(r["frame"], r["camera"]): r for r in handle.catalog().to_pylist()}
    return summary, rows, handle.quarantine().to_pylist()


def _check(row: dict, want: Stats) -> None:
    lo, median, hi, valid = want
    where = (row["frame"], row["camera"])
    assert row["depth_median_m"] == pytest.approx(median, rel=0.01), where
    assert row["valid_frac"] == pytest.approx(valid, abs=0.001), where
    assert row["depth_min_m"] == pytest.approx(lo, rel=0.01), where
    assert row["depth_max_m"] == pytest.approx(hi, rel=0.01), where


def _same_projection(got: np.ndarray, expected: np.ndarray) -> None:
    """Two projections of one cloud through different but equal transform chains: the same pixels (a point
    landing within float noise of a pixel border may round to its neighbour), the same depths."""
    valid_got, valid_expected = got > 0, expected > 0
    assert valid_got.sum() == pytest.approx(valid_expected.sum(), rel=0.002)
    assert (valid_got != valid_expected).sum() <= 0.01 * valid_expected.sum()
    both = valid_got & valid_expected
    assert np.abs(got[both] - expected[both]).max() < 1e-3  # metres


def _k(row: dict) -> tuple[float, float, float, float]:
    return row["fx"], row["fy"], row["cx"], row["cy"]


def _reasons(quarantine: list[dict]) -> dict[str, tuple[str, str]]:
    """item key -> (file name, reason)."""
    return {q["item"]: (q["file"].rsplit("/", 1)[-1], q["reason"]) for q in quarantine}


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    return dst


# ---------------------------------------------------------------- DDAD (TRI dgp test scene)

DDAD_SCENE = "ddad_tri_dgp_testscene/tests/data/dgp/test_scene/scene_01"
DDAD_SCENE_JSON = "scene_a8dc5ed1da0923563f85ea129f0e0a83e7fe1867.json"
DDAD_CALIB = "calibration/c0e1a6f1c439b282be0066d8dfcad9dd54782030.json"
DDAD_LIDAR = "point_cloud/LIDAR/15569195938203752.npz"
DDAD_README = {
    "CAMERA_01": (5.061, 11.435, 226.1, 0.0020),
    "CAMERA_05": (2.594, 20.674, 167.6, 0.0046),
    "CAMERA_06": (2.595, 7.128, 159.2, 0.0044),
}


def ddad_tree(real: Path, out: Path, only_first_sample: bool = True) -> Path:
    """ddad_train_val layout: ddad.json (scene 000000 in val) + the scene folder. The sample ships the files
    of the scene's first sample only; `only_first_sample` trims the scene JSON to it."""
    scene_src, scene_dst = real / DDAD_SCENE, out / "000000"
    for rel in (DDAD_CALIB, DDAD_LIDAR, *(f"rgb/{c}/15569195938415230.jpg" for c in DDAD_README)):
        _copy(scene_src / rel, scene_dst / rel)
    scene = json.loads((scene_src / DDAD_SCENE_JSON).read_text())
    if only_first_sample:
        scene["samples"] = scene["samples"][:1]
        keep = set(scene["samples"][0]["datum_keys"])
        scene["data"] = [d for d in scene["data"] if d["key"] in keep]
    (scene_dst / DDAD_SCENE_JSON).write_text(json.dumps(scene))
    index = {"metadata": {"name": "DDAD"}, "scene_splits": {"1": {"filenames": [f"000000/{DDAD_SCENE_JSON}"]}}}
    (out / "ddad.json").write_text(json.dumps(index))
    return out


@pytest.mark.real
def test_ddad_matches_readme(real_root: Path, tmp_path: Path):
    src = ddad_tree(real_root, tmp_path / "ddad")
    s, rows, _ = _ingest("ddad", src, tmp_path / "store")
    assert (s.ingested, s.quarantined) == (3, 0)
    for camera, want in DDAD_README.items():
        row = rows[("15569195938203752", camera)]
        assert row["split"] == "val" and row["scene"] == "000000" and row["sensor"] == "lidar"
        assert (row["height"], row["width"]) == (1216, 1936)
        _check(row, want)
    assert _k(rows[("15569195938203752", "CAMERA_01")]) == pytest.approx(
        (2167.6926048451924, 2156.230994942208, 951.519334127026, 604.9892891421556), abs=1e-9
    )


@pytest.mark.real
def test_ddad_calibration_path_equals_world_pose_path(real_root: Path, tmp_path: Path):
    """The adapter's extrinsics chain against the scene JSON's world poses (sensor -> world) for CAMERA_01."""
    from ingest.geometry import invert_pose, pose_from_quat, project_to_depth, transform_points

    src = ddad_tree(real_root, tmp_path / "ddad")
    ingest("ddad", str(src), str(tmp_path / "store"), workers=0, progress=False)
    handle = open_store(str(tmp_path / "store"))
    row = next(r for r in handle.catalog().to_pylist() if r["camera"] == "CAMERA_01")
    scene = json.loads((src / "000000" / DDAD_SCENE_JSON).read_text())
    poses = {}
    for d in scene["data"]:
        kind = next(iter(d["datum"]))
        r, t = d["datum"][kind]["pose"]["rotation"], d["datum"][kind]["pose"]["translation"]
        poses[d["id"]["name"]] = pose_from_quat((r["qw"], r["qx"], r["qy"], r["qz"]), (t["x"], t["y"], t["z"]))
    points = np.load(real_root / DDAD_SCENE / DDAD_LIDAR)["data"][:, :3]
    world = invert_pose(poses["CAMERA_01"]) @ poses["LIDAR"]
    expected = project_to_depth(transform_points(world, points), _k(row), (1216, 1936))
    _same_projection(handle.read(row["sample_id"]).depth_m, expected)


@pytest.mark.real
def test_ddad_bad_inputs_are_quarantined(real_root: Path, tmp_path: Path):
    # The full scene JSON lists three samples; the real sample ships the files of the first one only.
    src = ddad_tree(real_root, tmp_path / "full", only_first_sample=False)
    s, _, q = _ingest("ddad", src, tmp_path / "store_full")
    assert (s.ingested, s.quarantined) == (3, 6)
    assert {reason for _, reason in _reasons(q).values()} == {"file not found"}
    assert {name.rsplit(".", 1)[-1] for name, _ in _reasons(q).values()} == {"npz"}

    # A camera the calibration does not know.
    src = ddad_tree(real_root, tmp_path / "unknown_camera")
    calib_path = src / "000000" / DDAD_CALIB
    calib = json.loads(calib_path.read_text())
    calib["names"][calib["names"].index("CAMERA_06")] = "CAMERA_09"
    calib_path.write_text(json.dumps(calib))
    s, rows, q = _ingest("ddad", src, tmp_path / "store_camera")
    assert (s.ingested, s.quarantined) == (2, 1)
    ((file, reason),) = _reasons(q).values()
    assert file == DDAD_CALIB.rsplit("/", 1)[1] and "no calibration entry for sensor 'CAMERA_06'" in reason

    # A truncated lidar file fails all three cameras of the sample.
    src = ddad_tree(real_root, tmp_path / "truncated")
    lidar = src / "000000" / DDAD_LIDAR
    lidar.write_bytes(lidar.read_bytes()[:5000])
    s, _, q = _ingest("ddad", src, tmp_path / "store_truncated")
    assert (s.ingested, s.quarantined) == (0, 3)
    assert all(f.endswith(".npz") and "not a readable .npz" in r for f, r in _reasons(q).values())


# ---------------------------------------------------------------- PandaSet (devkit test data, seq 002)

PANDA = "pandaset_devkit_test/test/data/002"
PANDA_README = {
    "front_camera": (4.992, 14.687, 304.8, 0.0325),
    "left_camera": (3.551, 27.573, 85.5, 0.0129),
}


def pandaset_tree(real: Path, out: Path, seq: str = "002") -> Path:
    for rel in ("lidar/00.pkl.gz", "lidar/poses.json"):
        _copy(real / PANDA / rel, out / seq / rel)
    for camera in PANDA_README:
        for name in ("00.jpg", "intrinsics.json", "poses.json"):
            _copy(real / PANDA / "camera" / camera / name, out / seq / "camera" / camera / name)
    return out


class _RunsShell:
    """A pickle payload that would run a shell command when loaded by the standard unpickler."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.real
def test_pandaset_matches_readme(real_root: Path, tmp_path: Path):
    src = pandaset_tree(real_root, tmp_path / "pandaset")
    s, rows, _ = _ingest("pandaset", src, tmp_path / "store")
    assert (s.ingested, s.quarantined) == (2, 0)
    for camera, want in PANDA_README.items():
        row = rows[("00", camera)]
        assert row["split"] == "train" and row["scene"] == "002"
        _check(row, want)
    assert _k(rows[("00", "front_camera")]) == pytest.approx((1970.0131, 1970.0091, 970.0002, 483.2988), abs=1e-4)
    assert _k(rows[("00", "left_camera")]) == pytest.approx((930.4514, 930.0891, 991.6883, 541.6057), abs=1e-4)


@pytest.mark.real
def test_pandaset_bad_inputs_are_quarantined(real_root: Path, tmp_path: Path):
    src = pandaset_tree(real_root, tmp_path / "pandaset")
    shutil.copytree(src / "002" / "camera" / "front_camera", src / "002" / "camera" / "fisheye_camera")
    pandaset_tree(real_root, src, "003")
    truncated = src / "003" / "lidar" / "00.pkl.gz"
    truncated.write_bytes(truncated.read_bytes()[:100_000])
    pandaset_tree(real_root, src, "004")
    (src / "004" / "camera" / "left_camera" / "poses.json").write_text("[]")
    pandaset_tree(real_root, src, "005")
    marker = tmp_path / "pickle_ran_a_command"
    (src / "005" / "lidar" / "00.pkl.gz").write_bytes(gzip.compress(pickle.dumps(_RunsShell(marker))))

    s, _, q = _ingest("pandaset", src, tmp_path / "store")
    rows = open_store(str(tmp_path / "store")).catalog().to_pylist()
    assert sorted((r["scene"], r["camera"]) for r in rows) == [
        ("002", "front_camera"),
        ("002", "left_camera"),
        ("004", "front_camera"),
    ]
    reasons = _reasons(q)
    assert s.quarantined == len(reasons) == 1 + 2 + 1 + 2
    assert "unknown camera 'fisheye_camera'" in reasons["002/fisheye_camera/00"][1]
    for camera in PANDA_README:
        assert reasons[f"003/{camera}/00"][0] == "00.pkl.gz" and "gzip" in reasons[f"003/{camera}/00"][1]
        assert reasons[f"005/{camera}/00"][0] == "00.pkl.gz"
        assert f"refused to load {os.system.__module__}.system" in reasons[f"005/{camera}/00"][1]
    assert reasons["004/left_camera/00"] == ("poses.json", "no pose for frame 00 (0 poses)")
    assert not marker.exists()


# ---------------------------------------------------------------- nuScenes (v1.0-mini scene-0061, mmdet3d demo)

NUSC = "nuscenes_mini_mmdet3d_demo"
NUSC_README = {"CAM_FRONT": (4.526, 10.328, 98.1, 0.0021), "CAM_BACK": (3.148, 10.179, 95.1, 0.0034)}


def _record(token: str, matrix: np.ndarray, **more) -> dict:
    """A calibrated_sensor / ego_pose record (rotation w, x, y, z; translation m) from a 4x4 transform."""
    x, y, z, w = Rotation.from_matrix(matrix[:3, :3]).as_quat()
    return {"token": token, "rotation": [w, x, y, z], "translation": matrix[:3, 3].tolist(), **more}


def nuscenes_tree(real: Path, out: Path) -> Path:
    """nuScenes dataroot with v1.0-mini tables rebuilt from the demo's calibration (mmdet3d info matrices).

    mmdet3d's lidar2cam includes the ego motion between the lidar and camera times; the camera-time ego
    pose is recovered from it: ego2global(cam) = ego2global(lidar) lidar2ego lidar2cam^-1 cam2ego^-1."""
    calib = json.loads((real / NUSC / "calib_extracted_from_pkl.json").read_text())
    demo = real / NUSC / "demo" / "data" / "nuscenes"
    lidar2ego, ego2global = np.array(calib["lidar2ego"]), np.array(calib["ego2global"])
    sample, scene = "ca9a282c9e77460f8360f564131a8af5", "scene0061token"
    tables: dict[str, list] = {"sample_data": [], "calibrated_sensor": [], "ego_pose": [], "sensor": []}
    channels = {"LIDAR_TOP": calib["lidar_path"]} | {c: v["img_path"] for c, v in calib["cameras"].items()}
    for channel, file in channels.items():
        _copy(demo / file, out / "samples" / channel / file)
        if channel == "LIDAR_TOP":
            sensor_to_ego, ego, extra = lidar2ego, ego2global, {"camera_intrinsic": []}
        else:
            cam = calib["cameras"][channel]
            cam2ego = np.array(cam["cam2ego"])
            sensor_to_ego = cam2ego
            ego = ego2global @ lidar2ego @ np.linalg.inv(np.array(cam["lidar2cam"])) @ np.linalg.inv(cam2ego)
            extra = {"camera_intrinsic": cam["cam2img"]}
        modality = "lidar" if channel == "LIDAR_TOP" else "camera"
        tables["sensor"].append({"token": f"sensor_{channel}", "channel": channel, "modality": modality})
        tables["calibrated_sensor"].append(
            _record(f"cs_{channel}", sensor_to_ego, sensor_token=f"sensor_{channel}", **extra)
        )
        tables["ego_pose"].append(_record(f"ego_{channel}", ego, timestamp=0))
        tables["sample_data"].append(
            {
                "token": f"sd_{channel}",
                "sample_token": sample,
                "ego_pose_token": f"ego_{channel}",
                "calibrated_sensor_token": f"cs_{channel}",
                "filename": f"samples/{channel}/{file}",
                "fileformat": "pcd" if channel == "LIDAR_TOP" else "jpg",
                "is_key_frame": True,
                "width": 0 if channel == "LIDAR_TOP" else 1600,
                "height": 0 if channel == "LIDAR_TOP" else 900,
                "timestamp": int(file.rsplit("__", 1)[1].split(".")[0]),
                "prev": "",
                "next": "",
            }
        )
    tables["sample"] = [{"token": sample, "timestamp": 1532402927647951, "scene_token": scene, "prev": "", "next": ""}]
    tables["scene"] = [{"token": scene, "name": "scene-0061", "first_sample_token": sample}]
    (out / "v1.0-mini").mkdir(parents=True)
    for name, rows in tables.items():
        (out / "v1.0-mini" / f"{name}.json").write_text(json.dumps(rows))
    return out


@pytest.mark.real
def test_nuscenes_native_tables_match_readme(real_root: Path, tmp_path: Path):
    src = nuscenes_tree(real_root, tmp_path / "nuscenes")
    s, rows, _ = _ingest("nuscenes", src, tmp_path / "store")
    assert (s.ingested, s.quarantined) == (6, 0)
    sample = "ca9a282c9e77460f8360f564131a8af5"
    for camera, want in NUSC_README.items():
        _check(rows[(sample, camera)], want)
    for camera in ("CAM_FRONT_LEFT", "CAM_FRONT_RIGHT", "CAM_BACK_LEFT", "CAM_BACK_RIGHT"):
        assert 0.00205 <= rows[(sample, camera)]["valid_frac"] < 0.00285, camera  # README: 0.21-0.28 %
    assert {r["scene"] for r in rows.values()} == {"scene-0061"}
    assert {r["split"] for r in rows.values()} == {"test"}
    assert _k(rows[(sample, "CAM_FRONT")]) == pytest.approx(
        (1266.417203046554, 1266.417203046554, 816.2670197447984, 491.50706579294757), abs=1e-9
    )


@pytest.mark.real
def test_nuscenes_chain_equals_mmdet3d_lidar2cam(real_root: Path, tmp_path: Path):
    """The table chain (4 transforms) reproduces mmdet3d's single lidar2cam matrix for every camera."""
    from ingest.geometry import project_to_depth, transform_points

    src = nuscenes_tree(real_root, tmp_path / "nuscenes")
    ingest("nuscenes", str(src), str(tmp_path / "store"), workers=0, progress=False)
    handle = open_store(str(tmp_path / "store"))
    calib = json.loads((real_root / NUSC / "calib_extracted_from_pkl.json").read_text())
    raw = np.fromfile(real_root / NUSC / "demo" / "data" / "nuscenes" / calib["lidar_path"], np.float32)
    points = raw.reshape(-1, 5)[:, :3]
    for row in handle.catalog().to_pylist():
        lidar2cam = np.array(calib["cameras"][row["camera"]]["lidar2cam"])
        expected = project_to_depth(transform_points(lidar2cam, points), _k(row), (900, 1600), min_depth_m=1.0)
        _same_projection(handle.read(row["sample_id"]).depth_m, expected)


@pytest.mark.real
def test_nuscenes_bad_inputs_are_quarantined(real_root: Path, tmp_path: Path):
    src = nuscenes_tree(real_root, tmp_path / "nuscenes")
    tables = src / "v1.0-mini"
    calibrated = json.loads((tables / "calibrated_sensor.json").read_text())
    calibrated = [r for r in calibrated if r["token"] != "cs_CAM_BACK"]
    (tables / "calibrated_sensor.json").write_text(json.dumps(calibrated))
    sensors = json.loads((tables / "sensor.json").read_text())
    next(r for r in sensors if r["channel"] == "CAM_FRONT_LEFT")["channel"] = "CAM_ROOF"
    (tables / "sensor.json").write_text(json.dumps(sensors))
    s, rows, q = _ingest("nuscenes", src, tmp_path / "store")
    assert (s.ingested, s.quarantined) == (4, 2)
    reasons = {key.split("/")[1]: value for key, value in _reasons(q).items()}
    assert reasons["CAM_BACK"] == (
        "calibrated_sensor.json",
        "no calibrated_sensor record for CAM_BACK sample_data sd_CAM_BACK",
    )
    assert reasons["CAM_FRONT_LEFT"] == ("sensor.json", "unknown sensor for CAM_FRONT_LEFT (sensor table: 'CAM_ROOF')")

    src = nuscenes_tree(real_root, tmp_path / "truncated")
    lidar = next((src / "samples" / "LIDAR_TOP").iterdir())
    lidar.write_bytes(lidar.read_bytes()[:-7])
    s, _, q = _ingest("nuscenes", src, tmp_path / "store_truncated")
    assert (s.ingested, s.quarantined) == (0, 6)
    assert all(f == lidar.name and "not a whole number" in r for f, r in _reasons(q).values())


# ---------------------------------------------------------------- KITTI object (OpenPCDet + Argoverse in KITTI format)

KOBJ = "kitti_object_openpcdet/data/kitti/training"
ARGO = "argoverse1_kittiformat_kitti_object_vis/data/object/training"
KOBJ_README = {"000000": (4.219, 11.665, 72.73, 0.0447), "000001": (4.771, 12.505, 76.729, 0.0400)}
ARGO_README = (6.075, 36.191, 216.882, 0.0177)


def kitti_object_tree(real: Path, folder: str, frames: list[str], out: Path) -> Path:
    for frame in frames:
        for sub, ext in (("image_2", "png"), ("velodyne", "bin"), ("calib", "txt")):
            _copy(real / folder / sub / f"{frame}.{ext}", out / "training" / sub / f"{frame}.{ext}")
    return out


@pytest.mark.real
def test_kitti_object_matches_readme(real_root: Path, tmp_path: Path):
    src = kitti_object_tree(real_root, KOBJ, list(KOBJ_README), tmp_path / "kitti")
    s, rows, _ = _ingest("kitti_object", src, tmp_path / "store")
    assert (s.ingested, s.quarantined) == (2, 0)
    for frame, want in KOBJ_README.items():
        assert rows[(frame, "image_2")]["split"] == "train"
        _check(rows[(frame, "image_2")], want)
    assert _k(rows[("000000", "image_2")]) == (707.0493, 707.0493, 604.0814, 180.5066)
    assert _k(rows[("000001", "image_2")]) == (721.5377, 721.5377, 609.5593, 172.854)
    assert (rows[("000000", "image_2")]["height"], rows[("000000", "image_2")]["width"]) == (370, 1224)

    src = kitti_object_tree(real_root, ARGO, ["000000"], tmp_path / "argo")
    s, rows, _ = _ingest("kitti_object", src, tmp_path / "store_argo", name="argoverse1_kitti")
    assert (s.ingested, s.quarantined) == (1, 0)
    _check(rows[("000000", "image_2")], ARGO_README)
    assert _k(rows[("000000", "image_2")]) == pytest.approx((973.5085, 973.5085, 234.3925, 265.7998), abs=1e-3)


@pytest.mark.real
def test_kitti_object_bad_inputs_are_quarantined(real_root: Path, tmp_path: Path):
    src = kitti_object_tree(real_root, KOBJ, list(KOBJ_README), tmp_path / "kitti")
    calib = src / "training" / "calib" / "000000.txt"
    calib.write_text("\n".join(line for line in calib.read_text().splitlines() if not line.startswith("P2")))
    velodyne = src / "training" / "velodyne" / "000001.bin"
    velodyne.write_bytes(velodyne.read_bytes()[:-6])
    _copy(real_root / KOBJ / "image_2" / "000001.png", src / "training" / "image_2" / "000002.png")
    s, _, q = _ingest("kitti_object", src, tmp_path / "store")
    assert (s.ingested, s.quarantined) == (0, 3)
    reasons = _reasons(q)
    assert reasons["training/image_2/000000"] == ("000000.txt", "no P2 entry in the calibration file")
    assert reasons["training/image_2/000001"][0] == "000001.bin"
    assert "not a whole number of 4-float32 points" in reasons["training/image_2/000001"][1]
    assert reasons["training/image_2/000002"] == ("000002.txt", "file not found")


# ---------------------------------------------------------------- TUM RGB-D (Open3D frame)

TUM = "tum_rgbd_open3d/examples/TestData/RGBD/other_formats"
TUM_README = (1.464, 2.415, 9.331, 0.808)


def tum_sequence(real: Path, out: Path) -> Path:
    """A TUM sequence folder: the frame's colour at t = 0.175304 s, depth at 0.160407 s (15 ms apart), and a
    colour frame 1 s later with no depth partner."""
    _copy(real / TUM / "TUM_color.png", out / "rgb" / "1305031102.175304.png")
    _copy(real / TUM / "TUM_color.png", out / "rgb" / "1305031103.175304.png")
    _copy(real / TUM / "TUM_depth.png", out / "depth" / "1305031102.160407.png")
    header = "# timestamp filename\n# file: 'rgbd_dataset.bag'\n"
    rgb = "1305031102.175304 rgb/1305031102.175304.png\n1305031103.175304 rgb/1305031103.175304.png\n"
    (out / "rgb.txt").write_text(header + rgb)
    (out / "depth.txt").write_text(header + "1305031102.160407 depth/1305031102.160407.png\n")
    return out


@pytest.mark.real
def test_tum_matches_readme(real_root: Path, tmp_path: Path):
    tum_sequence(real_root, tmp_path / "tum" / "open3d_frame")  # sequence unknown: TUM's default intrinsics
    tum_sequence(real_root, tmp_path / "tum" / "rgbd_dataset_freiburg1_xyz")
    s, _, _ = _ingest("tum", tmp_path / "tum", tmp_path / "store")
    assert (s.ingested, s.quarantined) == (2, 0)
    rows = {r["scene"]: r for r in open_store(str(tmp_path / "store")).catalog().to_pylist()}
    for row in rows.values():
        _check(row, TUM_README)
        assert row["frame"] == "1305031102.160407" and row["depth_codec"] in INTEGER_CODECS
        assert row["depth_scale"] == 5000
        assert row["source_uris"][0].endswith("rgb/1305031102.175304.png")
    assert _k(rows["open3d_frame"]) == (525.0, 525.0, 319.5, 239.5)
    assert _k(rows["rgbd_dataset_freiburg1_xyz"]) == (517.3, 516.5, 318.6, 255.3)


@pytest.mark.real
def test_tum_bad_inputs_are_quarantined(real_root: Path, tmp_path: Path):
    src = tum_sequence(real_root, tmp_path / "seq")
    Image.fromarray(np.full((480, 640), 9, np.uint8)).save(src / "depth" / "1305031103.170000.png")
    with (src / "depth.txt").open("a") as f:
        f.write("1305031103.170000 depth/1305031103.170000.png\n1305031104.170000 depth/missing.png\n")
    (src / "rgb" / "1305031104.175304.png").write_bytes((src / "rgb" / "1305031102.175304.png").read_bytes())
    with (src / "rgb.txt").open("a") as f:
        f.write("1305031104.175304 rgb/1305031104.175304.png\n")
    s, _, q = _ingest("tum", src, tmp_path / "store")
    assert (s.ingested, s.quarantined) == (1, 2)
    files = {f: r for f, r in _reasons(q).values()}
    assert "single-channel uint16" in files["1305031103.170000.png"]
    assert files["missing.png"] == "file not found"


# ---------------------------------------------------------------- SUN RGB-D (Open3D frame)

SUN = "sunrgbd_open3d/examples/TestData/RGBD/other_formats"
SUN_README = (1.057, 2.723, 9.870, 0.818)
# The sample lost its intrinsics.txt; the README's stand-in (PrimeSense default) fills the frame folder.
SUN_K_STANDIN = "525.000000 0.000000 319.500000\n0.000000 525.000000 239.500000\n0.000000 0.000000 1.000000\n"


def sun_frame(real: Path, folder: Path, intrinsics: bool = True) -> Path:
    _copy(real / SUN / "SUN_color.jpg", folder / "image" / "SUN_color.jpg")
    _copy(real / SUN / "SUN_depth.png", folder / "depth" / "SUN_depth.png")
    # The filled copy must not be read: a constant 1 m map would change every statistic.
    Image.fromarray(np.full((480, 640), 1000 << 3, np.uint16)).save(_copy_dir(folder / "depth_bfx") / "SUN_depth.png")
    if intrinsics:
        (folder / "intrinsics.txt").write_text(SUN_K_STANDIN)
    return folder


def _copy_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.real
def test_sunrgbd_matches_readme(real_root: Path, tmp_path: Path):
    sun_frame(real_root, tmp_path / "SUNRGBD" / "xtion" / "sun3ddata" / "open3d" / "0000001")
    s, rows, _ = _ingest("sunrgbd", tmp_path / "SUNRGBD", tmp_path / "store")
    assert (s.ingested, s.quarantined) == (1, 0)
    row = rows[("SUN_color", "xtion")]
    _check(row, SUN_README)
    assert row["sensor"] == "structured_light" and row["depth_codec"] in INTEGER_CODECS
    assert row["depth_scale"] == 1000
    assert _k(row) == (525.0, 525.0, 319.5, 239.5)


@pytest.mark.real
def test_sunrgbd_bad_inputs_are_quarantined(real_root: Path, tmp_path: Path):
    root = tmp_path / "SUNRGBD"
    sun_frame(real_root, root / "kv1" / "NYUdata" / "NYU0001", intrinsics=False)
    bad_k = sun_frame(real_root, root / "kv2" / "kinect2data" / "000001")
    (bad_k / "intrinsics.txt").write_text("525 0 319.5\n0 525 239.5\n")
    s, _, q = _ingest("sunrgbd", root, tmp_path / "store")
    assert (s.ingested, s.quarantined) == (0, 2)
    reasons = _reasons(q)
    assert reasons["kv1/NYUdata/NYU0001/kv1/SUN_color"] == ("intrinsics.txt", "file not found")
    assert "6 numbers, expected 9" in reasons["kv2/kinect2data/000001/kv2/SUN_color"][1]


# ---------------------------------------------------------------- GraspNet-1Billion (example frame)

GRASP = "graspnet_example/doc/example_data"
GRASP_README = (0.229, 0.451, 1.590, 0.895)


def graspnet_scene(real: Path, out: Path, scene: str = "scene_0100", camera: str = "kinect") -> Path:
    folder = out / "scenes" / scene / camera
    _copy(real / GRASP / "color.png", folder / "rgb" / "0000.png")
    _copy(real / GRASP / "depth.png", folder / "depth" / "0000.png")
    _copy(real / GRASP / "meta.mat", folder / "meta" / "0000.mat")
    return out


@pytest.mark.real
def test_graspnet_matches_readme(real_root: Path, tmp_path: Path):
    src = graspnet_scene(real_root, tmp_path / "graspnet")
    graspnet_scene(real_root, src, "scene_0007")
    s, _, _ = _ingest("graspnet", src, tmp_path / "store")
    assert (s.ingested, s.quarantined) == (2, 0)
    rows = {r["scene"]: r for r in open_store(str(tmp_path / "store")).catalog().to_pylist()}
    assert (rows["scene_0100"]["split"], rows["scene_0007"]["split"]) == ("test", "train")
    for row in rows.values():
        _check(row, GRASP_README)
        assert row["sensor"] == "tof" and row["depth_scale"] == 1000.0 and row["camera"] == "kinect"
        assert _k(row) == pytest.approx((631.54864502, 631.20751953, 638.43517329, 366.49904066), abs=1e-6)
    s, rows, _ = _ingest("graspnet", src, tmp_path / "store_train", split="train")
    assert s.ingested == 1 and {r["scene"] for r in rows.values()} == {"scene_0007"}


@pytest.mark.real
def test_graspnet_bad_inputs_are_quarantined(real_root: Path, tmp_path: Path):
    import scipy.io

    src = graspnet_scene(real_root, tmp_path / "graspnet", "scene_0101", "azure")
    graspnet_scene(real_root, src, "scene_0102")
    meta = src / "scenes" / "scene_0102" / "kinect" / "meta" / "0000.mat"
    meta.write_bytes(meta.read_bytes()[:-10])
    graspnet_scene(real_root, src, "scene_0103")
    no_factor = src / "scenes" / "scene_0103" / "kinect" / "meta" / "0000.mat"
    scipy.io.savemat(
        no_factor, {"intrinsic_matrix": scipy.io.loadmat(real_root / GRASP / "meta.mat")["intrinsic_matrix"]}
    )
    s, _, q = _ingest("graspnet", src, tmp_path / "store")
    assert (s.ingested, s.quarantined) == (0, 3)
    reasons = _reasons(q)
    assert "unknown camera 'azure'" in reasons["scene_0101/azure/0000"][1]
    assert reasons["scene_0102/kinect/0000"][0] == "0000.mat"
    assert "not a readable MATLAB" in reasons["scene_0102/kinect/0000"][1]
    assert reasons["scene_0103/kinect/0000"] == ("0000.mat", "no factor_depth in the .mat file")


# ---------------------------------------------------------------- ClearGrasp (real-val d435)

CLEAR = "cleargrasp_realval_d435/data/sample_dataset/real-val/d435"
# Opaque-replica depth: the ground truth for both the opaque and the transparent image of a frame.
CLEAR_README = {"000000080": (0.429, 0.599, 0.949, 0.912), "000000123": (0.345, 0.603, 1.050, 0.803)}
CLEAR_TRANSPARENT_README = {"000000080": (0.429, 0.619, 0.951, 0.864), "000000123": (0.345, 0.603, 1.050, 0.763)}


def cleargrasp_tree(real: Path, out: Path) -> Path:
    for f in (real / CLEAR).iterdir():
        if not f.name.endswith("-mask.png"):
            _copy(f, out / "real-val" / "d435" / f.name)
    return out


@pytest.mark.real
def test_cleargrasp_matches_readme(real_root: Path, tmp_path: Path):
    src = cleargrasp_tree(real_root, tmp_path / "cleargrasp")
    s, rows, _ = _ingest("cleargrasp", src, tmp_path / "store")
    assert (s.ingested, s.quarantined) == (4, 0)
    for frame, want in CLEAR_README.items():
        for variant in ("opaque", "transparent"):
            row = rows[(frame, variant)]
            assert row["split"] == "val" and row["depth_codec"] == "f32" and _k(row) == (921.0, 921.0, 642.0, 359.0)
            assert row["source_uris"][0].endswith(f"{frame}-{variant}-rgb-img.jpg")
            assert row["source_uris"][1].endswith(f"{frame}-opaque-depth-img.exr")
            _check(row, want)


@pytest.mark.real
def test_cleargrasp_exr_reader_matches_readme_for_all_depth_files(real_root: Path):
    from ingest.adapters.cleargrasp import read_exr_channel

    for frame in CLEAR_README:
        for variant, table in (("opaque", CLEAR_README), ("transparent", CLEAR_TRANSPARENT_README)):
            data = (real_root / CLEAR / f"{frame}-{variant}-depth-img.exr").read_bytes()
            r, g = read_exr_channel(data, "R"), read_exr_channel(data, "G")
            assert np.array_equal(r, g, equal_nan=True)  # three identical channels
            v = r[np.isfinite(r) & (r > 0)]
            lo, median, hi, valid = table[frame]
            assert (r.shape, v.size / r.size) == ((720, 1280), pytest.approx(valid, abs=0.001))
            assert (v.min(), np.median(v), v.max()) == pytest.approx((lo, median, hi), rel=0.01)


@pytest.mark.real
def test_cleargrasp_bad_inputs_are_quarantined(real_root: Path, tmp_path: Path):
    src = cleargrasp_tree(real_root, tmp_path / "cleargrasp")
    exr = src / "real-val" / "d435" / "000000080-opaque-depth-img.exr"
    exr.write_bytes(exr.read_bytes()[:20_000])
    shutil.copytree(src / "real-val" / "d435", src / "real-test" / "d415")
    yaml_file = src / "real-test" / "d415" / "camera_intrinsics.yaml"
    yaml_file.write_text(yaml_file.read_text().replace("xres: 1280", "xres: 640"))
    s, rows, q = _ingest("cleargrasp", src, tmp_path / "store")
    assert (s.ingested, s.quarantined) == (2, 6)
    assert {(r["frame"], r["split"]) for r in rows.values()} == {("000000123", "val")}
    reasons = _reasons(q)
    for variant in ("opaque", "transparent"):
        file, reason = reasons[f"real-val/d435/{variant}/000000080"]
        assert file == exr.name and "truncated" in reason
        for frame in CLEAR_README:
            assert "differs from the intrinsics' (720, 640)" in reasons[f"real-test/d415/{variant}/{frame}"][1]


# ---------------------------------------------------------------- folder (user layout, TUM frame)


def user_folder(real: Path, out: Path) -> Path:
    """The TUM frame twice: uint16 PNG depth (/5000) and the same depth as float metres in .npy."""
    raw = np.asarray(Image.open(real / TUM / "TUM_depth.png"))
    _copy(real / TUM / "TUM_color.png", out / "rgb" / "office_png.png")
    _copy(real / TUM / "TUM_depth.png", out / "depth" / "office_png.png")
    _copy(real / TUM / "TUM_color.png", out / "rgb" / "office_npy.png")
    np.save(out / "depth" / "office_npy.npy", np.where(raw > 0, raw / 5000.0, np.nan).astype(np.float32))
    (out / "dataset.json").write_text(json.dumps({"depth_scale": 5000, "sensor": "structured_light"}))
    k = {"fx": 525.0, "fy": 525.0, "cx": 319.5, "cy": 239.5}
    (out / "intrinsics.json").write_text(json.dumps(k | {"per_image": {"office_npy": {**k, "fx": 530.0}}}))
    return out


@pytest.mark.real
def test_folder_layout_matches_readme(real_root: Path, tmp_path: Path):
    src = user_folder(real_root, tmp_path / "mine")
    (src / "train.txt").write_text("office_png\n")
    (src / "val.txt").write_text("office_npy.png\n")
    s, rows, _ = _ingest("folder", src, tmp_path / "store", name="my_rgbd")
    assert (s.ingested, s.quarantined) == (2, 0)
    png, npy = rows[("office_png", "camera")], rows[("office_npy", "camera")]
    assert (png["split"], npy["split"]) == ("train", "val")
    assert png["depth_codec"] in INTEGER_CODECS and png["depth_scale"] == 5000.0 and npy["depth_codec"] == "f32"
    assert (_k(png), _k(npy)) == ((525.0, 525.0, 319.5, 239.5), (530.0, 525.0, 319.5, 239.5))
    for row in (png, npy):
        assert row["dataset"] == "my_rgbd" and row["sensor"] == "structured_light"
        _check(row, TUM_README)


@pytest.mark.real
def test_folder_bad_inputs_are_quarantined(real_root: Path, tmp_path: Path):
    src = user_folder(real_root, tmp_path / "mine")
    (src / "train.txt").write_text("office_png\nghost\n")
    (src / "val.txt").write_text("office_npy\n")
    _copy(src / "depth" / "office_png.png", src / "depth" / "office_npy.png")  # two depth files for office_npy
    _copy(src / "rgb" / "office_png.png", src / "rgb" / "unlisted.png")
    s, rows, q = _ingest("folder", src, tmp_path / "store")
    assert (s.ingested, s.quarantined) == (1, 3)
    assert set(rows) == {("office_png", "camera")}
    reasons = _reasons(q)
    assert reasons["camera/ghost"] == ("ghost.png", "file not found")
    assert reasons["camera/unlisted"] == (
        "unlisted.png",
        "image listed in no split file; list each image in exactly one split file",
    )
    assert reasons["camera/office_npy"][1].startswith("two depth files for 'office_npy'")

    (src / "dataset.json").write_text(json.dumps({"depth_scale": 5000, "sensor": "kinect"}))
    with pytest.raises(ValueError, match="sensor must be one of"):
        ingest("folder", str(src), str(tmp_path / "store2"), workers=0, progress=False)
