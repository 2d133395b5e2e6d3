"""Real samples for NYU Depth v2's raw Kinect dump (adapter nyu_raw) and the UniDepth demo frame (adapter folder).

As in test_adapters_real.py: each sample is laid out in its native tree, ingested, and its statistics checked
against the sample's README (median within 1 %, valid fraction within 0.1 points, min and max within 1 %).
The raw NYU README describes the unregistered depth-camera frame, so the decode is checked against it directly
and the registered sample against an independent evaluation of the NYU toolbox's registration chain.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import map_coordinates
from test_adapters_real import INTEGER_CODECS, _check, _copy, _ingest, _k, _reasons, _same_projection

from ingest.adapters import nyu_raw
from ingest.adapters.nyu import K_PX as NYU_K_PX
from ingest.geometry import pose_matrix
from store import open_store

# ---------------------------------------------------------------- NYU Depth v2 raw dump (Open3D frame)

NYU_RAW = "nyu_v2_raw_open3d/examples/TestData/RGBD/other_formats"
NYU_RAW_README = (1.386, 3.268, 6.691, 0.928)  # unregistered depth-camera frame
# README intrinsics (toolbox camera_params.m).
README_K_DEPTH = (582.62448167737955, 582.69103270988637, 313.04475870804731, 238.44389626620386)
README_K_RGB = (518.85790117450188, 519.46961112127485, 325.58244941119034, 253.73616633400465)
# camera_params.m as written: R = -[nine numbers]; R = reshape(R, [3 3]); R = inv(R'); T = [t_x; t_z; t_y].
TOOLBOX_R_NUMBERS = (
    9.9997798940829263e-01, 5.0518419386157446e-03, 4.3011152014118693e-03,
    -5.0359919480810989e-03, 9.9998051861143999e-01, -3.6879781309514218e-03,
    -4.3196624923060242e-03, 3.6662365748484798e-03, 9.9998394948385538e-01,
)  # fmt: skip
TOOLBOX_T_X, TOOLBOX_T_Z, TOOLBOX_T_Y = 2.5031875059141302e-02, -2.9342312935846411e-04, 6.6238747008330102e-04
# Raw-dump names: r-/d-<unix time>-<device time>; the depth frame 20 ms before the colour frame.
RGB_NAME = "r-1294886360.208451-2996770081.ppm"
DEPTH_NAME = "d-1294886360.187947-2994883405.pgm"
LATER_RGB_NAME = "r-1294886361.208451-2996800081.ppm"  # 1 s later
DECOY_NAME = "d-1294886361.240000-2996830081.pgm"  # nearest to the later frame only
DECOY_RAW = 900  # 351.3 / (1092.5 - 900) = 1.8249 m everywhere


def _pgm(raw: np.ndarray) -> bytes:
    """A raw-dump style PGM: a 65535 header over a little-endian payload."""
    return b"P5 640 480 65535\n" + raw.astype("<u2").tobytes()


def nyu_raw_scene(real: Path, folder: Path, decoy: bool = False) -> Path:
    _copy(real / NYU_RAW / "NYU_color.ppm", folder / RGB_NAME)
    _copy(real / NYU_RAW / "NYU_depth.pgm", folder / DEPTH_NAME)
    (folder / "a-1294886360.190000-2994900000.dump").write_bytes(b"\x00" * 16)  # accelerometer: not read
    if decoy:
        _copy(real / NYU_RAW / "NYU_color.ppm", folder / LATER_RGB_NAME)
        (folder / DECOY_NAME).write_bytes(_pgm(np.full((480, 640), DECOY_RAW)))
    return folder


def _stats(depth: np.ndarray) -> tuple[float, float, float, float]:
    v = depth[depth > 0]
    return float(v.min()), float(np.median(v)), float(v.max()), v.size / depth.size


def _undistort_normalized(xd: np.ndarray, yd: np.ndarray, dist: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Invert the Brown-Conrady model (k1, k2, p1, p2, k3) by fixed-point iteration (Bouguet's method)."""
    k1, k2, p1, p2, k3 = dist
    x, y = xd.copy(), yd.copy()
    for _ in range(20):
        r2 = x * x + y * y
        radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
        x = (xd - (2 * p1 * x * y + p2 * (r2 + 2 * x * x))) / radial
        y = (yd - (p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)) / radial
    return x, y


