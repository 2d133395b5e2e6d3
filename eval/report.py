"""Reports: report.json (every number and where it came from), report.md and report.html (the same tables and
figures for people; the HTML is rendered from templates/report.html.j2 with every string escaped).

- Provenance: the models (URI resolved to registered name, version and run id), the store (URI, catalog version, a
  digest of the scored rows), each benchmark's protocol, the code (git commit, package versions), the command line,
  the time and the host.
- The main table is metric depth: one row per model x benchmark, then each model's mean over the benchmarks. The
  aligned modes (median, lsq) have their own table: they are not metric results.
- Baselines only where they add information: the oracle-scale baseline's numbers are its model's median-aligned
  ones, so it appears once, as the median rows of the aligned table (and a dashed curve in error against depth);
  rows with no number at all (lsq of a constant prediction) are left out of the tables and counted below them.
- Per benchmark: sample figures (image, ground truth with sparse points grown so they show, prediction, error),
  error against ground-truth depth, the histogram of median(pred) / median(gt) per image; per-image timings.

Every row says whether the benchmark is zero-shot or in-domain for the model (the reasons are listed once, from
eval.domain), how many of the benchmark's images it averages, and how many it left out and why
(eval.harness.EXCLUSION_REASONS).
"""

from __future__ import annotations

import html
import json
import platform
import re
import shlex
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eval.harness import DEPTH_BINS_M, EXCLUSION_REASONS, Scores

if TYPE_CHECKING:
    from eval.harness import Benchmark
    from eval.models import Loaded
    from store import Store

COLUMNS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "delta1", "delta2", "delta3")
# Column headings; the arrow says which way is better.
HEADINGS = {
    "abs_rel": "AbsRel ↓",
    "sq_rel": "SqRel ↓",
    "rmse": "RMSE m ↓",
    "rmse_log": "RMSE log ↓",
    "log10": "log10 ↓",
    "silog": "SILog ↓",
    "delta1": "δ1 ↑",
    "delta2": "δ2 ↑",
    "delta3": "δ3 ↑",
}
ALIGNED_MODES = ("median", "lsq")
PACKAGES = ("metricdepth", "torch", "timm", "numpy", "mlflow", "ray", "deltalake")
MODE_LEGEND = (
    "metric = no alignment, the prediction clipped to the protocol's depth range before scoring (as the Eigen / "
    "KITTI evaluation code does); median = scaled by median(gt)/median(pred) per image; lsq = least-squares scale "
    "and shift per image (aligned modes are not metric results, nor clipped)."
)
_EXAMPLES = 3  # sample ids listed per left-out reason
_SAMPLES_PER_MODEL = 3  # rows of a benchmark's sample figure per model
_SPARSE_FRACTION = 0.5  # ground truth covering less of the image is drawn with its points grown
_FIG_DPI = 90


# -- provenance --------------------------------------------------------------------------------------------


def rows_digest(rows: list[dict[str, Any]]) -> str:
    """The digest training runs record for the rows they drew (pipelines.catalog_digest: ids and payload bytes)."""
    import pyarrow as pa

    from pipelines import catalog_digest

    table = pa.table(
        {
            "sample_id": pa.array([r["sample_id"] for r in rows], pa.string()),
            "checksum": pa.array([r["checksum"] for r in rows], pa.binary(16)),
        }
    )
    return catalog_digest(table)


