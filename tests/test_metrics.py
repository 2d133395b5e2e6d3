"""Depth metrics against hand-computed values on tiny arrays, and the three alignment modes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eval.metrics import (
    METRICS,
    abs_rel,
    align,
    aligned_metrics,
    compute_metrics,
    delta1,
    delta2,
    delta3,
    log10,
    rmse,
    rmse_log,
    silog,
    sq_rel,
)

LN2 = math.log(2.0)


@pytest.fixture
def tiny() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pred [1, 2, 4], gt [1, 1, 2] on the mask, plus one masked-out pixel holding garbage that must be ignored."""
    pred = np.array([1.0, 2.0, 4.0, np.nan], dtype=np.float32)
    gt = np.array([1.0, 1.0, 2.0, 0.0], dtype=np.float32)
    return pred, gt, np.array([True, True, True, False])


def test_hand_computed_values(tiny: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    pred, gt, mask = tiny
    # errors p - g = [0, 1, 2]; ln ratios d = [0, ln2, ln2]; ratios [1, 2, 2]
    assert abs_rel(pred, gt, mask) == pytest.approx((0 + 1 / 1 + 2 / 2) / 3)
    assert sq_rel(pred, gt, mask) == pytest.approx((0 + 1 / 1 + 4 / 2) / 3)
    assert rmse(pred, gt, mask) == pytest.approx(math.sqrt((0 + 1 + 4) / 3))
    assert rmse_log(pred, gt, mask) == pytest.approx(math.sqrt(2 * LN2**2 / 3))
    assert log10(pred, gt, mask) == pytest.approx(2 * math.log10(2.0) / 3)
    # var(d) = mean(d^2) - mean(d)^2 = 2 ln2^2 / 3 - 4 ln2^2 / 9 = 2 ln2^2 / 9
    assert silog(pred, gt, mask) == pytest.approx(100 * math.sqrt(2 * LN2**2 / 9))
    assert (delta1(pred, gt, mask), delta2(pred, gt, mask), delta3(pred, gt, mask)) == pytest.approx((1 / 3,) * 3)


def test_delta_thresholds_are_strict_and_symmetric() -> None:
    gt = np.ones(5)
    # max(p/g, g/p): 1.2 (< 1.25), 1/1.5 -> 1.5 (< 1.5625), 1.9 (< 1.953125), 2.5 (none), 1.25 exactly (not < 1.25)
    pred = np.array([1.2, 1 / 1.5, 1.9, 2.5, 1.25])
    mask = np.ones(5, dtype=bool)
    assert delta1(pred, gt, mask) == pytest.approx(1 / 5)
    assert delta2(pred, gt, mask) == pytest.approx(3 / 5)
    assert delta3(pred, gt, mask) == pytest.approx(4 / 5)


def test_compute_metrics_keys_and_perfect_prediction() -> None:
    gt = np.array([[0.5, 3.0], [7.0, 0.0]])
    mask = gt > 0
    m = compute_metrics(gt.copy(), gt, mask)
    assert list(m) == ["abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "delta1", "delta2", "delta3"]
    assert list(m) == list(METRICS)
    assert m == {k: (1.0 if k.startswith("delta") else 0.0) for k in m}


def test_silog_ignores_a_global_scale() -> None:
    gt = np.array([1.0, 2.0, 5.0, 9.0])
    mask = np.ones(4, dtype=bool)
    assert silog(3.0 * gt, gt, mask) == pytest.approx(0.0, abs=1e-6)
    assert abs_rel(3.0 * gt, gt, mask) == pytest.approx(2.0)


def test_median_alignment_of_twice_gt_gives_gt_exactly() -> None:
    gt = np.array([[1.0, 2.0, 3.5], [0.0, 8.0, 4.25]])
    mask = gt > 0
    aligned = align(2.0 * gt, gt, mask, "median")
    assert (aligned.mode, aligned.scale, aligned.shift) == ("median", 0.5, 0.0)
    np.testing.assert_array_equal(aligned.depth_m, gt)


def test_lsq_alignment_of_affine_gt_gives_gt() -> None:
    gt = np.array([1.0, 2.0, 3.5, 8.0, 4.25, 0.0])
    mask = gt > 0
    pred = 3.0 * gt + 0.5
    aligned = align(pred, gt, mask, "lsq")
    assert aligned.scale == pytest.approx(1 / 3)
    assert aligned.shift == pytest.approx(-0.5 / 3)
    np.testing.assert_allclose(aligned.depth_m[mask], gt[mask], rtol=1e-12)


def test_lsq_floors_aligned_depth_at_one_millimetre() -> None:
    gt = np.array([1.0, 2.0, 3.0, 0.0])
    mask = gt > 0
    pred = np.array([1.5, 2.5, 3.5, 0.01])  # the fit is pred - 0.5, which sends the off-mask 0.01 m below zero
    aligned = align(pred, gt, mask, "lsq")
    np.testing.assert_allclose(aligned.depth_m[:3], gt[:3])
    assert aligned.depth_m[3] == 1e-3


def test_metric_mode_changes_nothing_and_results_are_labelled(tiny: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    pred, gt, mask = tiny
    labelled = aligned_metrics(pred, gt, mask, "metric")
    assert (labelled["alignment"], labelled["scale"], labelled["shift"]) == ("metric", 1.0, 0.0)
    assert {k: labelled[k] for k in METRICS} == compute_metrics(pred, gt, mask)
    assert aligned_metrics(2 * gt, gt, gt > 0, "median")["abs_rel"] == 0.0


def test_refusals(tiny: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    pred, gt, mask = tiny
    with pytest.raises(ValueError, match="unknown alignment mode 'scale'; valid: metric, median, lsq"):
        align(pred, gt, mask, "scale")
    with pytest.raises(TypeError, match="mask must be bool"):
        abs_rel(pred, gt, mask.astype(int))
    with pytest.raises(ValueError, match="selects no pixels"):
        abs_rel(pred, gt, np.zeros(4, dtype=bool))
    with pytest.raises(ValueError, match="1 predictions on the mask are not finite and > 0"):
        abs_rel(np.array([1.0, 0.0, 2.0, 1.0]), gt, mask)
    with pytest.raises(ValueError, match="gt must be finite and > 0"):
        abs_rel(np.array([1.0, 2.0, 4.0, 1.0]), gt, np.ones(4, dtype=bool))  # gt 0 on the mask
    with pytest.raises(ValueError, match="one shape"):
        abs_rel(pred[:3], gt, mask)
    with pytest.raises(ValueError, match="constant prediction"):
        align(np.ones(4), gt, mask, "lsq")
