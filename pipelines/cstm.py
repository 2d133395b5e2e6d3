"""The canonical camera space transformation (CSTM) and the geometric augmentations, as pure functions.

Conventions: pixel centres at integer coordinates; k_px = (fx, fy, cx, cy). Resizing an image of width W
by a factor s maps x -> (x + 0.5) * s - 0.5, so fx -> s fx and cx -> (cx + 0.5) s - 0.5. Depth is z along
the optical axis in metres (`depth_m`) or in canonical metres (`depth_c`, label/image modes).

Modes (`CSTM_MODES`):
  label  image unchanged; depth_c = depth_m * F_CANONICAL_PX / f; k -> (f_c, f_c, cx, cy)
  image  image resized by F_CANONICAL_PX / f; depth unchanged; the size is rounded to whole pixels and the
         < 0.5 px rounding is absorbed into the labels, so the canonical focal is exact
  none   the ablation switch: raw metric labels, intrinsics unchanged
Training then resizes by a random ratio r (labels / r, except in `none`: metres do not change when an image
is resized), crops to crop_hw with zero padding (padded pixels invalid) and may flip (cx -> W - 1 - cx).
Only the pixels of the crop window are ever computed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from schemas.camera import F_CANONICAL_PX, mean_focal_px

CSTM_MODES = ("label", "image", "none")
Intrinsics = tuple[float, float, float, float]
# Below this valid fraction a depth map is treated as sparse (lidar-like) and resized by moving each point.
SPARSE_VALID_FRAC = 0.5


def check_mode(mode: str) -> str:
    if mode not in CSTM_MODES:
        raise ValueError(f"unknown cstm mode {mode!r}; valid: {', '.join(CSTM_MODES)}")
    return mode


# -- label mode ----------------------------------------------------------------------------------------
def label_factor(f_px: float) -> float:
    """depth_c / depth_m in label mode."""
    return F_CANONICAL_PX / f_px


def depth_m_to_c(depth_m: np.ndarray, f_px: float) -> np.ndarray:
    return (depth_m * np.float32(label_factor(f_px))).astype(np.float32)


def depth_c_to_m(depth_c: np.ndarray, f_px: float) -> np.ndarray:
    """The inverse used at inference: canonical metres -> metres of the real camera."""
    return (depth_c * np.float32(f_px / F_CANONICAL_PX)).astype(np.float32)


# -- resizing with intrinsics --------------------------------------------------------------------------
def resized_size(hw: tuple[int, int], scale: float) -> tuple[int, int]:
    return max(1, round(hw[0] * scale)), max(1, round(hw[1] * scale))


def scale_intrinsics(k_px: Intrinsics, sx: float, sy: float) -> Intrinsics:
    fx, fy, cx, cy = k_px
    return (fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5)


def crop_intrinsics(k_px: Intrinsics, x0: int, y0: int) -> Intrinsics:
    fx, fy, cx, cy = k_px
    return (fx, fy, cx - x0, cy - y0)


def flip_intrinsics(k_px: Intrinsics, width: int) -> Intrinsics:
    fx, fy, cx, cy = k_px
    return (fx, fy, width - 1 - cx, cy)


@dataclass(frozen=True)
class Plan:
    """Everything a sample's transform needs, decided before any pixel is touched.

    sx, sy: resize factors source -> resized frame; x0, y0: crop origin in the resized frame (negative
    when the image is smaller than the crop: it sits inside zero padding); out_hw: crop size;
    depth_factor: multiplies every depth label; k_px: intrinsics of the output (after flip)."""

    sx: float
    sy: float
    x0: int
    y0: int
    out_hw: tuple[int, int]
    flip: bool
    depth_factor: float
    k_px: Intrinsics


def plan_transform(
    hw: tuple[int, int],
    k_px: Intrinsics,
    mode: str,
    ratio: float = 1.0,
    crop_hw: tuple[int, int] | None = None,
    crop_uv: tuple[float, float] = (0.5, 0.5),
    flip: bool = False,
) -> Plan:
    """CSTM, then a resize by `ratio`, then a crop (crop_uv in [0, 1] picks its place), then a flip."""
    check_mode(mode)
    f = mean_focal_px(k_px)
    scale = ratio * (F_CANONICAL_PX / f if mode == "image" else 1.0)
    rh, rw = resized_size(hw, scale)
    sx, sy = rw / hw[1], rh / hw[0]
    k = scale_intrinsics(k_px, sx, sy)
    if mode == "none":
        depth_factor = 1.0
    else:
        # Canonical labels for the focal the resized image really has (exact, whatever the rounding).
        depth_factor = F_CANONICAL_PX / mean_focal_px(k)
        k = (F_CANONICAL_PX, F_CANONICAL_PX, k[2], k[3])
    out_hw = crop_hw or (rh, rw)
    x0 = round((rw - out_hw[1]) * crop_uv[0]) if rw != out_hw[1] else 0
    y0 = round((rh - out_hw[0]) * crop_uv[1]) if rh != out_hw[0] else 0
    k = crop_intrinsics(k, x0, y0)
    if flip:
        k = flip_intrinsics(k, out_hw[1])
    return Plan(sx, sy, x0, y0, out_hw, flip, depth_factor, k)


def _affine(plan: Plan) -> np.ndarray:
    # Source pixel x -> output pixel (x + 0.5) sx - 0.5 - x0, as a 2x3 matrix for cv2.warpAffine.
    return np.array(
        [[plan.sx, 0.0, 0.5 * plan.sx - 0.5 - plan.x0], [0.0, plan.sy, 0.5 * plan.sy - 0.5 - plan.y0]], np.float64
    )


def warp_rgb(rgb: np.ndarray, plan: Plan) -> np.ndarray:
    """Bilinear resize + crop in one pass over the output pixels only; padding is 0."""
    h, w = plan.out_hw
    if (plan.sx, plan.sy, plan.x0, plan.y0) == (1.0, 1.0, 0, 0) and rgb.shape[:2] == (h, w):
        out = rgb
    else:
        out = cv2.warpAffine(rgb, _affine(plan), (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return np.ascontiguousarray(out[:, ::-1]) if plan.flip else out


def warp_depth(depth: np.ndarray, plan: Plan, sparse: bool | None = None) -> np.ndarray:
    """Resize + crop depth without inventing values: dense maps by nearest neighbour, sparse maps by moving
    each valid point to its new pixel (the nearest depth wins on collisions). Then scale by depth_factor."""
    h, w = plan.out_hw
    if sparse is None:
        sparse = np.count_nonzero(depth) < SPARSE_VALID_FRAC * depth.size
    if sparse:
        out = _splat(depth, plan)
    elif (plan.sx, plan.sy, plan.x0, plan.y0) == (1.0, 1.0, 0, 0) and depth.shape == (h, w):
        out = depth.copy()
    else:
        out = cv2.warpAffine(depth, _affine(plan), (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
    if plan.depth_factor != 1.0:
        out *= np.float32(plan.depth_factor)
    return np.ascontiguousarray(out[:, ::-1]) if plan.flip else out


def _splat(depth: np.ndarray, plan: Plan) -> np.ndarray:
    h, w = plan.out_hw
    v, u = np.nonzero(depth)
    z = depth[v, u]
    x = np.rint((u + 0.5) * plan.sx - 0.5 - plan.x0).astype(np.int64)
    y = np.rint((v + 0.5) * plan.sy - 0.5 - plan.y0).astype(np.int64)
    keep = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    x, y, z = x[keep], y[keep], z[keep]
    out = np.zeros((h, w), np.float32)
    if plan.sx < 1.0 or plan.sy < 1.0:
        order = np.argsort(-z, kind="stable")  # write far first, near last: the nearest point wins
        x, y, z = x[order], y[order], z[order]
    out[y, x] = z
    return out


def apply(
    rgb: np.ndarray, depth: np.ndarray, plan: Plan, sparse: bool | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Intrinsics]:
    """(rgb uint8 hxwx3, depth float32 hxw, valid bool hxw, k_px) for the planned output."""
    out_rgb = warp_rgb(rgb, plan)
    out_depth = warp_depth(depth, plan, sparse)
    return out_rgb, out_depth, out_depth > 0, plan.k_px


# -- inference-side inverses ---------------------------------------------------------------------------
def to_network(rgb: np.ndarray, k_px: Intrinsics, mode: str, ratio: float = 1.0) -> tuple[np.ndarray, Plan]:
    """The image the network sees for a photo (no crop, no flip) and the plan to undo it."""
    plan = plan_transform(rgb.shape[:2], k_px, mode, ratio)
    return warp_rgb(rgb, plan), plan


def from_network(depth_net: np.ndarray, plan: Plan, hw: tuple[int, int]) -> np.ndarray:
    """A dense prediction in the network's frame -> metres at the original size hw (inverse of `plan`)."""
    h, w = hw
    if depth_net.shape != (h, w):
        # Inverse affine of the planned resize: output pixel x' came from source (x' + x0 + 0.5) / sx - 0.5.
        inv = cv2.invertAffineTransform(_affine(plan))
        depth_net = cv2.warpAffine(
            depth_net.astype(np.float32), inv, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
    return (depth_net / np.float32(plan.depth_factor)).astype(np.float32)
