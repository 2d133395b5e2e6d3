"""ETH3D high-resolution multi-view training scenes, as the dslr 7z archives unpack:
  <scene>/images/dslr_images_undistorted/<NAME>.JPG        undistorted RGB (COLMAP PINHOLE camera)
  <scene>/dslr_calibration_undistorted/{cameras,images}.txt
  <scene>/dslr_calibration_jpg/{cameras,images}.txt       the original, distorted cameras (THIN_PRISM_FISHEYE)
  <scene>/ground_truth_depth/dslr_images/<NAME>.JPG        depth despite the name: headerless little-endian
                                                           float32, row-major, W x H of the distorted camera,
                                                           metres; inf (and NaN, 0) = no ground truth
The depth maps match the original distorted images. They are resampled (nearest, z unchanged) into the
undistorted PINHOLE camera of the same view, so RGB, depth and k_px share one pinhole geometry.
COLMAP puts the centre of the top-left pixel at (0.5, 0.5); k_px uses integer pixel centres, hence the
half-pixel shift of the principal point.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterator

import numpy as np

from ingest.base import AdapterInfo, Item, make_sample, read_rgb
from ingest.registry import register
from ingest.source import Source, SourceError
from schemas.sample import Sample

Camera = tuple[str, int, int, list[float]]  # model, width, height, params
_ROWS = 256  # rows per resampling block: bounds the float64 temporaries to ~10 MB at 6048 px wide


def parse_cameras(text: str, file: str) -> dict[str, Camera]:
    """COLMAP cameras.txt: `CAMERA_ID MODEL WIDTH HEIGHT PARAMS...` per line, '#' comments."""
    cameras = {}
    for line in text.splitlines():
        f = line.split()
        if not f or f[0].startswith("#"):
            continue
        try:
            cameras[f[0]] = (f[1], int(f[2]), int(f[3]), [float(v) for v in f[4:]])
        except (IndexError, ValueError):
            raise SourceError(file, f"bad camera line {line!r}") from None
    return cameras


def camera_id_of(text: str, name: str, file: str) -> str:
    """COLMAP images.txt: pairs of lines, the first `IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME`
    (the second, the 2-D points, may be empty). Images are matched by file name, without folders."""
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    for line in lines[0::2]:
        f = line.split()
        if len(f) >= 10 and posixpath.basename(f[9]) == name:
            return f[8]
    raise SourceError(file, f"no image {name!r} in images.txt")


def read_camera(src: Source, calib_dir: str, name: str) -> Camera:
    images, cameras = f"{calib_dir}/images.txt", f"{calib_dir}/cameras.txt"
    cam_id = camera_id_of(src.read_text(images), name, images)
    table = parse_cameras(src.read_text(cameras), cameras)
    if cam_id not in table:
        raise SourceError(cameras, f"no camera {cam_id} (the camera of {name} in images.txt)")
    return table[cam_id]


def pinhole(camera: Camera, file: str) -> tuple[float, float, float, float]:
    model, _, _, p = camera
    if model == "PINHOLE" and len(p) == 4:
        return p[0], p[1], p[2], p[3]
    if model == "SIMPLE_PINHOLE" and len(p) == 3:
        return p[0], p[0], p[1], p[2]
    raise SourceError(file, f"expected a PINHOLE camera, got {model} with {len(p)} parameters")


def thin_prism_fisheye(params: list[float]) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """COLMAP THIN_PRISM_FISHEYE distortion of normalised coordinates (x, y) = (X/Z, Y/Z): the equidistant
    angle theta = atan(r) first, then radial k1..k4 in theta^2, tangential p1 p2 and thin prism sx1 sy1.
    Parameter order after fx fy cx cy: k1 k2 p1 p2 k3 k4 sx1 sy1."""
    k1, k2, p1, p2, k3, k4, sx1, sy1 = params

    def distort(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r = np.hypot(x, y)
        scale = np.ones_like(r)
        np.divide(np.arctan(r), r, out=scale, where=r > np.finfo(np.float64).eps)
        u, v = x * scale, y * scale
        r2 = u * u + v * v
        radial = k1 * r2 + k2 * r2**2 + k3 * r2**3 + k4 * r2**4
        du = u * radial + 2 * p1 * u * v + p2 * (r2 + 2 * u * u) + sx1 * r2
        dv = v * radial + 2 * p2 * u * v + p1 * (r2 + 2 * v * v) + sy1 * r2
        return u + du, v + dv

    return distort


def undistort_depth(
    depth: np.ndarray, distorted: Camera, k_undistorted: tuple[float, ...], hw: tuple[int, int], file: str
) -> np.ndarray:
    """Nearest resampling of a distorted-camera depth map into a pinhole camera with the same pose."""
    model, _, _, p = distorted
    if model == "THIN_PRISM_FISHEYE" and len(p) == 12:
        distort, k_d = thin_prism_fisheye(p[4:]), p[:4]
    else:
        distort, k_d = (lambda x, y: (x, y)), pinhole(distorted, file)
    fx, fy, cx, cy = k_undistorted
    h, w = hw
    out = np.zeros((h, w), np.float32)
    xs = (np.arange(w) + 0.5 - cx) / fx
    for r0 in range(0, h, _ROWS):
        ys = (np.arange(r0, min(r0 + _ROWS, h)) + 0.5 - cy) / fy
        xd, yd = distort(*np.meshgrid(xs, ys))
        # COLMAP pixel (i, j) covers [i, i + 1) x [j, j + 1): the index is the floor of the coordinate.
        col = np.floor(k_d[0] * xd + k_d[2]).astype(np.int64)
        row = np.floor(k_d[1] * yd + k_d[3]).astype(np.int64)
        inside = (col >= 0) & (col < depth.shape[1]) & (row >= 0) & (row < depth.shape[0])
        block = np.zeros(xd.shape, np.float32)
        block[inside] = depth[row[inside], col[inside]]
        out[r0 : r0 + len(ys)] = block
    return out


@register
class Eth3d:
    info = AdapterInfo(
        name="eth3d",
        description="ETH3D high-res multi-view DSLR, laser-scan depth resampled into the undistorted camera",
        sensor="laser_scanner",
        depth_encoding="headerless little-endian float32 metres (distorted geometry), inf/NaN/0 invalid",
        intrinsics="COLMAP dslr_calibration_undistorted/cameras.txt (PINHOLE), principal point - 0.5 px",
        splits="test (every scene's ground_truth_depth/dslr_images)",
        eval_protocol="eth3d: no crop; Metric3D drops depth > 100 m",
        license="CC BY-NC-SA 4.0 (uncertain)",
        verified="fixture only; formats from the ETH3D docs as quoted by MapAnything's converter; COLMAP models.h",
    )

    def items(self, src: Source, split: str | None, dataset: str) -> Iterator[Item]:
        if split not in (None, "test"):
            raise ValueError(f"eth3d has split test; got {split!r}")
        for rel in src.glob("*/ground_truth_depth/dslr_images/*"):
            scene, name = rel.split("/")[0], rel.rsplit("/", 1)[1]
            yield Item(
                dataset=dataset,
                split="test",
                scene=scene,
                frame=posixpath.splitext(name)[0],
                camera="dslr",
                files={
                    "rgb": f"{scene}/images/dslr_images_undistorted/{name}",
                    "depth": rel,
                    "calib_undistorted": f"{scene}/dslr_calibration_undistorted/cameras.txt",
                    "calib_distorted": f"{scene}/dslr_calibration_jpg/cameras.txt",
                },
                extra={"name": name},
            )

    def load(self, src: Source, item: Item) -> Sample:
        name, scene = item.extra["name"], item.scene
        cam_u = read_camera(src, f"{scene}/dslr_calibration_undistorted", name)
        cam_d = read_camera(src, f"{scene}/dslr_calibration_jpg", name)
        k_u = pinhole(cam_u, item.files["calib_undistorted"])
        rgb, data, fmt = read_rgb(src, item.files["rgb"])
        if rgb.shape[:2] != (cam_u[2], cam_u[1]):
            raise SourceError(
                item.files["rgb"], f"size {rgb.shape[:2]} differs from its camera ({cam_u[2]}, {cam_u[1]})"
            )
        raw = src.read_bytes(item.files["depth"])
        w_d, h_d = cam_d[1], cam_d[2]
        if len(raw) != w_d * h_d * 4:
            raise SourceError(item.files["depth"], f"{len(raw)} bytes, expected {w_d}x{h_d} float32 = {w_d * h_d * 4}")
        depth_d = np.frombuffer(raw, "<f4").reshape(h_d, w_d)
        depth_d = np.where(np.isfinite(depth_d) & (depth_d > 0), depth_d, np.float32(0))
        depth = undistort_depth(depth_d, cam_d, k_u, rgb.shape[:2], item.files["calib_distorted"])
        k_px = (k_u[0], k_u[1], k_u[2] - 0.5, k_u[3] - 0.5)
        return make_sample(self.info, item, src, rgb, depth, k_px, data, fmt)
