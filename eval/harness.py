"""Score models on benchmarks from a store: per sample, per mode (metric / median / lsq), then the mean.

A benchmark is a dataset of the store, optionally with a split (`nyu`, `synthetic_kitti:val`); its
protocol (crop, depth range, default split) comes from eval.protocols, by dataset name or sensor kind.
Metric mode scores the prediction clipped to the protocol's depth range (as the Eigen / KITTI evaluation code
does). An image left out of a mean is counted with its reason (EXCLUSION_REASONS), never dropped silently; every
result says whether the model saw the benchmark in training, and why (eval.domain).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from eval.domain import domain_of
from eval.metrics import ALIGN_MODES, aligned_metrics
from eval.models import Loaded
from eval.protocols import Protocol, eval_mask, protocol_for
from store import Store

SPLIT_PREFERENCE = ("test", "val", "train")
DEPTH_BINS_M = np.geomspace(0.25, 256.0, 21)  # error-against-depth plot: log-spaced ground-truth bins
# Why an image can be left out of a mean: the first two leave it out of every mode, the last out of one mode.
EXCLUSION_REASONS = {
    "no_scored_pixels": "the protocol's mask (crop, depth range, the sample's valid mask) selects no pixel",
    "invalid_prediction": "the prediction is not finite and > 0 on some scored pixel",
    "alignment_undefined": "this mode's alignment is undefined for the prediction (lsq of a constant one)",
}


@dataclass
class Benchmark:
    dataset: str
    split: str
    protocol: Protocol
    rows: list[dict[str, Any]]


def resolve_benchmark(store: Store, spec: str, limit: int | None = None) -> Benchmark:
    """`dataset[:split]` -> the rows to score; the split defaults to the protocol's, else test, val, train."""
    dataset, _, split = spec.partition(":")
    cat = store.catalog()
    datasets = cat["dataset"].cast(pa.string())
    names = sorted(set(datasets.unique().to_pylist()))
    if dataset not in names:
        raise KeyError(f"benchmark {dataset!r} is not a dataset of {store.url}; valid: {', '.join(names)}")
    cat = cat.filter(pc.equal(datasets, dataset))
    protocol = protocol_for(dataset, str(cat["sensor"][0].as_py()))
    splits = cat["split"].cast(pa.string())
    available = set(splits.unique().to_pylist())
    split = split or protocol.split or next(s for s in SPLIT_PREFERENCE if s in available)
    if split not in available:
        raise KeyError(f"{dataset} has no {split!r} split; it has {', '.join(sorted(available))}")
    rows = sorted(cat.filter(pc.equal(splits, split)).to_pylist(), key=lambda r: r["sample_id"])
    return Benchmark(dataset, split, protocol, rows[:limit])


@dataclass
class Scores:
    """Per-sample metrics of one model on one benchmark, with its domain verdict and the images left out."""

    model: str
    benchmark: str
    split: str
    zero_shot: bool | None
    domain_reason: str = ""
    depth_range_m: tuple[float, float] | None = None  # metric-mode predictions were clipped to it (metres)
    n_images: int = 0
    # Images left out of every mode: {"sample_id", "reason" (a key of EXCLUSION_REASONS), "detail"}.
    excluded: list[dict[str, str]] = field(default_factory=list)
    per_sample: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    # Wall time of each image's infer() call, milliseconds, in benchmark order (left-out images included).
    infer_ms: list[float] = field(default_factory=list)
    # Metric-mode |pred - gt| / gt summed per ground-truth depth bin (DEPTH_BINS_M edges), and pixel counts.
    bin_abs_rel: np.ndarray = field(default_factory=lambda: np.zeros(len(DEPTH_BINS_M) - 1))
    bin_count: np.ndarray = field(default_factory=lambda: np.zeros(len(DEPTH_BINS_M) - 1))
    # The same sums for the median-aligned prediction: the oracle-scale curve of the error-against-depth plot.
    bin_abs_rel_median: np.ndarray = field(default_factory=lambda: np.zeros(len(DEPTH_BINS_M) - 1))

    def results(self) -> list[dict[str, Any]]:
        """One entry per mode: the mean of each metric over the images scored in that mode (n_samples of
        n_images), and per reason the count of images left out (EXCLUSION_REASONS)."""
        out = []
        left_out = {reason: 0 for reason in EXCLUSION_REASONS}
        for e in self.excluded:
            left_out[e["reason"]] += 1
        for mode in ALIGN_MODES:
            rows = [s["modes"][mode] for s in self.per_sample if s["modes"].get(mode)]
            names = [k for k in (rows[0] if rows else {}) if k not in ("alignment", "scale", "shift")]
            metrics = {k: float(np.mean([r[k] for r in rows])) for k in names}
            undefined = sum(1 for s in self.per_sample if not s["modes"].get(mode))
            out.append(
                {
                    "model": self.model,
                    "benchmark": self.benchmark,
                    "split": self.split,
                    "mode": mode,
                    "zero_shot": self.zero_shot,
                    "domain_reason": self.domain_reason,
                    "n_images": self.n_images,
                    "n_samples": len(rows),
                    "excluded": {**left_out, "alignment_undefined": undefined},
                    "metric_clip_m": list(self.depth_range_m) if mode == "metric" and self.depth_range_m else None,
                    "metrics": metrics,
                }
            )
        return out