def toolbox_registration(raw: np.ndarray) -> np.ndarray:
    """The NYU toolbox's chain written out (depth_rel2depth_abs, depth_plane2depth_world, depth_world2rgb_world,
    rgb_world2rgb_plane, z-buffer), with the depth pixels undistorted as points and 0-based pixels; the colour
    camera's z is stored (its chain flips every coordinate's sign, so that z is -Z)."""
    fx_d, fy_d, cx_d, cy_d = README_K_DEPTH
    fx, fy, cx, cy = README_K_RGB
    rotation = np.linalg.inv((-np.array(TOOLBOX_R_NUMBERS).reshape(3, 3, order="F")).T)
    translation = np.array([TOOLBOX_T_X, TOOLBOX_T_Z, TOOLBOX_T_Y])
    depth = 351.3 / (1092.5 - raw.astype(np.float64))
    v, u = np.nonzero((raw != 2047) & (depth > 0) & (depth <= 10))
    x, y = _undistort_normalized((u - cx_d) / fx_d, (v - cy_d) / fy_d, nyu_raw.DIST_DEPTH)
    z = depth[v, u]
    world = rotation @ np.stack([x * z, y * z, z]) + translation[:, None]
    col = np.rint(world[0] * fx / world[2] + cx).astype(int)
    row = np.rint(world[1] * fy / world[2] + cy).astype(int)
    z_rgb = -world[2]
    inside = (col >= 0) & (col < 640) & (row >= 0) & (row < 480) & (z_rgb > 0)
    pixel, z_rgb = row[inside] * 640 + col[inside], z_rgb[inside]
    order = np.lexsort((z_rgb, pixel))  # by pixel, nearest first
    first = np.r_[True, pixel[order][1:] != pixel[order][:-1]]
    out = np.zeros(480 * 640)
    out[pixel[order][first]] = z_rgb[order][first]
    return out.reshape(480, 640).astype(np.float32)


