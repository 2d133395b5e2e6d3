"""CSTM and augmentation transforms: exact inverses and geometric invariants, over random cameras."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.cstm import (
    apply,
    check_mode,
    depth_c_to_m,
    depth_m_to_c,
    from_network,
    plan_transform,
    to_network,
)
from schemas.camera import F_CANONICAL_PX

focal = st.floats(100.0, 3000.0)
depth_values = st.floats(0.05, 300.0)


@given(d=st.lists(depth_values, min_size=1, max_size=50), f=focal)
def test_label_mode_round_trip_is_exact(d, f):
    depth_m = np.array(d, np.float32)
    back = depth_c_to_m(depth_m_to_c(depth_m, f), f)
    np.testing.assert_allclose(back, depth_m, rtol=2e-7 * 3, atol=0)


def _backproject(u, v, z, k):
    fx, fy, cx, cy = k
    return np.stack([(u - cx) * z / fx, (v - cy) * z / fy, z], axis=-1)


@settings(max_examples=60, deadline=None)
@given(
    f=focal,
    h=st.integers(8, 120),
    w=st.integers(8, 160),
    cxy=st.tuples(st.floats(0.2, 0.8), st.floats(0.2, 0.8)),
    ratio=st.floats(0.9, 1.4),
    flip=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_image_mode_resize_and_flip_keep_3d_points(f, h, w, cxy, ratio, flip, seed):
    rng = np.random.default_rng(seed)
    k = (f, f, cxy[0] * w, cxy[1] * h)
    depth = np.zeros((h, w), np.float32)
    n = max(1, h * w // 20)
    vs, us = rng.integers(0, h, n), rng.integers(0, w, n)
    depth[vs, us] = rng.uniform(1.0, 50.0, n).astype(np.float32)
    plan = plan_transform((h, w), k, "image", ratio=ratio, flip=flip)
    _, out, valid, k_out = apply(np.zeros((h, w, 3), np.uint8), depth, plan, sparse=True)
    assert k_out[0] == k_out[1] == F_CANONICAL_PX
    ov, ou = np.nonzero(valid)
    assert len(ov) > 0
    # Every output point is an input point seen through the new camera, to within the pixel grid
    # (half a pixel of the output image at that depth), mirrored in x when flipped.
    p_out = _backproject(ou, ov, out[ov, ou] / plan.depth_factor, (plan.sx * f, plan.sy * f, *k_out[2:]))
    if flip:
        p_out[:, 0] *= -1
    v_in, u_in = np.nonzero(depth)
    p_in = _backproject(u_in, v_in, depth[v_in, u_in], k)
    for p in p_out:
        nearest = np.min(np.linalg.norm(p_in - p, axis=1))
        grid = 0.5 * np.sqrt(2) * p[2] / (min(plan.sx, plan.sy) * f) + 1e-4 * p[2]
        assert nearest <= grid, (nearest, grid)


@settings(max_examples=30, deadline=None)
@given(hh=st.integers(4, 60), ww=st.integers(4, 80), seed=st.integers(0, 1000))
def test_twice_canonical_focal_halves_the_image_and_keeps_depth(hh, ww, seed):
    h, w = 2 * hh, 2 * ww
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.5, 20.0, (h, w)).astype(np.float32)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    k = (2 * F_CANONICAL_PX, 2 * F_CANONICAL_PX, (w - 1) / 2, (h - 1) / 2)
    plan = plan_transform((h, w), k, "image")
    out_rgb, out_depth, valid, k_out = apply(rgb, depth, plan, sparse=False)
    assert out_rgb.shape == (hh, ww, 3) and out_depth.shape == (hh, ww)
    assert plan.depth_factor == 1.0
    assert k_out == pytest.approx((F_CANONICAL_PX, F_CANONICAL_PX, (ww - 1) / 2, (hh - 1) / 2))
    assert np.isin(out_depth, depth).all() and valid.all()  # values unchanged, only resampled
    # Bilinear at exactly 0.5 averages each 2x2 block.
    block = rgb.reshape(hh, 2, ww, 2, 3).astype(np.float64).mean(axis=(1, 3))
    assert np.abs(out_rgb.astype(np.float64) - block).max() <= 1.0


@given(f=focal, ratio=st.floats(0.9, 1.4))
def test_label_mode_keeps_the_image_and_scales_labels(f, ratio):
    depth = np.full((10, 12), 7.0, np.float32)
    plan = plan_transform((10, 12), (f, f, 6.0, 5.0), "label", ratio=1.0)
    _, out, _, k = apply(np.zeros((10, 12, 3), np.uint8), depth, plan)
    assert out.shape == (10, 12) and k[:2] == (F_CANONICAL_PX, F_CANONICAL_PX)
    np.testing.assert_allclose(out, 7.0 * F_CANONICAL_PX / f, rtol=1e-6)
    resized = plan_transform((10, 12), (f, f, 6.0, 5.0), "label", ratio=ratio)
    mean_scale = (resized.sx + resized.sy) / 2  # whole-pixel sizes make sx and sy differ slightly
    assert resized.depth_factor == pytest.approx(F_CANONICAL_PX / (f * mean_scale), rel=1e-9)


def test_none_mode_keeps_metres_under_resize():
    plan = plan_transform((10, 12), (500.0, 500.0, 6.0, 5.0), "none", ratio=1.3)
    assert plan.depth_factor == 1.0 and plan.k_px[0] == pytest.approx(500.0 * plan.sx)


def test_crop_pads_with_invalid_pixels_and_shifts_the_principal_point():
    rgb = np.full((10, 12, 3), 200, np.uint8)
    depth = np.full((10, 12), 3.0, np.float32)
    plan = plan_transform((10, 12), (100.0, 100.0, 6.0, 5.0), "none", crop_hw=(14, 16), crop_uv=(0.5, 0.5))
    out_rgb, out_depth, valid, k = apply(rgb, depth, plan, sparse=False)
    assert out_rgb.shape == (14, 16, 3) and (plan.x0, plan.y0) == (-2, -2)
    assert valid.sum() == 10 * 12 and (out_rgb[~valid] == 0).all() and (out_depth[~valid] == 0).all()
    assert k == (100.0, 100.0, 8.0, 7.0)
    flipped = plan_transform((10, 12), (100.0, 100.0, 6.0, 5.0), "none", crop_hw=(14, 16), flip=True)
    assert flipped.k_px[2] == 16 - 1 - 8.0


def test_sparse_resize_keeps_the_nearest_point_on_collision():
    depth = np.zeros((4, 4), np.float32)
    depth[0, 0], depth[0, 1] = 9.0, 4.0  # both land on output pixel (0, 0) at scale 0.5
    plan = plan_transform((4, 4), (1.0, 1.0, 1.5, 1.5), "none", ratio=0.5)
    out = apply(np.zeros((4, 4, 3), np.uint8), depth, plan, sparse=True)[1]
    assert out.shape == (2, 2) and out[0, 0] == 4.0 and np.count_nonzero(out) == 1


@pytest.mark.parametrize("mode", ["label", "image", "none"])
def test_network_round_trip_returns_metres_at_the_original_size(mode):
    rgb = np.zeros((30, 40, 3), np.uint8)
    k = (700.0, 700.0, 20.0, 15.0)
    net_rgb, plan = to_network(rgb, k, mode)
    depth_m = 5.0
    pred = np.full(net_rgb.shape[:2], depth_m * plan.depth_factor, np.float32)  # what a perfect net predicts
    back = from_network(pred, plan, (30, 40))
    assert back.shape == (30, 40)
    np.testing.assert_allclose(back, depth_m, rtol=1e-6)


def test_unknown_mode_lists_the_valid_ones():
    with pytest.raises(ValueError, match="label, image, none"):
        check_mode("canonical")


@settings(max_examples=80, deadline=None)
@given(
    h=st.integers(5, 90),
    w=st.integers(5, 120),
    ratio=st.floats(0.45, 2.5),
    crop=st.tuples(st.integers(4, 100), st.integers(4, 130)),
    uv=st.tuples(st.floats(0, 1), st.floats(0, 1)),
    seed=st.integers(0, 1000),
)
def test_windowed_resize_equals_the_whole_image_transform(h, w, ratio, crop, uv, seed):
    """Resizing only the source window gives the pixels a whole-image affine warp gives (same grid)."""
    import cv2

    from pipelines.cstm import warp_rgb

    rng = np.random.default_rng(seed)
    smooth = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (5, 5), 2)
    plan = plan_transform((h, w), (100.0, 100.0, w / 2, h / 2), "none", ratio=ratio, crop_hw=crop, crop_uv=uv)
    forward = np.array([[plan.sx, 0, 0.5 * plan.sx - 0.5 - plan.x0], [0, plan.sy, 0.5 * plan.sy - 0.5 - plan.y0]])
    reference = cv2.warpAffine(smooth, forward, crop[::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    ours = warp_rgb(smooth, plan).astype(np.int16)
    # Compare where the crop sees the image (padding is 0 in ours, replicated in the reference); interior
    # pixels agree to OpenCV's fixed-point rounding: warpAffine interpolates on a 1/32 px table, so up to
    # 1/64 px of position error per axis, times the image's steepest step between neighbours.
    steepest = max(np.abs(np.diff(smooth.astype(np.int16), axis=a)).max(initial=0) for a in (0, 1))
    tolerance = 2 + steepest / 32
    xs = (np.arange(crop[1]) + plan.x0 + 0.5) / plan.sx - 0.5
    ys = (np.arange(crop[0]) + plan.y0 + 0.5) / plan.sy - 0.5
    inside = ((ys >= 0) & (ys <= h - 1))[:, None] & ((xs >= 0) & (xs <= w - 1))[None, :]
    assert np.abs(ours - reference)[inside].max(initial=0) <= tolerance
    outside = ((ys < -0.5 - 1 / plan.sy) | (ys > h - 0.5 + 1 / plan.sy))[:, None] | (
        (xs < -0.5 - 1 / plan.sx) | (xs > w - 0.5 + 1 / plan.sx)
    )[None, :]
    assert (ours[outside] == 0).all()


@settings(max_examples=80, deadline=None)
@given(
    h=st.integers(5, 60),
    w=st.integers(8, 90),
    ratio=st.floats(0.95, 1.1),
    crop=st.tuples(st.integers(4, 40), st.integers(4, 60)),
    uv=st.tuples(st.floats(0, 1), st.floats(0, 1)),
    seed=st.integers(0, 1000),
)
def test_windows_resized_by_nearly_one_match_the_whole_image_resize(h, w, ratio, crop, uv, seed):
    """Windowed resizing matches the whole-image resize, including a window whose rounded size does not change
    (cv2.resize then returns it untouched): nearest neighbour exactly (on the whole image's grid, which
    cv2.resize on a window does not keep), bilinear within OpenCV's fixed-point rounding."""
    import cv2
    from hypothesis import assume

    from pipelines.cstm import warp_depth, warp_rgb

    plan = plan_transform((h, w), (100.0, 100.0, w / 2, h / 2), "none", ratio=ratio, crop_hw=crop, crop_uv=uv)
    assume((round(h * plan.sy), round(w * plan.sx)) != (h, w))  # the whole-image reference itself resizes
    rng = np.random.default_rng(seed)
    depth = rng.uniform(1.0, 50.0, (h, w)).astype(np.float32)
    rgb = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (5, 5), 2)
    assume(float(plan.x0).is_integer() and float(plan.y0).is_integer())  # the crop starts on whole pixels
    x0, y0 = int(plan.x0), int(plan.y0)
    ch, cw = crop

    def whole(image: np.ndarray, interpolation: int) -> np.ndarray:
        full = cv2.resize(image, None, fx=plan.sx, fy=plan.sy, interpolation=interpolation)
        out = np.zeros((ch, cw, *image.shape[2:]), image.dtype)
        ys, xs = max(y0, 0), max(x0, 0)
        ye, xe = min(y0 + ch, full.shape[0]), min(x0 + cw, full.shape[1])
        out[ys - y0 : ye - y0, xs - x0 : xe - x0] = full[ys:ye, xs:xe]
        return out

    # Nearest neighbour exactly, except where a sample point falls exactly on a pixel boundary: there we take
    # floor (the pixel to the right / below), OpenCV's 16-bit fixed point may take either neighbour.
    rh, rw = round(h * plan.sy), round(w * plan.sx)
    tie_rows = ((2 * (np.arange(ch) + y0) + 1) * h) % (2 * rh) == 0
    tie_cols = ((2 * (np.arange(cw) + x0) + 1) * w) % (2 * rw) == 0
    same = warp_depth(depth, plan, sparse=False) == whole(depth, cv2.INTER_NEAREST_EXACT)
    assert same[~tie_rows][:, ~tie_cols].all()
    diff = np.abs(warp_rgb(rgb, plan).astype(np.int16) - whole(rgb, cv2.INTER_LINEAR).astype(np.int16))
    assert diff.max(initial=0) <= 2


def test_a_window_cv2_would_return_untouched_is_resized():
    """The case hypothesis found: 5x12, ratio 1.0625 -> a 5x6 window whose output rounds to 5x6."""
    import cv2

    from pipelines.cstm import warp_depth, warp_rgb

    rng = np.random.default_rng(0)
    rgb = cv2.GaussianBlur(rng.integers(0, 256, (5, 12, 3), dtype=np.uint8), (5, 5), 2)
    depth = rng.uniform(1.0, 10.0, (5, 12)).astype(np.float32)
    plan = plan_transform((5, 12), (100.0, 100.0, 6.0, 2.5), "none", ratio=1.0625, crop_hw=(4, 4), crop_uv=(0, 0))
    full_rgb = cv2.resize(rgb, None, fx=plan.sx, fy=plan.sy, interpolation=cv2.INTER_LINEAR)
    full_depth = cv2.resize(depth, None, fx=plan.sx, fy=plan.sy, interpolation=cv2.INTER_NEAREST_EXACT)
    assert np.array_equal(warp_rgb(rgb, plan), full_rgb[:4, :4])
    assert np.array_equal(warp_depth(depth, plan, sparse=False), full_depth[:4, :4])
