"""Dataset adapters on tiny fixtures in each native layout: known depth at known pixels, bad files quarantined.

Each builder writes one dataset's native tree and returns what ingest must produce: per frame the
intrinsics, exact depths at chosen pixels and the count of valid pixels, and per bad file a
(file suffix, reason fragment) pair that must appear in the quarantine table.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pytest

from ingest.docs import render
from ingest.engine import ingest
from ingest.registry import all_adapters
from schemas.sample import SENSOR_KINDS
from store import open_store

H, W = 12, 16
Frames = dict[str, dict]
Bad = list[tuple[str, str]]


def put(path: Path, data: bytes | str | np.ndarray) -> None:
    """Write bytes, text or an image (encoded by the file's extension; uint16 arrays become 16-bit PNGs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, np.ndarray):
        ext = ".jpg" if path.suffix.lower() in (".jpg", ".jpeg") else ".png"
        data = cv2.imencode(ext, data)[1].tobytes()
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def rgb(h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)


def u16(pixels: dict[tuple[int, int], int], h: int = H, w: int = W) -> np.ndarray:
    raw = np.zeros((h, w), np.uint16)
    for (r, c), v in pixels.items():
        raw[r, c] = v
    return raw


def truncated_png() -> bytes:
    data = cv2.imencode(".png", u16({(1, 1): 1000}))[1].tobytes()
    return data[: len(data) // 2]


# -- builders: one per adapter ------------------------------------------------------------------------


def cityscapes(root: Path) -> tuple[Frames, Bad]:
    cam = {"extrinsic": {"baseline": 0.5}, "intrinsic": {"fx": 100.0, "fy": 101.0, "u0": 8.0, "v0": 6.0}}
    # p = 8 * 256 + 1 -> d = 8 px -> 0.5 * 100 / 8 = 6.25 m; p = 16 * 256 + 1 -> 3.125 m; p = 1 -> d = 0, invalid
    disp = u16({(5, 7): 2049, (3, 3): 4097, (2, 3): 1})
    for layout, stem in (
        ("", "aachen_000000_000019"),
        ("_sequence", "aachen_000000_000019"),
        ("_sequence", "aachen_000000_000018"),
    ):
        put(root / f"leftImg8bit{layout}/train/aachen/{stem}_leftImg8bit.png", rgb())
        put(root / f"disparity{layout}/train/aachen/{stem}_disparity.png", disp)
    put(root / "camera/train/aachen/aachen_000000_000019_camera.json", json.dumps(cam))
    put(root / "leftImg8bit/val/bochum/bochum_000000_000000_leftImg8bit.png", rgb())
    put(root / "disparity/val/bochum/bochum_000000_000000_disparity.png", disp)
    put(root / "camera/val/bochum/bochum_000000_000000_camera.json", json.dumps({"intrinsic": cam["intrinsic"]}))
    good = {"k": (100, 101, 8, 6), "px": {(5, 7): 6.25, (3, 3): 3.125, (2, 3): 0.0}, "n": 2, "sensor": "stereo"}
    # the annotated frame is listed once; the snippet frame without a camera file takes its snippet's
    frames = {"aachen_000000_000019": good, "aachen_000000_000018": good}
    return frames, [("bochum_000000_000000_camera.json", "no extrinsic.baseline entry")]


def dsec(root: Path) -> tuple[Frames, Bad]:
    # OpenCV Q: z = Q[2][3] / (Q[3][2] d + Q[3][3]) = 100 / (2 d + 4): d = 6 px (raw 1536) -> 6.25 m
    q = [[1, 0, 0, -8], [0, 1, 0, -6], [0, 0, 0, 100], [0, 0, 2, 4]]
    for seq, index, yaml_q in (("zurich_city_00_a", "000000", q), ("zurich_city_01_a", "000002", None)):
        put(root / f"train_images/{seq}/images/left/rectified/{index}.png", rgb())
        put(root / f"train_disparity/{seq}/disparity/image/{index}.png", u16({(5, 7): 1536}))
        doc = {"intrinsics": {"camRect1": {"camera_matrix": [100.0, 100.0, 8.0, 6.0]}}}
        doc["disparity_to_depth"] = {"cams_12": yaml_q} if yaml_q else {"cams_03": q}
        put(root / f"train_calibration/{seq}/calibration/cam_to_cam.yaml", json.dumps(doc))  # JSON is YAML
    frames = {"000000": {"k": (100, 100, 8, 6), "px": {(5, 7): 6.25}, "n": 1, "sensor": "lidar"}}
    return frames, [("zurich_city_01_a/calibration/cam_to_cam.yaml", "no disparity_to_depth.cams_12 entry")]


def drivingstereo(root: Path) -> tuple[Frames, Bad]:
    p_rect = "P_rect_101: 1.0e+02 0 8.0 4.4e+01 0 1.01e+02 6.0 0 0 0 1 0\n"
    trees = {
        "train": ("train-left-image/{seq}", "train-depth-map/{seq}", "calib/half-image-calib"),
        "test": (
            "test-left-image/left-image-half-size",
            "test-depth-map/depth-map-half-size",
            "test-calib/half-image-calib",
        ),
    }
    cases = (
        ("train", "2018-10-31-06-55-01", p_rect),
        ("test", "2018-07-11-14-48-52", p_rect),
        ("train", "2018-08-01-00-00-00", ""),
    )
    for split, seq, calib in cases:
        rgb_dir, depth_dir, calib_dir = (d.format(seq=seq) for d in trees[split])
        stem = f"{seq}_{seq}-084"
        put(root / rgb_dir / f"{stem}.jpg", rgb())
        put(root / depth_dir / f"{stem}.png", u16({(5, 7): 1600}))  # 1600 / 256 = 6.25 m
        put(root / calib_dir / f"{seq}.txt", f"calib_time: 2018\n{calib}")
    exp = {"k": (100, 101, 8, 6), "px": {(5, 7): 6.25}, "n": 1}
    frames = {"2018-10-31-06-55-01_2018-10-31-06-55-01-084": {**exp, "split": "train"}}
    frames["2018-07-11-14-48-52_2018-07-11-14-48-52-084"] = {**exp, "split": "test"}
    return frames, [("half-image-calib/2018-08-01-00-00-00.txt", "no P_rect_101 entry")]


def diml(root: Path) -> tuple[Frames, Bad]:
    put(root / "indoor/LR/s1/color/a_c.png", rgb())
    put(root / "indoor/LR/s1/depth_filled/a_depth_filled.png", u16({(5, 7): 6250}))
    put(root / "outdoor/LR/s2/outleft/b.png", rgb())
    put(root / "outdoor/LR/s2/depthmap/b.png", u16({(1, 2): 12000}))
    put(root / "indoor/LR/s1/color/c_c.png", rgb())
    put(root / "indoor/LR/s1/depth_filled/c_depth_filled.png", truncated_png())
    f_in, f_out = 1081.37 * W / 1920, 1398.402 * W / 1920  # assumed 1920-wide focals scaled to 16 px
    frames = {
        "a": {"k": (f_in, f_in, 8, 6), "px": {(5, 7): 6.25}, "n": 1, "sensor": "tof"},
        "b": {"k": (f_out, f_out, 8, 6), "px": {(1, 2): 12.0}, "n": 1, "sensor": "stereo"},
    }
    return frames, [("c_depth_filled.png", "truncated PNG")]


def uasol(root: Path) -> tuple[Frames, Bad]:
    left = (
        "LEFT CAMERA PARAMETERS\nFocal length in pixels alog x axis: 100.5\nFocal length in pixels alog y axis: 101.5\n"
        "Optical center along x axis, defined in pixels: 8.25\nOptical center along y axis, defined in pixels: 6.75\n"
        "Resolution: [16, 12]\n"
    )
    right = "RIGHT CAMERA PARAMETERS\nFocal length in pixels alog x axis: 999\n"
    for seq, log in (("seq1", f"ZED log\n{left}{right}"), ("seq2", left.replace("Optical center along y", "Other y"))):
        put(root / seq / "Images/left_0.png", rgb())
        put(root / seq / "Images/depth_0.png", u16({(5, 7): 6250}))
        put(
            root / seq / "complete.json",
            json.dumps({"Data": [{"color_frame_left": "left_0", "depth_frame": "depth_0"}]}),
        )
        put(root / seq / "log.txt", log)
    frames = {"left_0": {"k": (100.5, 101.5, 8.25, 6.75), "px": {(5, 7): 6.25}, "n": 1}}
    return frames, [("seq2/log.txt", "left camera block lacks cy")]


def taskonomy(root: Path) -> tuple[Frames, Bad]:
    cases = (  # (rgb, depth, pose JSON, horizontal fov): fov 2 atan(1/2) -> f = 8 / (1/2) = 16 px; pi/2 -> 8 px
        (
            "allensville/rgb",
            "allensville/depth_zbuffer",
            "allensville/points",
            "point_0_view_0",
            "fixatedpose",
            2 * math.atan(0.5),
        ),
        (
            "rgb/taskonomy/b2",
            "depth_zbuffer/taskonomy/b2",
            "point_info/taskonomy/b2",
            "point_1_view_2",
            "point_info",
            math.pi / 2,
        ),
        ("bad/rgb", "bad/depth_zbuffer", "bad/points", "point_3_view_0", "fixatedpose", None),
    )
    for rgb_dir, depth_dir, pose_dir, view, domain, fov in cases:
        put(root / rgb_dir / f"{view}_domain_rgb.png", rgb())
        put(root / depth_dir / f"{view}_domain_depth_zbuffer.png", u16({(5, 7): 3200, (0, 0): 65535}))
        put(root / pose_dir / f"{view}_domain_{domain}.json", json.dumps({"field_of_view_rads": fov} if fov else {}))
    exp = {"px": {(5, 7): 6.25, (0, 0): 0.0}, "n": 1, "sensor": "rendered"}  # 3200 / 512 m; 65535 = no mesh
    frames = {"point_0_view_0": {**exp, "k": (16, 16, 8, 6)}, "point_1_view_2": {**exp, "k": (8, 8, 8, 6)}}
    return frames, [("point_3_view_0_domain_fixatedpose.json", "no numeric field_of_view_rads")]


def mapillary_psd(root: Path) -> tuple[Frames, Bad]:
    put(root / "train.json", json.dumps({"k1": {"focal": 0.5}, "k2": {"lat": 1}}))
    for key in ("k1", "k2"):
        put(root / f"train/{key}.jpg", rgb(2 * H, 2 * W))  # the RGB is larger than its depth map
        put(root / f"train/{key}.png", u16({(5, 7): 625}))  # 625 cm
    frames = {"k1": {"k": (8, 8, 8, 6), "px": {(5, 7): 6.25}, "n": 1, "sensor": "sfm"}}  # f = 0.5 x max(16, 12)
    return frames, [("train.json", "no positive focal")]


# Shared driving-rig geometry (lyft, argoverse2): camera axes in ego = (-y, -z, x) at (1.5, 0, 1.5) m; the ego
# moved from x = 99 (lidar time) to x = 100 (camera time). Points in the ego frame at lidar time that land in
# the camera at (1, 0.5, 10) -> pixel (u, v) = (20 * 0.1 + 8, 20 * 0.05 + 6) = (10, 7), at (2, 1, 20) (same
# pixel, farther: hidden) and at (0, 0, 0.5) -> pixel (8, 6), nearer than the nuScenes-style 1 m cut.
CAM_QUAT, CAM_T = [0.5, -0.5, 0.5, -0.5], [1.5, 0.0, 1.5]
EGO_POINTS = np.array([[12.5, -1, 1], [22.5, -2, 0.5], [3, 0, 1.5]])


def lyft(root: Path) -> tuple[Frames, Bad]:
    lidar_points = EGO_POINTS - [0, 0, 2]  # LIDAR_TOP sits 2 m above the ego origin, axes aligned
    bin_ = np.concatenate([lidar_points, np.ones((3, 2))], axis=1).astype("<f4").tobytes()
    put(root / "train_lidar/host-a_lidar1_1.bin", bin_)
    put(root / "train_lidar/host-a_lidar1_4.bin", bin_[:30])
    for ts in (2, 3, 5):
        put(root / f"train_images/host-a_cam0_{ts}.jpeg", rgb())
    tables = {
        "sensor": [{"token": "s_cam", "channel": "CAM_FRONT"}, {"token": "s_lidar", "channel": "LIDAR_TOP"}],
        "calibrated_sensor": [
            {
                "token": "cs_cam",
                "sensor_token": "s_cam",
                "translation": CAM_T,
                "rotation": CAM_QUAT,
                "camera_intrinsic": [[20, 0, 8], [0, 20, 6], [0, 0, 1]],
            },
            {
                "token": "cs_lidar",
                "sensor_token": "s_lidar",
                "translation": [0, 0, 2],
                "rotation": [1, 0, 0, 0],
                "camera_intrinsic": [],
            },
        ],
        "ego_pose": [
            {"token": "ep_cam", "translation": [100, 0, 0], "rotation": [1, 0, 0, 0]},
            {"token": "ep_lidar", "translation": [99, 0, 0], "rotation": [1, 0, 0, 0]},
        ],
        "scene": [{"token": "sc", "name": "scene-1"}],
        "sample": [{"token": "smp", "scene_token": "sc"}, {"token": "smp2", "scene_token": "sc"}],
    }

    def sd(token: str, sample: str, ts: int, cs: str, pose: str, filename: str) -> dict:
        return {
            "token": token,
            "sample_token": sample,
            "timestamp": ts,
            "calibrated_sensor_token": cs,
            "ego_pose_token": pose,
            "filename": filename,
            "is_key_frame": True,
        }

    tables["sample_data"] = [
        sd("l1", "smp", 1, "cs_lidar", "ep_lidar", "lidar/host-a_lidar1_1.bin"),
        sd("c1", "smp", 2, "cs_cam", "ep_cam", "images/host-a_cam0_2.jpeg"),
        sd("c2", "smp", 3, "cs_missing", "ep_cam", "images/host-a_cam0_3.jpeg"),
        sd("l2", "smp2", 4, "cs_lidar", "ep_lidar", "lidar/host-a_lidar1_4.bin"),
        sd("c3", "smp2", 5, "cs_cam", "ep_cam", "images/host-a_cam0_5.jpeg"),
    ]
    for name, rows in tables.items():
        put(root / f"train_data/{name}.json", json.dumps(rows))
    frames = {"2": {"k": (20, 20, 8, 6), "px": {(7, 10): 10.0, (6, 8): 0.0}, "n": 1, "sensor": "lidar"}}
    bad = [
        ("train_data/calibrated_sensor.json", "no calibrated_sensor record 'cs_missing'"),
        ("host-a_lidar1_4.bin", "not a whole number"),
    ]
    return frames, bad


def argoverse2(root: Path) -> tuple[Frames, Bad]:
    log = root / "val/log1"
    t_lidar, t_cam = 1_000_000_000, 1_010_000_000
    identity = {"qw": [1.0], "qx": [0.0], "qy": [0.0], "qz": [0.0]}
    tables = {
        "calibration/intrinsics.feather": {
            "sensor_name": ["ring_front_center"],
            "fx_px": [20.0],
            "fy_px": [20.0],
            "cx_px": [8.0],
            "cy_px": [6.0],
            "k1": [0.1],
            "k2": [0.0],
            "k3": [0.0],
            "height_px": [H],
            "width_px": [W],
        },
        "calibration/egovehicle_SE3_sensor.feather": {
            "sensor_name": ["ring_front_center"],
            **{k: [v] for k, v in zip(("qw", "qx", "qy", "qz"), CAM_QUAT)},
            "tx_m": [CAM_T[0]],
            "ty_m": [CAM_T[1]],
            "tz_m": [CAM_T[2]],
        },
        "city_SE3_egovehicle.feather": {
            "timestamp_ns": [t_lidar, t_cam],
            **{k: v * 2 for k, v in identity.items()},
            "tx_m": [99.0, 100.0],
            "ty_m": [0.0, 0.0],
            "tz_m": [0.0, 0.0],
        },
        f"sensors/lidar/{t_lidar}.feather": {c: pa.array(EGO_POINTS[:, i], pa.float16()) for i, c in enumerate("xyz")},
    }
    for rel, columns in tables.items():
        (log / rel).parent.mkdir(parents=True, exist_ok=True)
        feather.write_feather(pa.table(columns), str(log / rel))
    for camera, t in (("ring_front_center", t_cam), ("ring_unknown", t_cam), ("ring_front_center", 2 * t_cam)):
        put(log / f"sensors/cameras/{camera}/{t}.jpg", rgb())
    # no 1 m cut here (the devkit keeps every z > 0): the point 0.5 m ahead stays
    frames = {str(t_cam): {"k": (20, 20, 8, 6), "px": {(7, 10): 10.0, (6, 8): 0.5}, "n": 2, "sensor": "lidar"}}
    bad = [
        ("calibration/intrinsics.feather", "no row for camera 'ring_unknown'"),
        ("sensors/lidar", "no sweep within 50 ms"),
    ]
    return frames, bad


def diode(root: Path) -> tuple[Frames, Bad]:
    folder = root / "val/indoors/scene_00019/scan_00183"
    depth = np.zeros((768, 1024, 1), np.float32)
    depth[100, 200], depth[101, 200], depth[102, 200] = 6.25, 3.0, np.nan
    mask = np.ones((768, 1024), np.float32)
    mask[101, 200] = 0
    for stem, depth_bytes in (("00019_00183_indoors_000_010", None), ("00019_00183_indoors_000_020", b"\x93NUMPY")):
        put(folder / f"{stem}.png", rgb(768, 1024))
        for suffix, arr in (("_depth.npy", depth), ("_depth_mask.npy", mask)):
            buf = io.BytesIO()
            np.save(buf, arr)
            put(folder / f"{stem}{suffix}", depth_bytes if depth_bytes and suffix == "_depth.npy" else buf.getvalue())
    frames = {
        "00019_00183_indoors_000_010": {
            "k": (886.81, 927.06, 512, 384),
            "px": {(100, 200): 6.25, (101, 200): 0.0, (102, 200): 0.0},
            "n": 1,
        }
    }
    return frames, [("00019_00183_indoors_000_020_depth.npy", "not a readable .npy array")]


def sevenscenes(root: Path) -> tuple[Frames, Bad]:
    put(root / "chess/TrainSplit.txt", "sequence1\n")
    put(root / "chess/TestSplit.txt", "sequence2\n")
    # depth camera f 585 -> colour f 525, both centred at (320, 240): u' = 320 + (u - 320) * 525 / 585
    depth = u16({(240, 420): 2000, (240, 320): 1500, (0, 0): 65535}, 480, 640)
    for seq, frame, data in (
        ("seq-01", "frame-000000", depth),
        ("seq-02", "frame-000001", depth),
        ("seq-02", "frame-000002", truncated_png()),
    ):
        put(root / f"chess/{seq}/{frame}.color.png", rgb(480, 640))
        put(root / f"chess/{seq}/{frame}.depth.png", data)
    exp = {"k": (525, 525, 320, 240), "px": {(240, 410): 2.0, (240, 320): 1.5, (0, 0): 0.0, (240, 420): 0.0}, "n": 2}
    frames = {"frame-000000": {**exp, "split": "train"}, "frame-000001": {**exp, "split": "test"}}
    return frames, [("seq-02/frame-000002.depth.png", "truncated PNG")]


def eth3d(root: Path) -> tuple[Frames, Bad]:
    scene = root / "courtyard"
    header = "# Camera list\n# CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n# Number of cameras: 1\n"
    put(scene / "dslr_calibration_undistorted/cameras.txt", header + "0 PINHOLE 16 12 10 10 8 6\n")
    # params after fx fy cx cy: k1 k2 p1 p2 k3 k4 sx1 sy1; only p2 = 0.1 (pins the order) on the fisheye angle
    put(scene / "dslr_calibration_jpg/cameras.txt", header + "0 THIN_PRISM_FISHEYE 16 12 10 10 8 6 0 0 0 0.1 0 0 0 0\n")
    # an empty 2-D points line after the first image: the pairs of lines must still line up
    images = "# Image list\n# two lines per image\n# ...\n# Number of images: 2\n"
    for folder in ("dslr_images", "dslr_images_undistorted"):
        lines = f"1 1 0 0 0 0 0 0 0 {folder}/DSC_0001.JPG\n\n2 1 0 0 0 0 0 0 0 {folder}/DSC_0002.JPG\n1 2 -1\n"
        put(
            scene / f"dslr_calibration_{'jpg' if folder == 'dslr_images' else 'undistorted'}/images.txt", images + lines
        )
    depth = (1 + np.arange(W)[None, :] + W * np.arange(H)[:, None]).astype("<f4")  # metres = 1 + col + 16 row
    depth[6, 8] = np.nan
    for name, data in (("DSC_0001.JPG", depth.tobytes()), ("DSC_0002.JPG", depth.tobytes()[:100])):
        put(scene / f"images/dslr_images_undistorted/{name}", rgb())
        put(scene / f"ground_truth_depth/dslr_images/{name}", data)
    # undistorted (row, col) -> distorted pixel, worked by hand from COLMAP's model (pixel centres at +0.5):
    # (6, 15) -> x 15.67, y 6.48 -> (6, 15); (0, 0) -> (2, 3); (11, 15) -> (10, 15); (6, 8) -> (6, 8), NaN
    px = {(6, 15): 1 + 15 + 96, (0, 0): 1 + 3 + 32, (11, 15): 1 + 15 + 160, (6, 8): 0.0}
    frames = {"DSC_0001": {"k": (10, 10, 7.5, 5.5), "px": px, "n": None, "sensor": "laser_scanner"}}
    return frames, [("ground_truth_depth/dslr_images/DSC_0002.JPG", "expected 16x12 float32")]


def scannet(root: Path) -> tuple[Frames, Bad]:
    k4 = "100 0 8 0\n0 101 6 0\n0 0 1 0\n0 0 0 1\n"
    for scene, intrinsic in (("scene0000_00", k4), ("scene0001_00", k4.rsplit(" ", 1)[0])):
        put(root / scene / "color/0.jpg", rgb())
        put(root / scene / "depth/0.png", u16({(2, 3): 6250}, H // 2, W // 2))  # depth at half the colour size
        put(root / scene / "intrinsic/intrinsic_color.txt", intrinsic)
    # nearest by pixel centres, x2: depth pixel (2, 3) covers colour rows 4-5, cols 6-7
    frames = {"0": {"k": (100, 101, 8, 6), "px": {(4, 6): 6.25, (5, 7): 6.25, (3, 6): 0.0, (4, 8): 0.0}, "n": 4}}
    return frames, [("scene0001_00/intrinsic/intrinsic_color.txt", "expected a 4x4 matrix")]


def ibims(root: Path) -> tuple[Frames, Bad]:
    put(root / "imagelist.txt", "corridor_01\noffice_02\n")
    for name, calib in (
        ("corridor_01", "100, 0, 8\n0, 101, 6\n0, 0, 1\n"),
        ("office_02", "100, 0, 8\n0, 101, 6\n0, 0\n"),
    ):
        put(root / f"rgb/{name}.png", rgb())
        put(root / f"depth/{name}.png", u16({(5, 7): 13107, (5, 8): 13107, (5, 9): 13107}))  # 13107 * 50 / 65535 = 10 m
        put(root / f"mask_invalid/{name}.png", np.where(np.arange(W) == 8, 0, 255).astype(np.uint8)[None].repeat(H, 0))
        put(root / f"mask_transp/{name}.png", np.where(np.arange(W) == 9, 0, 1).astype(np.uint8)[None].repeat(H, 0))
        put(root / f"calib/{name}.txt", calib)
    ten = float(np.float32(13107) / np.float32(65535 / 50))
    frames = {"corridor_01": {"k": (100, 101, 8, 6), "px": {(5, 7): ten, (5, 8): 0.0, (5, 9): 0.0}, "n": 1}}
    return frames, [("calib/office_02.txt", "expected 9 values")]


BUILDERS: dict[str, Callable[[Path], tuple[Frames, Bad]]] = {
    f.__name__: f
    for f in (
        cityscapes,
        dsec,
        drivingstereo,
        diml,
        uasol,
        taskonomy,
        mapillary_psd,
        lyft,
        argoverse2,
        diode,
        sevenscenes,
        eth3d,
        scannet,
        ibims,
    )
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_native_layout_ingests_known_depth_and_quarantines_bad_files(name: str, tmp_path: Path):
    frames, bad = BUILDERS[name](tmp_path / "src")
    summary = ingest(name, str(tmp_path / "src"), str(tmp_path / "store"), workers=0, progress=False)
    store = open_store(str(tmp_path / "store"))
    quarantine = store.quarantine().to_pylist()
    assert (summary.ingested, summary.quarantined) == (len(frames), len(bad)), quarantine
    rows = {row["frame"]: row for row in store.catalog().to_pylist()}
    assert set(rows) == set(frames)
    for frame, exp in frames.items():
        sample = store.read_row(rows[frame])
        assert sample.meta.adapter == name
        assert sample.k_px == pytest.approx(exp["k"], rel=1e-9), frame
        for (r, c), z in exp["px"].items():
            assert float(sample.depth_m[r, c]) == pytest.approx(z, rel=1e-7, abs=0), (frame, r, c)
        if exp["n"] is not None:
            assert int(sample.valid.sum()) == exp["n"], frame
        for key in ("sensor", "split"):
            assert exp.get(key, rows[frame][key]) == rows[frame][key], key
    for suffix, fragment in bad:
        assert any(r["file"].endswith(suffix) and fragment in r["reason"] for r in quarantine), (
            suffix,
            fragment,
            quarantine,
        )


def test_every_adapter_record_is_complete_and_documented():
    adapters = all_adapters()
    assert set(BUILDERS) <= set(adapters)
    doc = render()
    for name, adapter in adapters.items():
        info = adapter.info
        assert info.name == name and info.sensor in SENSOR_KINDS, name
        assert all((info.description, info.depth_encoding, info.intrinsics, info.splits, info.verified)), name
        assert f"| {name} |" in doc, name
    unverified = doc.split("## Still unverified", 1)[1]
    assert "| kitti |" not in unverified and "- **lyft**" in unverified