def _git(*args: str) -> str | None:
    """Output of a git command in the project's source folder; None when that folder is not a git checkout."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _model_provenance(m: Loaded) -> dict[str, Any]:
    return {
        "uri": m.name,
        # eval.models resolves MLflow URIs: the logged model, and its registration when it has one.
        "model_id": m.info.get("model_id"),
        "registered_model": m.info.get("registered_model"),
        "version": m.info.get("version"),
        "run_id": m.run_id,
        "train_datasets": sorted(m.train_datasets) if m.train_datasets is not None else None,
        "train_store": m.store_uri,
        "train_store_version": m.store_version,
    }


def provenance(
    models: list[Loaded], baselines: dict[str, dict[str, Any]], store: Store, benches: list[Benchmark]
) -> dict[str, Any]:
    """What was scored, on what, under which protocol, by which code, when and where: report.json's provenance.

    `baselines` maps each baseline's name in the results to {"kind": "constant" | "oracle", ...}; an oracle names
    the model it scales ("of")."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "models": [_model_provenance(m) for m in models],
        "baselines": baselines,
        "store": {
            # A local store as an absolute path: the relative one says nothing once the report is moved.
            "uri": store.url if "://" in store.url else str(Path(store.url).resolve()),
            "version": store.version,
            "rows_digest": rows_digest([r for b in benches for r in b.rows]),
        },
        "benchmarks": {
            b.dataset: {
                "split": b.split,
                "protocol": b.protocol.name,
                "crop": asdict(b.protocol.crop) if b.protocol.crop else None,
                "depth_range_m": [b.protocol.min_depth_m, b.protocol.max_depth_m],
                "metric_clip_m": [b.protocol.min_depth_m, b.protocol.max_depth_m],
                "source": b.protocol.source,
                "n_rows": len(b.rows),
                "rows_digest": rows_digest(b.rows),
            }
            for b in benches
        },
        "git_commit": commit or "unknown",
        "git_dirty": None if status is None else bool(status),
        "packages": {p: _version(p) for p in PACKAGES},
        "python": platform.python_version(),
        "command": list(sys.argv),
        "time_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
    }


# -- tables ------------------------------------------------------------------------------------------------


def _verdict(zero_shot: bool | None) -> str:
    return {True: "zero-shot", False: "in-domain", None: "unknown"}[zero_shot]


def _left_out(excluded: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in excluded.items() if n) or "none"


def _mean_rows(rows: list[dict[str, Any]], label: str) -> list[dict[str, Any]]:
    """Per model (and mode), the unweighted mean of each metric over its benchmarks; only where every benchmark
    has the metric (a mean over a subset would not compare with the others) and there are two or more."""
    out = []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["mode"]), []).append(r)
    for (model, mode), group in groups.items():
        names = [c for c in COLUMNS if all(c in r["metrics"] for r in group)]
        if len(group) < 2 or not names:
            continue
        out.append(
            {
                "row": "mean",
                "model": model,
                "mode": mode,
                "label": label,
                "benchmarks": [r["benchmark"] for r in group],
                "metrics": {c: float(np.mean([r["metrics"][c] for r in group])) for c in names},
            }
        )
    return out


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["metrics"] == b["metrics"] and a["n_samples"] == b["n_samples"]


def tables(results: list[dict[str, Any]], baselines: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The metric table and the aligned table: the rows shown, in order, each model's rows followed by its mean.

    An oracle row identical to its model's corresponding row (oracle metric and median = model median, oracle lsq
    = model lsq) adds nothing and is dropped; the model's median rows are then labelled as the oracle scale."""
    by = {(r["model"], r["benchmark"], r["mode"]): r for r in results}
    folded: set[str] = set()  # models whose oracle rows were all dropped
    shown = []
    for r in results:
        if not r["n_samples"]:
            continue  # no number at all: counted in the note under the tables instead
        base = baselines.get(r["model"], {})
        if base.get("kind") == "oracle":
            twin = by.get((base["of"], r["benchmark"], "median" if r["mode"] == "metric" else r["mode"]))
            if twin is not None and _same(r, twin):
                continue
        shown.append(r)
    for name, base in baselines.items():
        if base.get("kind") == "oracle" and not any(r["model"] == name for r in shown):
            folded.add(base["of"])

    def row(r: dict[str, Any]) -> dict[str, Any]:
        label = "median = oracle scale" if r["mode"] == "median" and r["model"] in folded else r["mode"]
        return {"row": "benchmark", "label": label, **r}

    # Models first, then the baselines, each in the order they were scored.
    rank = {m: i for i, m in enumerate(dict.fromkeys(r["model"] for r in results))}
    order = sorted(rank, key=lambda m: (m in baselines, rank[m]))
    out: dict[str, list[dict[str, Any]]] = {"metric": [], "aligned": []}
    for model in order:
        mine = [r for r in shown if r["model"] == model]
        metric = [r for r in mine if r["mode"] == "metric"]
        out["metric"] += [row(r) for r in metric] + _mean_rows(metric, "metric")
        for mode in ALIGNED_MODES:
            aligned = [row(r) for r in mine if r["mode"] == mode]
            label = aligned[0]["label"] if aligned else mode
            out["aligned"] += aligned + _mean_rows(aligned, label)
    return out


