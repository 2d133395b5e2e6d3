"""Depth metrics on the valid pixels of one image, and the alignments that aligned modes apply first.

Every metric takes `pred` and `gt` (float arrays of one shape, metres) and `mask` (bool, same shape: the pixels
the benchmark protocol scores, see `eval.protocols.eval_mask`) and returns a float. Conventions follow the
Eigen et al. / KITTI benchmark code that the Metric3D tables use:

- abs_rel  mean(|p - g| / g)
- sq_rel   mean((p - g)^2 / g)
- rmse     sqrt(mean((p - g)^2)), metres
- rmse_log sqrt(mean((ln p - ln g)^2))
- log10    mean(|log10 p - log10 g|)
- silog    100 * sqrt(var(ln p - ln g)), the KITTI depth benchmark's scale-invariant log error (population
           variance: mean(d^2) - mean(d)^2, no lambda weighting)
- deltaK   fraction of pixels with max(p / g, g / p) < 1.25^K, K = 1, 2, 3

Per-image values; a benchmark averages them over its images (the usual convention).

Alignment modes (`align`, `aligned_metrics`), always reported with their label:

- "metric"  no alignment at all: the number a metric-depth model is judged by; with `clip_m`, the prediction
            clipped to the protocol's depth range first, as the standard Eigen / KITTI evaluation code does
- "median"  pred scaled by median(gt) / median(pred) on the mask
- "lsq"     least-squares scale and shift of pred onto gt, in depth (not disparity), on the mask
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

ALIGN_MODES = ("metric", "median", "lsq")

# An lsq shift can push far-off predictions to or below 0 m, where the log metrics are undefined; aligned depth
# is floored here, the minimum depth of the standard protocols (1 mm), as the Eigen-split code clips predictions.
_MIN_ALIGNED_DEPTH_M = 1e-3


def _valid(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The scored pixels as float64 vectors (p, g); refuses what would make a metric silently wrong."""
    pred, gt, mask = np.asarray(pred), np.asarray(gt), np.asarray(mask)
    if pred.shape != gt.shape or mask.shape != gt.shape:
        raise ValueError(f"pred {pred.shape}, gt {gt.shape} and mask {mask.shape} must have one shape")
    if mask.dtype != np.bool_:
        raise TypeError(f"mask must be bool (an integer array would index pixels, not select them); got {mask.dtype}")
    p, g = pred[mask].astype(np.float64), gt[mask].astype(np.float64)
    if p.size == 0:
        raise ValueError("the mask selects no pixels: nothing to score (check the protocol's crop and depth range)")
    if not np.all(np.isfinite(g) & (g > 0)):
        raise ValueError("gt must be finite and > 0 on the mask: build the mask with eval.protocols.eval_mask")
    bad = int(np.count_nonzero(~(np.isfinite(p) & (p > 0))))
    if bad:
        raise ValueError(f"{bad} predictions on the mask are not finite and > 0; log metrics are undefined there")
    return p, g


def abs_rel(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    p, g = _valid(pred, gt, mask)
    return float(np.mean(np.abs(p - g) / g))


def sq_rel(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    p, g = _valid(pred, gt, mask)
    return float(np.mean((p - g) ** 2 / g))


def rmse(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    p, g = _valid(pred, gt, mask)
    return float(np.sqrt(np.mean((p - g) ** 2)))


def rmse_log(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    p, g = _valid(pred, gt, mask)
    return float(np.sqrt(np.mean((np.log(p) - np.log(g)) ** 2)))


def log10(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    p, g = _valid(pred, gt, mask)
    return float(np.mean(np.abs(np.log10(p) - np.log10(g))))


def silog(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    """100 * sqrt(var(ln p - ln g)): the KITTI depth benchmark convention (population variance)."""
    p, g = _valid(pred, gt, mask)
    return float(100.0 * np.sqrt(np.var(np.log(p) - np.log(g))))


def _delta(k: int) -> Callable[[np.ndarray, np.ndarray, np.ndarray], float]:
    def delta(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
        p, g = _valid(pred, gt, mask)
        return float(np.mean(np.maximum(p / g, g / p) < 1.25**k))

    delta.__name__ = f"delta{k}"
    delta.__doc__ = f"Fraction of pixels with max(p / g, g / p) < 1.25^{k}."
    return delta


delta1, delta2, delta3 = _delta(1), _delta(2), _delta(3)

METRICS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], float]] = {
    "abs_rel": abs_rel,
    "sq_rel": sq_rel,
    "rmse": rmse,
    "rmse_log": rmse_log,
    "log10": log10,
    "silog": silog,
    "delta1": delta1,
    "delta2": delta2,
    "delta3": delta3,
}


def compute_metrics(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Every metric of METRICS on the masked pixels, as they are (no alignment)."""
    return {name: fn(pred, gt, mask) for name, fn in METRICS.items()}


@dataclass(frozen=True)
class Aligned:
    """An aligned prediction: depth_m = scale * pred + shift (floored at 1 mm for lsq), with its mode."""

    depth_m: np.ndarray
    mode: str
    scale: float
    shift: float


def align(
    pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, mode: str, clip_m: tuple[float, float] | None = None
) -> Aligned:
    """Fit pred to gt on the mask and apply the fit to the whole prediction (so it can be viewed too).

    clip_m (min, max metres): metric mode clips the prediction to it (aligned modes ignore it)."""
    if mode not in ALIGN_MODES:
        raise ValueError(f"unknown alignment mode {mode!r}; valid: {', '.join(ALIGN_MODES)}")
    p, g = _valid(pred, gt, mask)
    pred = np.asarray(pred, dtype=np.float64)
    if mode == "metric":
        return Aligned(np.clip(pred, *clip_m) if clip_m else pred, mode, 1.0, 0.0)
    if mode == "median":
        scale = float(np.median(g) / np.median(p))
        return Aligned(pred * scale, mode, scale, 0.0)
    # Closed-form least squares of g ~ scale * p + shift.
    var_p = float(np.var(p))
    if var_p == 0.0:
        raise ValueError("lsq alignment of a constant prediction is undefined (any scale fits); use 'median'")
    scale = float(np.mean((p - p.mean()) * (g - g.mean())) / var_p)
    shift = float(g.mean() - scale * p.mean())
    return Aligned(np.maximum(scale * pred + shift, _MIN_ALIGNED_DEPTH_M), mode, scale, shift)


def aligned_metrics(
    pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, mode: str, clip_m: tuple[float, float] | None = None
) -> dict[str, float | str]:
    """The metrics after `align(..., mode, clip_m)`, labelled: {"alignment": mode, "scale", "shift", abs_rel, ...}."""
    aligned = align(pred, gt, mask, mode, clip_m)
    return {
        "alignment": aligned.mode,
        "scale": aligned.scale,
        "shift": aligned.shift,
        **compute_metrics(aligned.depth_m, gt, mask),
    }
