"""Reports: report.json (every number), report.md (the table), report.html (plots people would rather
look at than read: AbsRel per benchmark per model, error against depth, and sample figures).

Every row says whether the benchmark is zero-shot or in-domain for the model and why (eval.domain), how many of the
benchmark's images it averages, and how many it left out and why (eval.harness.EXCLUSION_REASONS)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from eval.harness import DEPTH_BINS_M, EXCLUSION_REASONS, Scores  # noqa: E402

COLUMNS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "delta1", "delta2", "delta3")
_EXAMPLES = 3  # sample ids listed per left-out reason


def _left_out(excluded: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in excluded.items() if n) or "none"


def markdown(results: list[dict[str, Any]]) -> str:
    """The results table and the legend of its modes."""
    head = "| model | benchmark | split | mode | zero-shot or in-domain | n / images | left out | "
    lines = [head + " | ".join(COLUMNS) + " |", "|" + "---|" * (7 + len(COLUMNS))]
    for r in results:
        values = " | ".join(f"{r['metrics'][c]:.4f}" if c in r["metrics"] else "n/a" for c in COLUMNS)
        lines.append(
            f"| {r['model']} | {r['benchmark']} | {r['split']} | {r['mode']} | {r['domain_reason']} "
            f"| {r['n_samples']} / {r['n_images']} | {_left_out(r['excluded'])} | {values} |"
        )
    return (
        "\n".join(lines) + "\n\nmodes: metric = no alignment, the prediction clipped to the protocol's depth range "
        "before scoring (as the Eigen / KITTI evaluation code does); median = scaled by median(gt)/median(pred) per "
        "image; lsq = least-squares scale and shift per image (aligned modes are not metric results, nor clipped).\n"
        "n / images: the images averaged of the benchmark's; left out: "
        + "; ".join(f"{k} = {v}" for k, v in EXCLUSION_REASONS.items())
        + ".\n"
    )


def excluded_markdown(scores: list[Scores]) -> str:
    """The images left out of every mode's mean, per model, benchmark and reason, with example sample ids."""
    lines = ["| model | benchmark | reason | images | examples |", "|---|---|---|---|---|"]
    for s in scores:
        for reason in EXCLUSION_REASONS:
            hits = [e for e in s.excluded if e["reason"] == reason]
            if hits:
                examples = "; ".join(f"{e['sample_id']} ({e['detail']})" for e in hits[:_EXAMPLES])
                lines.append(f"| {s.model} | {s.benchmark} | {reason} | {len(hits)} of {s.n_images} | {examples} |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else "No image was left out of a mean.\n"


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _bars(results: list[dict[str, Any]], mode: str) -> str:
    rows = [r for r in results if r["mode"] == mode and "abs_rel" in r["metrics"]]
    models = sorted({r["model"] for r in rows})
    benches = sorted({r["benchmark"] for r in rows})
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(benches) * max(1, len(models)) / 2), 3.5))
    width = 0.8 / max(1, len(models))
    for i, m in enumerate(models):
        values = [
            next((r["metrics"]["abs_rel"] for r in rows if r["model"] == m and r["benchmark"] == b), np.nan)
            for b in benches
        ]
        ax.bar(np.arange(len(benches)) + i * width, values, width, label=m)
    ax.set_xticks(np.arange(len(benches)) + width * (len(models) - 1) / 2, benches)
    ax.set_ylabel(f"AbsRel ({mode})")
    ax.legend(fontsize=7)
    ax.set_title(f"AbsRel per benchmark, {mode} mode (lower is better)")
    return _png(fig)


def _error_vs_depth(scores: list[Scores]) -> str:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    centres = np.sqrt(DEPTH_BINS_M[:-1] * DEPTH_BINS_M[1:])
    for s in scores:
        ok = s.bin_count > 0
        ax.plot(centres[ok], s.bin_abs_rel[ok] / s.bin_count[ok], marker="o", label=f"{s.model} / {s.benchmark}")
    ax.set_xscale("log")
    ax.set_xlabel("ground-truth depth (m)")
    ax.set_ylabel("AbsRel (metric)")
    ax.legend(fontsize=7)
    ax.set_title("Error against depth")
    return _png(fig)


def _visible(depth: np.ndarray) -> np.ndarray:
    """Ground truth for display: sparse lidar points grown to 3x3 so they can be seen; no depth -> blank."""
    import cv2

    shown = depth
    if np.count_nonzero(depth) < 0.5 * depth.size:
        shown = cv2.dilate(depth.astype(np.float32), np.ones((3, 3), np.uint8))
    return np.where(shown > 0, shown, np.nan)


def _samples(model: str, kept: list[dict[str, Any]]) -> str:
    fig, axes = plt.subplots(len(kept), 4, figsize=(12, 2.6 * len(kept)), squeeze=False)
    for row, k in zip(axes, kept):
        hi = float(np.percentile(k["gt"][k["mask"]], 98)) if k["mask"].any() else 1.0
        err = np.where(k["mask"], np.abs(k["pred"] - k["gt"]) / np.maximum(k["gt"], 1e-6), np.nan)
        panels = [
            (k["rgb"], None, "image"),
            (np.where(k["gt"] > 0, k["gt"], np.nan), "turbo", "ground truth (m)"),
            (k["pred"], "turbo", "prediction (m)"),
            (err, "magma", "AbsRel error"),
        ]
        for ax, (img, cmap, title) in zip(row, panels):
            shown = ax.imshow(
                img, cmap=cmap, vmin=0 if cmap else None, vmax=(hi if cmap == "turbo" else 0.5) if cmap else None
            )
            ax.set_title(f"{title}", fontsize=8)
            ax.axis("off")
            if cmap:
                fig.colorbar(shown, ax=ax, fraction=0.046)
        row[0].set_title(f"{model}: {k['sample_id']}", fontsize=7)
    return _png(fig)


def write(
    out: Path,
    results: list[dict[str, Any]],
    scores: list[Scores],
    kept: dict[str, list[dict[str, Any]]],
    meta: dict[str, Any],
    dump: bool = False,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"meta": meta, "results": results}
    doc["excluded_images"] = [{"model": s.model, "benchmark": s.benchmark, **e} for s in scores for e in s.excluded]
    if dump:
        doc["per_sample"] = [{"model": s.model, "benchmark": s.benchmark, "samples": s.per_sample} for s in scores]
    (out / "report.json").write_text(json.dumps(doc, indent=1, default=float))
    table = markdown(results)
    (out / "report.md").write_text(
        f"# Depth evaluation\n\n{table}\n## Images left out of the means\n\n{excluded_markdown(scores)}"
    )
    figures = [_bars(results, "metric"), _bars(results, "median"), _error_vs_depth(scores)]
    figures += [_samples(name, k) for name, k in kept.items() if k]
    rows = "".join(
        f"<tr>{''.join(f'<td>{c}</td>' for c in line.strip('|').split('|'))}</tr>"
        for line in table.splitlines()[2:]
        if line.startswith("|")
    )
    head = "".join(f"<th>{c}</th>" for c in table.splitlines()[0].strip("|").split("|"))
    imgs = "".join(f'<p><img src="data:image/png;base64,{f}"/></p>' for f in figures)
    (out / "report.html").write_text(
        "<html><head><meta charset='utf-8'><title>Depth evaluation</title><style>body{font-family:sans-serif}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px}table{border-collapse:collapse}</style></head>"
        f"<body><h1>Depth evaluation</h1><p>{json.dumps(meta)}</p><table><tr>{head}</tr>{rows}</table>{imgs}"
        "</body></html>"
    )
