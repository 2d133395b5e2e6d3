"""Geometry shared by the adapters: rigid transforms, lidar -> depth map, disparity -> depth, ray -> z.

Frames: a pose (R, t) maps points of a child frame into its parent: p_parent = R p_child + t.
Camera frame: x right, y down, z forward (optical axis). All lengths in metres, pixels in pixels.
"""

from __future__ import annotations

import numpy as np


def quat_to_rot(w: float, x: float, y: float, z: float) -> np.ndarray:
    """3x3 rotation of a unit quaternion given as (w, x, y, z); the input is normalised first."""
    q = np.array([w, x, y, z], np.float64)
    n = np.linalg.norm(q)
    if n == 0:
        raise ValueError("zero quaternion")
    w, x, y, z = q / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def pose_matrix(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """4x4 homogeneous transform from a 3x3 rotation and a 3-vector translation."""
    m = np.eye(4)
    m[:3, :3] = rotation
    m[:3, 3] = np.asarray(translation, np.float64).reshape(3)
    return m


def pose_from_quat(wxyz: tuple[float, float, float, float], translation: tuple[float, float, float]) -> np.ndarray:
    return pose_matrix(quat_to_rot(*wxyz), np.asarray(translation))


def invert_pose(m: np.ndarray) -> np.ndarray:
    r, t = m[:3, :3], m[:3, 3]
    return pose_matrix(r.T, -r.T @ t)


def transform_points(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to Nx3 points."""
    pts = np.asarray(points, np.float64)[:, :3]
    return pts @ m[:3, :3].T + m[:3, 3]


def project_to_depth(
    points_cam: np.ndarray, k_px: tuple[float, float, float, float], hw: tuple[int, int], min_depth_m: float = 0.0
) -> np.ndarray:
    """Nx3 camera-frame points -> float32 HxW z-depth map: z > min_depth_m (and > 0), pixel = round(K p / z),
    inside the image, the minimum z kept per pixel (no see-through), empty pixels 0. Nothing densified."""
    fx, fy, cx, cy = k_px
    h, w = hw
    p = np.asarray(points_cam, np.float64)
    z = p[:, 2]
    keep = np.isfinite(p).all(axis=1) & (z > max(min_depth_m, 0.0))
    p, z = p[keep], z[keep]
    u = np.rint(fx * p[:, 0] / z + cx).astype(np.int64)
    v = np.rint(fy * p[:, 1] / z + cy).astype(np.int64)
    inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    u, v, z = u[inside], v[inside], z[inside]
    order = np.argsort(-z, kind="stable")  # far first, so the nearest point is written last and wins
    depth = np.zeros((h, w), np.float32)
    depth[v[order], u[order]] = z[order].astype(np.float32)
    return depth


def disparity_to_depth(disparity_px: np.ndarray, baseline_m: float, fx_px: float) -> np.ndarray:
    """depth = baseline * fx / disparity where disparity > 0, else 0 (invalid)."""
    d = np.asarray(disparity_px, np.float64)
    out = np.zeros(d.shape, np.float32)
    ok = d > 0
    out[ok] = (baseline_m * fx_px / d[ok]).astype(np.float32)
    return out


def ray_length_to_z(ray_m: np.ndarray, k_px: tuple[float, float, float, float]) -> np.ndarray:
    """Euclidean distance along each pixel's ray -> z-depth: z = r / |((u - cx)/fx, (v - cy)/fy, 1)|."""
    fx, fy, cx, cy = k_px
    h, w = ray_m.shape
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    norm = np.sqrt(((u - cx) / fx) ** 2 + ((v - cy) / fy) ** 2 + 1.0)
    return (ray_m / norm).astype(np.float32)