def _number(metric: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}" if metric == "silog" else f"{value:.4f}"


@dataclass
class Table:
    """A table as shown: headings, then rows of cells (strings), each row with a CSS class; the last `numeric`
    columns hold numbers (right-aligned, never wrapped)."""

    headings: list[str]
    rows: list[tuple[str, list[str]]] = field(default_factory=list)
    numeric: int = 0


def _score_table(rows: list[dict[str, Any]], with_mode: bool) -> Table:
    lead = ["model", "benchmark", "split"] + (["alignment"] if with_mode else [])
    table = Table(lead + ["zero-shot or in-domain", "n / images", "left out"] + [HEADINGS[c] for c in COLUMNS])
    table.numeric = len(COLUMNS)
    for r in rows:
        values = [_number(c, r["metrics"].get(c)) for c in COLUMNS]
        mode = [r["label"]] if with_mode else []
        if r["row"] == "mean":
            cells = [r["model"], f"mean over {len(r['benchmarks'])} benchmarks", "", *mode]
            table.rows.append(("mean", cells + ["", "", ""] + values))
        else:
            cells = [r["model"], r["benchmark"], r["split"], *mode]
            cells += [_verdict(r["zero_shot"]), f"{r['n_samples']} / {r['n_images']}", _left_out(r["excluded"])]
            table.rows.append(("benchmark", cells + values))
    return table


def _domain_table(scores: list[Scores], baselines: dict[str, dict[str, Any]]) -> Table:
    table = Table(["model", "benchmark", "zero-shot or in-domain"])
    for s in scores:
        if baselines.get(s.model, {}).get("kind") != "oracle":
            table.rows.append(("benchmark", [s.model, s.benchmark, s.domain_reason]))
    return table


