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

import math
from dataclasses import dataclass

import cv2
import numpy as np

from schemas.camera import F_CANONICAL_PX, mean_focal_px
from schemas.sample import SPARSE_VALID_FRAC

CSTM_MODES = ("label", "image", "none")
Intrinsics = tuple[float, float, float, float]


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

    sx, sy: resize factors source -> resized frame. The crop window starts at (x0, y0) of the resized frame,
    chosen as x0 = u0 * sx + kx with integers u0 (first source column read) and kx, so resizing only the
    source window starting at u0 lands exactly on the crop grid (crop pixel X' is window pixel X' + kx).
    x0 < 0 means the image sits inside zero padding. depth_factor multiplies every depth label;
    k_px: intrinsics of the output (after the flip)."""

    sx: float
    sy: float
    u0: int
    v0: int
    kx: int
    ky: int
    out_hw: tuple[int, int]
    flip: bool
    depth_factor: float
    k_px: Intrinsics

    @property
    def x0(self) -> float:
        return self.u0 * self.sx + self.kx

    @property
    def y0(self) -> float:
        return self.v0 * self.sy + self.ky


def _window_start(desired: int, s: float) -> tuple[int, int]:
    """(u0, k): the crop origin u0 * s + k nearest `desired` with k >= s, so the first window pixel the crop
    keeps samples the source at local coordinate >= 0.5 and the window's own edge never reaches the crop."""
    margin = math.ceil(s)
    u0 = math.floor((desired - margin) / s)
    if u0 <= 0:
        return 0, desired  # the window starts at the image's edge: edges behave as in a whole-image resize
    return u0, round(desired - u0 * s)


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
    u0, kx = _window_start(round((rw - out_hw[1]) * crop_uv[0]), sx)
    v0, ky = _window_start(round((rh - out_hw[0]) * crop_uv[1]), sy)
    plan = Plan(sx, sy, u0, v0, kx, ky, out_hw, flip, depth_factor, k)
    k = crop_intrinsics(k, plan.x0, plan.y0)
    if flip:
        k = flip_intrinsics(k, out_hw[1])
    return Plan(sx, sy, u0, v0, kx, ky, out_hw, flip, depth_factor, k)


