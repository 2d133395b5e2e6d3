"""NYU Depth v2 raw Kinect dump (the scene folders inside the raw .zip parts), depth registered to the colour camera.

--src is one scene folder or a folder of them:
  <scene>/r-<unix time>-<device time>.ppm   640x480 colour, binary PPM (P6, maxval 255), distorted as captured
  <scene>/d-<unix time>-<device time>.pgm   640x480 Kinect raw disparity, binary PGM (P5); the header says
                                            maxval 65535 but the 16-bit payload is little-endian
  <scene>/a-*.dump, INDEX.txt               accelerometer dumps and the dump's file index: not read
A file name that does not parse stops the listing (it is not a raw dump).

Pairs: each colour frame with the depth frame of its scene nearest in unix time (the first number of the file
name, as the toolbox's get_synched_frames.m reads it; the toolbox keeps every depth frame instead, matching each
to its nearest colour frame). No time limit, like the toolbox. A colour frame in a scene without any depth frame
is quarantined.

Depth: depth_m = 351.3 / (1092.5 - raw) (toolbox depth_rel2depth_abs.m); raw 2047 (no measurement), depth
<= 0 and depth > 10 m are no ground truth. Registration, in the toolbox's camera_params.m calibration:
each depth pixel is undistorted (depth-camera k1 k2 p1 p2 k3), back-projected with the depth intrinsics,
moved into the colour camera and z-buffered there (nearest point per pixel, nothing filled in); the colour
image is undistorted with the colour-camera coefficients, so the sample is a pinhole camera with the colour
intrinsics, as the toolbox's project_depth_map.m produces it (which resamples the depth image to undistort it;
this moves each depth pixel's ray instead, so no depth is interpolated).
The extrinsics: the toolbox writes p_rgb_world = -R_l^T p + T (R_l: its nine numbers read row by row, T =
[t_x; t_z; t_y] = (0.02503, -0.00029, 0.00066) m) and projects with X / Z, where the two minus signs cancel:
the rigid transform is p_rgb = R_l^T p_depth - T, used here. The toolbox stores the depth camera's z in the
colour pixel; this stores the colour camera's z (they differ by at most about 0.4 %).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator

import cv2
import numpy as np

from ingest.base import AdapterInfo, Item, make_sample
from ingest.geometry import pose_matrix, project_to_depth, transform_points
from ingest.registry import register
from ingest.source import Source, SourceError
from schemas.sample import SPLITS, Sample

HW = (480, 640)
# NYU toolbox camera_params.m (calibrated with RGBDemo), pixels.
K_RGB = (518.85790117450188, 519.46961112127485, 325.58244941119034, 253.73616633400465)
K_DEPTH = (582.62448167737955, 582.69103270988637, 313.04475870804731, 238.44389626620386)
DIST_RGB = (  # k1, k2, p1, p2, k3 (OpenCV's order)
    2.0796615318809061e-01,
    -5.8613825163911781e-01,
    7.2231363135888329e-04,
    1.0479627195765181e-03,
    4.9856986684705107e-01,
)
DIST_DEPTH = (
    -9.9897236553084481e-02,
    3.9065324602765344e-01,
    1.9290592870229277e-03,
    -1.9422022475975055e-03,
    -5.1031725053400578e-01,
)
# camera_params.m's nine rotation numbers read row by row, and its translation [t_x; t_z; t_y], in metres.
R_LISTED = np.array(
    [
        [9.9997798940829263e-01, 5.0518419386157446e-03, 4.3011152014118693e-03],
        [-5.0359919480810989e-03, 9.9998051861143999e-01, -3.6879781309514218e-03],
        [-4.3196624923060242e-03, 3.6662365748484798e-03, 9.9998394948385538e-01],
    ]
)
T_LISTED = np.array([2.5031875059141302e-02, -2.9342312935846411e-04, 6.6238747008330102e-04])
DEPTH_TO_RGB = pose_matrix(R_LISTED.T, -T_LISTED)
DEPTH_PARAM1, DEPTH_PARAM2 = 351.3, 1092.5  # toolbox depth_rel2depth_abs.m
INVALID_RAW = 2047
MAX_DEPTH_M = 10.0

_NAME = re.compile(r"[rd]-(?P<time>\d+(?:\.\d+)?)-\d+\.(?:ppm|pgm)")
_HEADER_FIELD = re.compile(rb"(?:\s|#[^\n]*\n)+(\d+)")  # whitespace and comments, then a number


def _matrix(k_px: tuple[float, float, float, float]) -> np.ndarray:
    fx, fy, cx, cy = k_px
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def _netpbm(data: bytes, rel: str, magic: bytes, maxval: int) -> bytes:
    """The payload of a 640x480 binary netpbm file, after checking its header against `magic` and `maxval`."""
    kind = "PGM" if magic == b"P5" else "PPM"
    if data[:2] != magic:
        raise SourceError(rel, f"not a binary {kind} (magic {data[:2]!r}, expected {magic!r})")
    fields, pos = [], 2
    for _ in range(3):
        match = _HEADER_FIELD.match(data, pos)
        if match is None:
            raise SourceError(rel, f"malformed {kind} header (expected width, height and maxval)")
        fields.append(int(match.group(1)))
        pos = match.end()
    width, height, found_max = fields
    if found_max != maxval:
        raise SourceError(rel, f"{kind} maxval {found_max}, expected {maxval}")
    if (height, width) != HW:
        raise SourceError(rel, f"{width}x{height} frame; the NYU Kinect calibration is for 640x480")
    payload = data[pos + 1 :]  # one whitespace byte ends the header
    size = width * height * (3 if kind == "PPM" else 1) * (2 if maxval > 255 else 1)
    if len(payload) != size:
        raise SourceError(rel, f"{kind} payload is {len(payload)} bytes, its {width}x{height} header needs {size}")
    return payload


def read_ppm(data: bytes, rel: str) -> np.ndarray:
    """A raw-dump colour frame -> uint8 480x640x3 RGB, as captured (distorted)."""
    return np.frombuffer(_netpbm(data, rel, b"P6", 255), np.uint8).reshape(*HW, 3).copy()


def read_raw_depth(data: bytes, rel: str) -> np.ndarray:
    """A raw-dump depth frame -> float32 480x640 metres in the depth camera (unregistered), 0 = no measurement."""
    raw = np.frombuffer(_netpbm(data, rel, b"P5", 65535), "<u2").reshape(HW).astype(np.float64)
    depth = DEPTH_PARAM1 / (DEPTH_PARAM2 - raw)  # raw is an integer: never 1092.5
    valid = (raw != INVALID_RAW) & (depth > 0) & (depth <= MAX_DEPTH_M)
    return np.where(valid, depth, 0.0).astype(np.float32)


def register_depth(depth_m: np.ndarray) -> np.ndarray:
    """Depth-camera metres (480x640, 0 = none) -> z-depth in the undistorted colour camera (K_RGB), 0 = none."""
    v, u = np.nonzero(depth_m)
    z = depth_m[v, u].astype(np.float64)
    pixels = np.column_stack([u, v]).astype(np.float64).reshape(-1, 1, 2)
    rays = cv2.undistortPoints(pixels, _matrix(K_DEPTH), np.array(DIST_DEPTH)).reshape(-1, 2)
    points = np.column_stack([rays * z[:, None], z])
    return project_to_depth(transform_points(DEPTH_TO_RGB, points), K_RGB, depth_m.shape)


def undistort_rgb(rgb: np.ndarray) -> np.ndarray:
    """The captured colour frame -> the pinhole image of K_RGB (bilinear; pixels seeing outside it are black)."""
    return cv2.undistort(rgb, _matrix(K_RGB), np.array(DIST_RGB))


def _stamp(src: Source, rel: str) -> str:
    """The unix-time field of a raw-dump file name, as written."""
    match = _NAME.fullmatch(posixpath.basename(rel))
    if match is None:
        raise ValueError(f"{src.uri(rel)}: not a raw-dump file name (r-<unix time>-<device time>.ppm, d-...pgm)")
    return match["time"]


def _nearest(times: np.ndarray, t: float) -> int:
    """Index of the value of ascending `times` closest to t (the earlier one on a tie)."""
    i = int(np.searchsorted(times, t))
    if i == 0 or (i < len(times) and times[i] - t < t - times[i - 1]):
        return i
    return i - 1


@register
class NyuRaw:
    info = AdapterInfo(
        name="nyu_raw",
        description="NYU Depth v2 raw Kinect dump: scene folders of r-*.ppm + d-*.pgm, depth registered to colour",
        sensor="structured_light",
        depth_encoding=(
            "PGM P5 with a little-endian payload (header says 65535): Kinect raw disparity, "
            "depth_m = 351.3 / (1092.5 - raw); 2047, <= 0 and > 10 m invalid; registered into the colour camera"
        ),
        intrinsics=(
            "NYU toolbox colour camera fx 518.8579 fy 519.4696 cx 325.5824 cy 253.7362, of the colour frame "
            "undistorted with the toolbox coefficients (depth: toolbox depth camera, distortion and R, T)"
        ),
        splits="none in the dump: every frame gets --split (default train); the official scene split is not applied",
        eval_protocol="none (training set; NYU is evaluated on its labeled/official test frames)",
        license="not stated by the source (academic use)",
        # Every raw scene, the official test scenes included: no scene split is applied (see splits).
        shares=(("nyu", "NYUv2 scenes"),),
        verified=(
            "one real raw frame (Open3D test data) laid out as a scene: the unregistered decode matches its README "
            "(min, median, max, valid fraction); the registration equals an independent evaluation of the "
            "toolbox's chain, and its edges line up best with the undistorted colour edges for the toolbox's "
            "direction of R, T (checked against R, +T, no extrinsics and no undistortion). "
            "Unverified: the scene-folder layout and file names (toolbox docs, not a real dump listing); "
            "INDEX.txt is not read"
        ),
    )

    def items(self, src: Source, split: str | None, dataset: str) -> Iterator[Item]:
        if split is not None and split not in SPLITS:
            raise ValueError(f"nyu_raw has no fixed splits; --split must be one of {', '.join(SPLITS)}, got {split!r}")
        rgb_of: dict[str, list[str]] = {}
        depth_of: dict[str, list[str]] = {}
        for rel in src.glob("r-*.ppm") + src.glob("*/r-*.ppm"):
            rgb_of.setdefault(posixpath.dirname(rel), []).append(rel)
        for rel in src.glob("d-*.pgm") + src.glob("*/d-*.pgm"):
            depth_of.setdefault(posixpath.dirname(rel), []).append(rel)
        for folder, rgbs in sorted(rgb_of.items()):
            scene = folder or posixpath.basename(src.url.rstrip("/"))
            depths = sorted(depth_of.get(folder, []), key=lambda rel: float(_stamp(src, rel)))
            depth_times = np.array([float(_stamp(src, rel)) for rel in depths])
            for rel in rgbs:
                stamp = _stamp(src, rel)
                files, error = {"rgb": rel}, None
                if depths:
                    files["depth"] = depths[_nearest(depth_times, float(stamp))]
                else:
                    error = (rel, "no d-*.pgm depth frame in this scene folder")
                yield Item(
                    dataset=dataset,
                    split=split or "train",
                    scene=scene,
                    frame=stamp,
                    camera="kinect",
                    files=files,
                    extra={"error": error},
                )

    def load(self, src: Source, item: Item) -> Sample:
        if item.extra["error"]:
            raise SourceError(*item.extra["error"])
        rgb = read_ppm(src.read_bytes(item.files["rgb"]), item.files["rgb"])
        depth = read_raw_depth(src.read_bytes(item.files["depth"]), item.files["depth"])
        return make_sample(self.info, item, src, undistort_rgb(rgb), register_depth(depth), K_RGB)