def _timings(scores: list[Scores], baselines: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model and benchmark, inference milliseconds per image (baselines compute nothing worth timing)."""
    out = []
    for s in scores:
        if s.model in baselines or not s.infer_ms:
            continue
        ms = np.asarray(s.infer_ms)
        out.append(
            {
                "model": s.model,
                "benchmark": s.benchmark,
                "images": len(ms),
                "median_ms": float(np.median(ms)),
                "mean_ms": float(ms.mean()),
                "p90_ms": float(np.percentile(ms, 90)),
                "max_ms": float(ms.max()),
                "total_s": s.seconds,
                "per_image_ms": [float(v) for v in ms],
            }
        )
    return out


def _timing_table(timings: list[dict[str, Any]]) -> Table:
    heads = [
        "model",
        "benchmark",
        "images",
        "median ms",
        "mean ms",
        "p90 ms",
        "max ms",
        "wall s (read + infer + score)",
    ]
    table = Table(heads, numeric=len(heads) - 2)
    for t in timings:
        numbers = [f"{t[k]:.1f}" for k in ("median_ms", "mean_ms", "p90_ms", "max_ms", "total_s")]
        table.rows.append(("benchmark", [t["model"], t["benchmark"], str(t["images"]), *numbers]))
    return table


def _excluded_table(scores: list[Scores]) -> Table:
    table = Table(["model", "benchmark", "reason", "images", "examples"])
    for s in scores:
        for reason in EXCLUSION_REASONS:
            hits = [e for e in s.excluded if e["reason"] == reason]
            if hits:
                examples = "; ".join(f"{e['sample_id']} ({e['detail']})" for e in hits[:_EXAMPLES])
                table.rows.append(
                    ("benchmark", [s.model, s.benchmark, reason, f"{len(hits)} of {s.n_images}", examples])
                )
    return table


def _not_shown(results: list[dict[str, Any]]) -> list[str]:
    """The rows with no number: which model, benchmark and mode, and why."""
    return [
        f"{r['model']} on {r['benchmark']}, {r['mode']}: {_left_out(r['excluded'])} of {r['n_images']} images"
        for r in results
        if not r["n_samples"]
    ]


def _provenance_tables(prov: dict[str, Any], settings: dict[str, Any]) -> dict[str, Table]:
    """Provenance as small key/value and per-item tables (nothing dumped as JSON)."""
    if not prov:
        return {}
    heads = ["model URI", "registered model", "version", "run id", "logged model", "trained on", "training store"]
    models = Table(heads)
    for m in prov["models"]:
        resolved = [_text(m[k]) for k in ("registered_model", "version", "run_id", "model_id")]
        trained = ", ".join(m["train_datasets"]) if m["train_datasets"] is not None else "unknown"
        store = f"{m['train_store']} @ v{m['train_store_version']}" if m["train_store"] else "not recorded"
        models.rows.append(("item", [m["uri"], *resolved, trained, store]))
    baselines = Table(["baseline", "what it is"])
    for name, b in prov["baselines"].items():
        what = (
            f"every pixel at {b['depth_m']:.3f} m, the median of the training rows' median depths"
            if b["kind"] == "constant"
            else f"{b['of']} scaled per image by median(gt)/median(pred): its median-aligned rows"
        )
        baselines.rows.append(("item", [name, what]))
    benches = Table(
        ["benchmark", "split", "protocol", "crop", "depth range m", "metric clip m", "rows", "rows digest", "source"]
    )
    for name, b in prov["benchmarks"].items():
        crop = _crop(b["crop"])
        depth, clip = (f"{lo:g} to {hi:g}" for lo, hi in (b["depth_range_m"], b["metric_clip_m"]))
        benches.rows.append(
            (
                "item",
                [name, b["split"], b["protocol"], crop, depth, clip, str(b["n_rows"]), b["rows_digest"], b["source"]],
            )
        )
    run = Table(["", ""])
    dirty = {True: " (with uncommitted changes)", False: "", None: ""}[prov["git_dirty"]]
    facts = [
        ("store", prov["store"]["uri"]),
        ("catalog version", str(prov["store"]["version"])),
        ("digest of the scored rows", prov["store"]["rows_digest"]),
        ("git commit", prov["git_commit"] + dirty),
        ("packages", ", ".join(f"{k} {v}" for k, v in prov["packages"].items()) + f", python {prov['python']}"),
        ("command", shlex.join(prov["command"])),
        ("time (UTC)", prov["time_utc"]),
        ("host", prov["host"]),
    ]
    facts += [(key.replace("_", " "), _text(value)) for key, value in settings.items()]
    run.rows += [("item", [k, v]) for k, v in facts]
    return {"run": run, "models": models, "baselines": baselines, "benchmarks": benches}


def _text(value: Any) -> str:
    """A setting or field as one line of text: mappings as `key: value; ...`, lists comma-separated."""
    if value is None:
        return "-"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value)
    return str(value)


def _crop(crop: dict[str, Any] | None) -> str:
    if crop is None:
        return "none"
    box = f"rows {crop['top']:g}:{crop['bottom']:g}, cols {crop['left']:g}:{crop['right']:g}"
    return f"{box} px of {crop['on_hw'][0]}x{crop['on_hw'][1]}" if crop["on_hw"] else f"{box} (fractions)"


# -- figures -----------------------------------------------------------------------------------------------


def _pyplot():
    """pyplot on the file-only Agg backend, imported on first use (importing eval.report stays cheap)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_FIG_DPI, bbox_inches="tight")
    _pyplot().close(fig)


def _short(name: str, width: int = 40) -> str:
    """A long model name (a checkpoint path) cut from the left, for plot labels."""
    return name if len(name) <= width else "…" + name[-(width - 1) :]


def _log_axis(ax, lo: float, hi: float) -> None:
    """A log x axis with a few plain-number ticks: the default ones overlap at this width."""
    from matplotlib.ticker import FixedLocator, NullLocator

    ticks = [t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200) if lo <= t <= hi]
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_minor_locator(NullLocator())