def _source_window(plan: Plan, hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Source rows/cols [v0, v1) x [u0, u1) that feed the crop, with a 2-pixel margin for interpolation."""
    ch, cw = plan.out_hw
    u1 = min(hw[1], plan.u0 + math.ceil((cw + plan.kx) / plan.sx) + 2)
    v1 = min(hw[0], plan.v0 + math.ceil((ch + plan.ky) / plan.sy) + 2)
    return plan.v0, v1, plan.u0, u1


def _place(part: np.ndarray, plan: Plan, out: np.ndarray | None = None, scale: float = 0.0) -> np.ndarray:
    """Put the resized window into the zero-padded crop (crop pixel X' = window pixel X' + k), mirrored
    when the plan flips: one copy either way. `out` (zeros, out_hw) receives it; with `scale`, stored
    integers become metres on the way (value / scale in float32, as the dense decode does)."""
    ch, cw = plan.out_hw
    if out is None:
        out = np.zeros((ch, cw, *part.shape[2:]), np.float32 if scale else part.dtype)
    dx, dy = max(plan.kx, 0), max(plan.ky, 0)
    ox, oy = dx - plan.kx, dy - plan.ky
    nx, ny = min(part.shape[1] - dx, cw - ox), min(part.shape[0] - dy, ch - oy)
    if nx > 0 and ny > 0:
        window = part[dy : dy + ny, dx : dx + nx]
        region = out[oy : oy + ny, cw - ox - nx : cw - ox] if plan.flip else out[oy : oy + ny, ox : ox + nx]
        if scale:
            np.divide(cv2.flip(window, 1) if plan.flip else window, np.float32(scale), out=region, dtype=np.float32)
        elif plan.flip:
            cv2.flip(window, 1, dst=region)  # numpy's reversed-stride copy of HxWx3 bytes is ~15x slower
        else:
            region[...] = window
    return out


def _resize_window(
    image: np.ndarray, plan: Plan, interpolation: int, out: np.ndarray | None = None, scale: float = 0.0
) -> np.ndarray:
    v0, v1, u0, u1 = _source_window(plan, image.shape[:2])
    if v1 <= v0 or u1 <= u0:
        return np.zeros((*plan.out_hw, *image.shape[2:]), image.dtype) if out is None else out
    window = image[v0:v1, u0:u1]
    if (plan.sx, plan.sy) != (1.0, 1.0):
        size_hw = (round(window.shape[0] * plan.sy), round(window.shape[1] * plan.sx))  # as OpenCV rounds it
        if interpolation == cv2.INTER_NEAREST_EXACT:
            window = _nearest(window, plan, size_hw, image.shape[:2])
        elif size_hw == window.shape[:2]:
            # cv2.resize returns an input whose rounded output size equals its own untouched, whatever the
            # factors (a window within 0.5 px of its size): warpAffine on the same grid instead (its 1/32-px
            # coordinate table: within a grey level or two of cv2.resize).
            forward = np.array([[plan.sx, 0.0, 0.5 * plan.sx - 0.5], [0.0, plan.sy, 0.5 * plan.sy - 0.5]])
            window = cv2.warpAffine(
                window, forward, size_hw[::-1], flags=interpolation, borderMode=cv2.BORDER_REPLICATE
            )
        else:
            # fx/fy given (no dsize): OpenCV keeps exactly these factors for bilinear, so window pixel d samples
            # the source at u0 + (d + 0.5) / sx - 0.5, the whole-image resize's own grid.
            window = cv2.resize(window, None, fx=plan.sx, fy=plan.sy, interpolation=interpolation)
    return _place(window, plan, out, scale)


def _nearest(window: np.ndarray, plan: Plan, size_hw: tuple[int, int], hw: tuple[int, int]) -> np.ndarray:
    """Nearest neighbour on the whole image's grid: window pixel d takes source pixel floor((d + 0.5) / s), as
    INTER_NEAREST_EXACT does on the whole image, in integers (s = resized / original size exactly, so no float
    lands a hair below a pixel boundary). cv2.resize on a window would take its step from the window's
    rounded size instead, up to a pixel off the RGB's grid."""
    (h, w), (rh, rw) = hw, (round(hw[0] * plan.sy), round(hw[1] * plan.sx))
    rows = np.minimum((2 * np.arange(size_hw[0]) + 1) * h // (2 * rh), window.shape[0] - 1)
    cols = np.minimum((2 * np.arange(size_hw[1]) + 1) * w // (2 * rw), window.shape[1] - 1)
    return window[rows][:, cols]


def warp_rgb(rgb: np.ndarray, plan: Plan, out: np.ndarray | None = None) -> np.ndarray:
    """Bilinear resize + crop (+ flip), computing only the source window the crop needs; padding is 0.
    `out`: a zeroed out_hw x 3 uint8 array to write into (a slot of a batch)."""
    return _resize_window(rgb, plan, cv2.INTER_LINEAR, out)


def warp_depth(depth: np.ndarray, plan: Plan, sparse: bool | None = None) -> np.ndarray:
    """Resize + crop depth without inventing values: dense maps by nearest neighbour (pixel-centre exact),
    sparse maps by moving each valid point to its new pixel (the nearest depth wins on collisions). Then
    scale by depth_factor."""
    if sparse is None:
        sparse = np.count_nonzero(depth) < SPARSE_VALID_FRAC * depth.size
    if sparse:
        index = np.flatnonzero(depth != 0)  # on a bool mask: 4x faster than on the values
        return splat_points(index, depth.ravel()[index], depth.shape, plan)
    return warp_depth_map(depth, plan)


def warp_depth_map(values: np.ndarray, plan: Plan, scale: float = 0.0, out: np.ndarray | None = None) -> np.ndarray:
    """A dense map by nearest neighbour, then times depth_factor. `values`: metres (float32), or integers
    with `scale` (metres = value / scale, converted only inside the crop); `out`: a zeroed out_hw float32."""
    out = _resize_window(values, plan, cv2.INTER_NEAREST_EXACT, out, scale)
    if plan.depth_factor != 1.0:
        out *= np.float32(plan.depth_factor)
    return out


def splat_points(
    index: np.ndarray, depth_m: np.ndarray, hw: tuple[int, int], plan: Plan, out: np.ndarray | None = None
) -> np.ndarray:
    """Sparse depth given as points (row-major pixel indices of an hw map, float32 metres) moved to their
    crop pixels, the nearest winning each pixel, times depth_factor. `out`: a zeroed out_hw float32."""
    h, w = plan.out_hw
    if out is None:
        out = np.zeros((h, w), np.float32)
    elif not out.flags.c_contiguous:
        raise ValueError("splat_points writes through a flat view: `out` must be C-contiguous")
    # Source column u -> crop column rint((u + 0.5) sx - 0.5 - x0), as a table per column and per row: two
    # gathers per point instead of float arithmetic on every point. -1 marks columns/rows outside the crop.
    x = np.rint((np.arange(hw[1]) + 0.5) * plan.sx - (0.5 + plan.x0)).astype(np.int64)
    y = np.rint((np.arange(hw[0]) + 0.5) * plan.sy - (0.5 + plan.y0)).astype(np.int64)
    if plan.flip:
        x = w - 1 - x
    col = np.where((x >= 0) & (x < w), x, -1)
    row = np.where((y >= 0) & (y < h), y * w, -1)
    v, u = np.divmod(index, hw[1])
    c, r = col[u], row[v]
    keep = (c >= 0) & (r >= 0)
    flat, z = (r + c)[keep], depth_m[keep]
    if plan.depth_factor != 1.0:
        # Scaling before the minimum is the same as after: rounding a positive product is monotone.
        z = z * np.float32(plan.depth_factor)
    target = out.reshape(-1)
    target[flat] = z
    # Collisions happen only when shrinking, a few points per pixel at most: lower each pixel to its
    # nearest point in a handful of vector passes instead of sorting every point by depth.
    while True:
        closer = z < target[flat]
        if not closer.any():
            break
        target[flat[closer]] = z[closer]
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
    if depth_net.shape != (h, w) or (plan.x0, plan.y0) != (0, 0):
        # Original pixel u sits at network pixel (u + 0.5) sx - 0.5 - x0: sample the prediction there.
        forward = np.array(
            [[plan.sx, 0.0, 0.5 * plan.sx - 0.5 - plan.x0], [0.0, plan.sy, 0.5 * plan.sy - 0.5 - plan.y0]]
        )
        depth_net = cv2.warpAffine(
            depth_net.astype(np.float32),
            forward,
            (w, h),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
    return (depth_net / np.float32(plan.depth_factor)).astype(np.float32)