def _distorted_rgb_sampled(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The undistorted colour image by forward distortion + bilinear sampling; where its source lies inside the
    captured frame, and where it lies over a pixel outside (no blend with the frame's edge)."""
    fx, fy, cx, cy = README_K_RGB
    k1, k2, p1, p2, k3 = nyu_raw.DIST_RGB
    v, u = np.mgrid[0:480, 0:640].astype(np.float64)
    x, y = (u - cx) / fx, (v - cy) / fy
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    us = fx * (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)) + cx
    vs = fy * (y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y) + cy
    inside = (us >= 0) & (us <= 639) & (vs >= 0) & (vs <= 479)
    outside = (us <= -1) | (us >= 640) | (vs <= -1) | (vs >= 480)
    sampled = np.stack([map_coordinates(rgb[:, :, c].astype(np.float64), [vs, us], order=1) for c in range(3)], -1)
    return sampled, inside, outside


@pytest.mark.real
def test_nyu_raw_decode_matches_readme(real_root: Path):
    depth = nyu_raw.read_raw_depth((real_root / NYU_RAW / "NYU_depth.pgm").read_bytes(), "NYU_depth.pgm")
    lo, median, hi, valid = NYU_RAW_README
    assert depth.shape == (480, 640) and depth.dtype == np.float32
    got = _stats(depth)
    assert got[3] == pytest.approx(valid, abs=0.001)
    assert got[:3] == pytest.approx((lo, median, hi), rel=0.01)
    assert (nyu_raw.K_DEPTH, nyu_raw.K_RGB) == (README_K_DEPTH, README_K_RGB)


@pytest.mark.real
def test_nyu_raw_scene_registered_to_colour(real_root: Path, tmp_path: Path):
    src = tmp_path / "nyu_raw"
    nyu_raw_scene(real_root, src / "bedroom_0001", decoy=True)
    s, rows, _ = _ingest("nyu_raw", src, tmp_path / "store")
    assert (s.ingested, s.quarantined) == (2, 0)
    handle = open_store(str(tmp_path / "store"))
    row = rows[("1294886360.208451", "kinect")]
    assert (row["scene"], row["split"], row["sensor"], row["depth_codec"]) == (
        "bedroom_0001",
        "train",
        "structured_light",
        "f32",
    )
    assert row["source_uris"][1].endswith(DEPTH_NAME)
    assert _k(row) == pytest.approx(README_K_RGB, abs=1e-9)
    sample = handle.read(row["sample_id"])

    raw = np.frombuffer((real_root / NYU_RAW / "NYU_depth.pgm").read_bytes()[17:], "<u2").reshape(480, 640)
    expected = toolbox_registration(raw)
    _same_projection(sample.depth_m, expected)
    _check(row, _stats(expected))
    # Sanity against the README's unregistered figures: the same depth range (the colour camera's z differs by
    # < 0.5 %), and fewer valid pixels: the wider colour camera sees the depth camera's view on
    # (518.9 * 519.5) / (582.6 * 582.7) = 79 % of its pixels.
    lo, median, hi, valid = NYU_RAW_README
    assert (row["depth_min_m"], row["depth_median_m"], row["depth_max_m"]) == pytest.approx((lo, median, hi), rel=0.01)
    area = README_K_RGB[0] * README_K_RGB[1] / (README_K_DEPTH[0] * README_K_DEPTH[1])
    assert row["valid_frac"] < valid and row["valid_frac"] == pytest.approx(valid * area, abs=0.03)

    # The colour frame is undistorted: compare with forward distortion + bilinear sampling of the PPM.
    captured = np.frombuffer((real_root / NYU_RAW / "NYU_color.ppm").read_bytes()[15:], np.uint8).reshape(480, 640, 3)
    sampled, inside, outside = _distorted_rgb_sampled(captured)
    assert inside.mean() > 0.9 and outside.any()
    assert np.abs(sample.rgb[inside] - sampled[inside]).mean() < 1.0
    assert not sample.rgb[outside].any()  # what the captured frame did not see is black

    # The later colour frame pairs with the decoy depth frame, its nearest in time.
    later = rows[("1294886361.208451", "kinect")]
    assert later["source_uris"][1].endswith(DECOY_NAME)
    assert later["depth_median_m"] == pytest.approx(351.3 / (1092.5 - DECOY_RAW), rel=0.01)

    # --src may also be the scene folder itself.
    s, rows, _ = _ingest("nyu_raw", src / "bedroom_0001", tmp_path / "store_scene", split="val")
    assert s.ingested == 2 and {(r["scene"], r["split"]) for r in rows.values()} == {("bedroom_0001", "val")}


def _edge_score(depth: np.ndarray, rgb: np.ndarray) -> float:
    """Mean colour gradient on depth discontinuities (> 5 % between valid neighbours) over the image mean: higher
    when depth edges fall on colour edges."""
    grey = rgb.astype(np.float64).mean(axis=2)
    gradient = np.hypot(*np.gradient(grey))
    log_depth = np.log(np.where(depth > 0, depth, np.nan))
    jumps = np.zeros(depth.shape, bool)
    with np.errstate(invalid="ignore"):
        jumps[:, 1:] |= np.abs(np.diff(log_depth, axis=1)) > 0.05
        jumps[1:] |= np.abs(np.diff(log_depth, axis=0)) > 0.05
    return float(gradient[jumps].mean() / gradient.mean())


@pytest.mark.real
def test_nyu_raw_registration_lines_up_with_colour_edges(real_root: Path, monkeypatch: pytest.MonkeyPatch):
    """The toolbox's reading of R, T (and the undistortion) puts depth edges on colour edges better than the
    other readings: R, +T; no extrinsics; no undistortion of either camera."""
    depth = nyu_raw.read_raw_depth((real_root / NYU_RAW / "NYU_depth.pgm").read_bytes(), "NYU_depth.pgm")
    captured = nyu_raw.read_ppm((real_root / NYU_RAW / "NYU_color.ppm").read_bytes(), "NYU_color.ppm")
    adapter = _edge_score(nyu_raw.register_depth(depth), nyu_raw.undistort_rgb(captured))
    others = {}
    for name, transform in (
        ("R, +T", pose_matrix(nyu_raw.R_LISTED, nyu_raw.T_LISTED)),
        ("no extrinsics", np.eye(4)),
    ):
        monkeypatch.setattr(nyu_raw, "DEPTH_TO_RGB", transform)
        others[name] = _edge_score(nyu_raw.register_depth(depth), nyu_raw.undistort_rgb(captured))
    monkeypatch.undo()
    monkeypatch.setattr(nyu_raw, "DIST_DEPTH", (0.0,) * 5)
    others["no undistortion"] = _edge_score(nyu_raw.register_depth(depth), captured)
    assert all(adapter > 1.05 * score for score in others.values()), (adapter, others)


@pytest.mark.real
def test_nyu_raw_bad_inputs_are_quarantined(real_root: Path, tmp_path: Path):
    src = tmp_path / "nyu_raw"
    nyu_raw_scene(real_root, src / "bedroom_0001")
    truncated = nyu_raw_scene(real_root, src / "bedroom_0002") / DEPTH_NAME
    truncated.write_bytes(truncated.read_bytes()[:-100])
    _copy(real_root / NYU_RAW / "NYU_color.ppm", src / "bedroom_0003" / RGB_NAME)  # no depth frame
    png = nyu_raw_scene(real_root, src / "bedroom_0004") / RGB_NAME
    _copy(real_root / "unidepth_demo/assets/demo/rgb.png", png)
    s, rows, q = _ingest("nyu_raw", src, tmp_path / "store")
    assert (s.ingested, s.quarantined) == (1, 3)
    assert {r["scene"] for r in rows.values()} == {"bedroom_0001"}
    reasons = _reasons(q)
    assert reasons["bedroom_0002/kinect/1294886360.208451"] == (
        DEPTH_NAME,
        "PGM payload is 614300 bytes, its 640x480 header needs 614400",
    )
    assert reasons["bedroom_0003/kinect/1294886360.208451"] == (
        RGB_NAME,
        "no d-*.pgm depth frame in this scene folder",
    )
    file, reason = reasons["bedroom_0004/kinect/1294886360.208451"]
    assert file == RGB_NAME and reason.startswith("not a binary PPM")

    (src / "bedroom_0001" / "d-latest.pgm").write_bytes(_pgm(np.zeros((480, 640))))
    with pytest.raises(ValueError, match="d-latest.pgm: not a raw-dump file name"):
        _ingest("nyu_raw", src, tmp_path / "store_names")


# ---------------------------------------------------------------- UniDepth demo frame (folder layout)
# rgb.png + depth.png (uint16 mm) + intrinsics.npy (3x3) in one folder is the UniDepth repository's demo, not a
# dataset convention (and its depth units are stated only in the demo script): the `folder` layout takes it,
# with the .npy's K written as intrinsics.json and the millimetre scale as dataset.json.

UNIDEPTH = "unidepth_demo/assets/demo"
UNIDEPTH_README = (1.653, 3.495, 10.000, 0.681)
UNIDEPTH_README_K = (518.8579, 519.4696, 325.58246, 253.73616)


def unidepth_as_folder(real: Path, out: Path, name: str = "unidepth_demo") -> Path:
    _copy(real / UNIDEPTH / "rgb.png", out / "rgb" / f"{name}.png")
    _copy(real / UNIDEPTH / "depth.png", out / "depth" / f"{name}.png")
    k = np.load(real / UNIDEPTH / "intrinsics.npy")
    assert k.shape == (3, 3) and k[0, 1] == k[1, 0] == 0 and k[2].tolist() == [0, 0, 1]  # pinhole, no skew
    intrinsics = {"fx": float(k[0, 0]), "fy": float(k[1, 1]), "cx": float(k[0, 2]), "cy": float(k[1, 2])}
    (out / "intrinsics.json").write_text(json.dumps(intrinsics))
    (out / "dataset.json").write_text(json.dumps({"depth_scale": 1000, "sensor": "structured_light"}))
    return out


@pytest.mark.real
def test_unidepth_demo_via_folder_matches_readme(real_root: Path, tmp_path: Path):
    src = unidepth_as_folder(real_root, tmp_path / "unidepth")
    s, rows, _ = _ingest("folder", src, tmp_path / "store", name="unidepth_demo")
    assert (s.ingested, s.quarantined) == (1, 0)
    row = rows[("unidepth_demo", "camera")]
    _check(row, UNIDEPTH_README)
    assert row["dataset"] == "unidepth_demo" and row["split"] == "train" and row["sensor"] == "structured_light"
    assert row["depth_codec"] in INTEGER_CODECS and row["depth_scale"] == 1000.0
    assert (row["height"], row["width"]) == (480, 640)
    assert _k(row) == pytest.approx(UNIDEPTH_README_K, abs=1e-4)
    assert _k(row) == pytest.approx(NYU_K_PX, abs=1e-4)  # the README: an NYU v2 frame


@pytest.mark.real
def test_unidepth_demo_bad_input_is_quarantined(real_root: Path, tmp_path: Path):
    src = unidepth_as_folder(real_root, tmp_path / "unidepth")
    unidepth_as_folder(real_root, src, "truncated")
    depth = src / "depth" / "truncated.png"
    depth.write_bytes(depth.read_bytes()[:50_000])
    s, rows, q = _ingest("folder", src, tmp_path / "store")
    assert (s.ingested, s.quarantined) == (1, 1)
    assert set(rows) == {("unidepth_demo", "camera")}
    assert _reasons(q) == {"camera/truncated": ("truncated.png", "truncated PNG (no IEND chunk at the end)")}