def _grown(values: np.ndarray, shown: np.ndarray) -> np.ndarray:
    """`values` where `shown`, blank elsewhere; a sparse map (lidar) has each point grown to a square of 5 x 5 px,
    or W/100 px on wide images, so it still shows a few pixels wide in a ~300 px panel (the blank pixels of the
    square take its largest value)."""
    import cv2

    values = np.where(shown, values, 0).astype(np.float32)
    if shown.mean() < _SPARSE_FRACTION:
        side = max(5, values.shape[1] // 100 | 1)  # odd, so the square is centred on the point
        kernel = np.ones((side, side), np.uint8)
        values = cv2.dilate(values, kernel)
        shown = cv2.dilate(shown.astype(np.uint8), kernel).astype(bool)
    return np.where(shown, values, np.nan)


def _samples_figure(samples: list[dict[str, Any]], path: Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(len(samples), 4, figsize=(12, 2.4 * len(samples)), squeeze=False)
    for row, k in zip(axes, samples):
        valid = np.isfinite(k["gt"]) & (k["gt"] > 0)
        hi = float(np.percentile(k["gt"][k["mask"]], 98)) if k["mask"].any() else float(np.nanmax(k["pred"]))
        err = np.abs(k["pred"] - k["gt"]) / np.where(valid, k["gt"], 1.0)
        panels = [
            (k["rgb"], None, 0, 0, f"{_short(k['model'], 30)}\n{k['sample_id']}"),
            (_grown(k["gt"], valid), "turbo", 0, hi, "ground truth (m)"),
            (k["pred"], "turbo", 0, hi, "prediction (m)"),
            (_grown(err, k["mask"]), "magma", 0, 0.5, "AbsRel (scored pixels)"),
        ]
        for ax, (img, cmap, vmin, vmax, title) in zip(row, panels):
            shown = ax.imshow(img, cmap=cmap, vmin=vmin if cmap else None, vmax=vmax if cmap else None)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
            if cmap:
                fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
    _save(fig, path)


def _error_vs_depth_figure(
    bench: list[Scores], oracle_of: dict[str, str], colors: dict[str, Any], models: set[str], path: Path
) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    centres = np.sqrt(DEPTH_BINS_M[:-1] * DEPTH_BINS_M[1:])
    drawn = []
    for s in bench:
        ok = s.bin_count > 0
        if s.model in models:
            ax.plot(
                centres[ok],
                s.bin_abs_rel[ok] / s.bin_count[ok],
                "-o",
                ms=4,
                color=colors[s.model],
                label=_short(s.model),
            )
            if s.model in oracle_of.values():
                aligned = s.bin_abs_rel_median[ok] / s.bin_count[ok]
                ax.plot(centres[ok], aligned, "--", color=colors[s.model], label=f"{_short(s.model, 28)}, oracle scale")
        elif s.model not in oracle_of:  # the oracle is drawn from its model's aligned predictions above
            ax.plot(centres[ok], s.bin_abs_rel[ok] / s.bin_count[ok], ":", color="0.45", label=_short(s.model))
        drawn += list(centres[ok])
    if drawn:
        _log_axis(ax, min(drawn) / 1.5, max(drawn) * 1.5)
    ax.set_xlabel("ground-truth depth (m)")
    ax.set_ylabel("AbsRel")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    _save(fig, path)


def _scale_ratio_figure(bench: list[Scores], colors: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(bench), figsize=(3.6 * len(bench) + 0.6, 2.8), squeeze=False)
    for ax, s in zip(axes[0], bench):
        # median(pred) / median(gt) is the inverse of the median-alignment scale median(gt) / median(pred).
        ratio = np.array([1.0 / p["modes"]["median"]["scale"] for p in s.per_sample])
        if ratio.size:
            lo, hi = min(ratio.min(), 0.5), max(ratio.max(), 2.0)
            ax.hist(ratio, bins=np.geomspace(lo, hi, 25), color=colors[s.model])
            _log_axis(ax, lo, hi)
            ax.set_title(f"{_short(s.model, 30)}\nmedian {np.median(ratio):.2f} ({ratio.size} images)", fontsize=8)
        ax.axvline(1.0, color="k", lw=1, ls="--")
        ax.set_xlabel("median(pred) / median(gt)")
        ax.set_ylabel("images")
    fig.tight_layout()
    _save(fig, path)


def _timings_figure(timings: list[dict[str, Any]], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(timings) + 1.2))
    ax.boxplot([t["per_image_ms"] for t in timings], vert=False)
    ax.set_yticks(range(1, len(timings) + 1), [f"{_short(t['model'], 30)} / {t['benchmark']}" for t in timings])
    ax.set_xlabel("inference ms per image")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:60]