def _exclusion(pred: np.ndarray, mask: np.ndarray) -> tuple[str, str] | None:
    """(reason, detail) when an image cannot be scored in any mode, else None."""
    if not mask.any():
        return "no_scored_pixels", "0 pixels"
    p = pred[mask]
    nan, inf, nonpositive = int(np.isnan(p).sum()), int(np.isinf(p).sum()), int((p <= 0).sum())
    if nan or inf or nonpositive:
        return "invalid_prediction", f"of {p.size} scored pixels: {nan} NaN, {inf} infinite, {nonpositive} <= 0"
    return None


def score(model: Loaded, store: Store, bench: Benchmark, keep: int = 0) -> tuple[Scores, list[dict[str, Any]]]:
    """Per-sample metrics in every mode; also returns the first `keep` samples' arrays for figures."""
    domain = domain_of(model, bench.dataset, bench.rows, store)
    clip_m = (bench.protocol.min_depth_m, bench.protocol.max_depth_m)
    scores = Scores(model.name, bench.dataset, bench.split, domain.zero_shot, domain.reason, clip_m, len(bench.rows))
    kept = []
    t0 = time.perf_counter()
    # A bar redraws with carriage returns: in a log file (not a terminal) that is one flood of lines.
    bar = tqdm(
        bench.rows, desc=f"{model.name} / {bench.dataset}", unit="image", leave=False, disable=not sys.stderr.isatty()
    )
    for row in bar:
        sample = store.read_row(row)
        t_infer = time.perf_counter()
        pred = model.model.infer(sample.rgb, sample.k_px)["depth_m"]
        scores.infer_ms.append(1e3 * (time.perf_counter() - t_infer))
        mask = eval_mask(sample.depth_m, bench.protocol, sample.valid)
        if excluded := _exclusion(pred, mask):
            scores.excluded.append({"sample_id": row["sample_id"], "reason": excluded[0], "detail": excluded[1]})
            continue
        modes = {}
        for mode in ALIGN_MODES:
            try:
                modes[mode] = aligned_metrics(pred, sample.depth_m, mask, mode, clip_m)
            except ValueError:  # lsq of a constant prediction: undefined, counted as alignment_undefined
                modes[mode] = None
        scores.per_sample.append({"sample_id": row["sample_id"], "modes": modes})
        g, p = sample.depth_m[mask], np.clip(pred[mask], *clip_m)  # the metric-mode prediction
        which = np.clip(np.digitize(g, DEPTH_BINS_M) - 1, 0, len(DEPTH_BINS_M) - 2)
        scores.bin_abs_rel += np.bincount(which, np.abs(p - g) / g, len(DEPTH_BINS_M) - 1)
        scores.bin_count += np.bincount(which, minlength=len(DEPTH_BINS_M) - 1)
        p_median = pred[mask] * modes["median"]["scale"]  # median alignment is defined for any valid prediction
        scores.bin_abs_rel_median += np.bincount(which, np.abs(p_median - g) / g, len(DEPTH_BINS_M) - 1)
        if len(kept) < keep:
            kept.append(
                {
                    "model": model.name,
                    "benchmark": bench.dataset,
                    "sample_id": row["sample_id"],
                    "rgb": sample.rgb,
                    "gt": sample.depth_m,
                    "pred": pred,
                    "mask": mask,
                }
            )
    scores.seconds = time.perf_counter() - t0
    return scores, kept