def _figures(
    out: Path,
    scores: list[Scores],
    samples: list[dict[str, Any]],
    baselines: dict[str, dict[str, Any]],
) -> list[dict[str, str]]:
    """Write each benchmark's PNGs under out/figures; return [{"benchmark", "file" (relative to out), "caption"}]."""
    import matplotlib

    oracle_of = {n: b["of"] for n, b in baselines.items() if b.get("kind") == "oracle"}
    models = list(dict.fromkeys(s.model for s in scores if s.model not in baselines))
    palette = matplotlib.colormaps["tab10"].colors
    colors = {m: palette[i % len(palette)] for i, m in enumerate(models)}
    found = []
    for i, bench in enumerate(dict.fromkeys(s.benchmark for s in scores)):
        mine = [s for s in scores if s.benchmark == bench]
        stem = f"figures/{i:02d}_{_slug(bench)}"
        kept = [
            k
            for m in models
            for k in [k for k in samples if k["model"] == m and k["benchmark"] == bench][:_SAMPLES_PER_MODEL]
        ]
        if kept:
            _samples_figure(kept, out / f"{stem}_samples.png")
            caption = (
                "image, ground truth (sparse points grown so they show), metric prediction, AbsRel on the scored pixels"
            )
            found.append({"benchmark": bench, "file": f"{stem}_samples.png", "caption": caption})
        if any(s.bin_count.any() for s in mine):
            _error_vs_depth_figure(mine, oracle_of, colors, set(models), out / f"{stem}_error_vs_depth.png")
            caption = (
                "AbsRel against ground-truth depth, metric mode (solid); dashed: the same model scaled by the oracle "
                "(median-aligned); dotted: the constant baseline"
            )
            found.append({"benchmark": bench, "file": f"{stem}_error_vs_depth.png", "caption": caption})
        ratios = [s for s in mine if s.model in colors and s.per_sample]
        if ratios:
            _scale_ratio_figure(ratios, colors, out / f"{stem}_scale_ratio.png")
            caption = "median(pred) / median(gt) per image: 1 is the right scale; the spread is what metric mode pays"
            found.append({"benchmark": bench, "file": f"{stem}_scale_ratio.png", "caption": caption})
    return found


# -- the files ---------------------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    """Markdown table cell: HTML-escaped (renderers pass raw HTML through) and `|` kept from ending the cell."""
    return html.escape(text, quote=False).replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in table.headings) + " |", "|" + "---|" * len(table.headings)]
    for cls, cells in table.rows:
        shown = [f"**{_md_cell(c)}**" if cls == "mean" and c else _md_cell(c) for c in cells]
        lines.append("| " + " | ".join(shown) + " |")
    return "\n".join(lines) + "\n"


def _markdown(view: dict[str, Any]) -> str:
    parts = ["# Depth evaluation\n"]
    if view["provenance"]:
        parts.append("## Provenance\n")
        parts += [_md_table(t) for t in view["provenance"].values() if t.rows]
    parts += [
        "## Metric depth\n",
        _md_table(view["metric"]),
        view["metric_note"] + "\n",
        "## Aligned (not metric)\n",
        _md_table(view["aligned"]),
        view["aligned_note"] + "\n",
    ]
    if view["not_shown"]:
        parts.append("Rows without any number, left out of the tables: " + "; ".join(view["not_shown"]) + ".\n")
    parts += ["## Zero-shot or in-domain\n", _md_table(view["domain"])]
    if view["timings"].rows:
        parts += ["## Per-image timings\n", _md_table(view["timings"])]
        if view["timings_figure"]:
            parts.append(f"![inference milliseconds per image]({view['timings_figure']})\n")
    parts.append("## Figures per benchmark\n")
    for bench, figs in view["figure_groups"].items():
        parts.append(f"### {_md_cell(bench)}\n")
        parts += [f"![{f['caption']}]({f['file']})\n" for f in figs]
    parts.append("## Images left out of the means\n")
    parts.append(_md_table(view["excluded"]) if view["excluded"].rows else "No image was left out of a mean.\n")
    parts.append("\n" + view["legend"] + "\n")
    return "\n".join(parts)


def _html(view: dict[str, Any]) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("eval", "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )
    return env.get_template("report.html.j2").render(**view)


def write(
    out: Path,
    results: list[dict[str, Any]],
    scores: list[Scores],
    kept: dict[str, list[dict[str, Any]]],
    meta: dict[str, Any],
    dump: bool = False,
) -> None:
    """report.json, report.md, report.html and figures/ under `out`.

    `meta`: "provenance" (from `provenance`; may be absent), anything else is shown as a setting of the run."""
    out.mkdir(parents=True, exist_ok=True)
    prov = meta.get("provenance", {})
    settings = {k: v for k, v in meta.items() if k != "provenance"}
    baselines = prov.get("baselines", {})
    shown = tables(results, baselines)
    timings = _timings(scores, baselines)
    figures = _figures(out, scores, [k for ks in kept.values() for k in ks], baselines)
    timings_figure = "figures/timings.png" if timings else None
    if timings_figure:
        _timings_figure(timings, out / timings_figure)
    doc: dict[str, Any] = {"provenance": prov, "settings": settings, "tables": shown, "results": results}
    doc["timings"] = timings
    doc["figures"] = figures + ([{"benchmark": None, "file": timings_figure, "caption": "timings"}] if timings else [])
    doc["excluded_images"] = [{"model": s.model, "benchmark": s.benchmark, **e} for s in scores for e in s.excluded]
    if dump:
        doc["per_sample"] = [{"model": s.model, "benchmark": s.benchmark, "samples": s.per_sample} for s in scores]
    (out / "report.json").write_text(json.dumps(doc, indent=1, default=float))
    folded = any(r["label"] == "median = oracle scale" for r in shown["aligned"])
    view = {
        "provenance": _provenance_tables(prov, settings),
        "metric": _score_table(shown["metric"], with_mode=False),
        "metric_note": "Metric depth: no alignment, the prediction clipped to the protocol's depth range. "
        "Each model's mean over benchmarks is the unweighted mean of its per-benchmark means.",
        "aligned": _score_table(shown["aligned"], with_mode=True),
        "aligned_note": "Aligned per image to the ground truth before scoring: these numbers measure relative depth, "
        "not metric depth."
        + (
            " The oracle-scale baseline (each model scaled per image by median(gt)/median(pred)) is the model's "
            "median rows: the best its depth could score with the scale known."
            if folded
            else ""
        ),
        "not_shown": _not_shown(results),
        "domain": _domain_table(scores, baselines),
        "timings": _timing_table(timings),
        "figure_groups": {
            b: [f for f in figures if f["benchmark"] == b] for b in dict.fromkeys(f["benchmark"] for f in figures)
        },
        "timings_figure": timings_figure,
        "excluded": _excluded_table(scores),
        "legend": "modes: "
        + MODE_LEGEND
        + " n / images: the images averaged of the benchmark's; left out: "
        + "; ".join(f"{k} = {v}" for k, v in EXCLUSION_REASONS.items())
        + ".",
    }
    (out / "report.md").write_text(_markdown(view))
    (out / "report.html").write_text(_html(view))


def summary(out: Path) -> str:
    """The metric and aligned tables of the report under `out`, as Markdown (what `python -m eval.run` prints)."""
    shown = json.loads((out / "report.json").read_text())["tables"]
    return (
        "Metric depth\n\n"
        + _md_table(_score_table(shown["metric"], with_mode=False))
        + "\nAligned (not metric)\n\n"
        + _md_table(_score_table(shown["aligned"], with_mode=True))
    )
