"""python -m eval.ablation: the CSTM ablation, measured. Metric3D's central claim on our own platform.

Generates a multi-camera synthetic store (KITTI layout; training cameras f = 150, 250, 360 px; unseen
val cameras f = 200, 450 px; 1 m cubes and a 1 m checkerboard give metric scale), trains the same
model (preset `ablation`) with cstm = none, label and image for each seed, and scores each in metric mode
(no alignment) on the unseen cameras, at two pixel scales (eval.run --scale):
  native  each image at its own pixel scale, the scale label and none modes train at: the main result
  fit     each image fitted into the model's infer_hw, for metric3d_tiny a 0.45 shrink of these 352 x 256
          images, far outside the 0.9-1.4 training resize: label mode folds it into its focal, none cannot
Image mode sees its canonical resize (1000 / f) at either scale, so it is scored once and listed under both.

The focal diagnostic of the Metric3D paper, per image and per unseen camera: median(pred) / median(gt) against
f_test / f_train, where f_train is the geometric mean focal of the training images as the network saw them
(camera focal x training resize, `train_focal_px`). A network that cannot know the focal (cstm none) predicts the
depth of a camera with focal f_train, off by f_train / f_seen, so it follows y = 1 / x at native scale and
y = 1 / (shrink x) when fitted; CSTM should stay at y = 1.

Writes ablation.json, ablation.md, ablation_focal_ratio.png and a full report per run and scale
(report-<mode>-seed<k>-<scale>/).

  python -m eval.ablation --out ablation --seeds 0,1
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from eval.run import evaluate
from ingest.engine import ingest
from ingest.synthetic import Camera, generate
from model import get_model_config
from store import open_store
from train.config import load_config
from train.run import train

CAMERAS = (
    Camera("cam_f150", 150.0, 352, 256, "kitti", "train"),
    Camera("cam_f250", 250.0, 352, 256, "kitti", "train"),
    Camera("cam_f360", 360.0, 352, 256, "kitti", "train"),
    Camera("cam_f200", 200.0, 352, 256, "kitti", "val"),
    Camera("cam_f450", 450.0, 352, 256, "kitti", "val"),
)
MODES = ("none", "label", "image")
SCALES = ("native", "fit")  # native first: the main setting
PRESET = "ablation"
BENCHMARK = "synthetic_kitti:val"
PLOT_FILE = "ablation_focal_ratio.png"
# Issue 10's goal at native scale: label-mode AbsRel at most 1 / 1.5 of none's, label-mode delta1 at least 0.6.
GOAL_ABS_REL_RATIO, GOAL_DELTA1 = 1 / 1.5, 0.6
MARKERS = {"none": ("o", "tab:red"), "label": ("s", "tab:blue"), "image": ("^", "tab:green")}


def train_focal_px(focals_px: Iterable[float], ratio_range: tuple[float, float]) -> float:
    """Geometric-mean focal (px) of the training images as the network sees them: each camera's focal (one entry per
    image) times the training resize ratio, drawn uniformly from ratio_range."""
    a, b = ratio_range
    # E[ln r] for r ~ U(a, b): the integral of ln r over [a, b] divided by b - a.
    mean_log_ratio = math.log(a) if a == b else (b * math.log(b) - b - a * math.log(a) + a) / (b - a)
    return math.exp(float(np.mean(np.log(list(focals_px)))) + mean_log_ratio)


def median_ratio(median_scale: float) -> float:
    """median(pred) / median(gt) of one image, from its median-alignment scale median(gt) / median(pred)."""
    return 1.0 / median_scale


def per_camera(samples: list[dict[str, Any]], focal_of: dict[str, float]) -> dict[float, dict[str, Any]]:
    """Per test focal (px): n images, mean metric AbsRel and delta1 (as the harness averages), mean median-aligned
    AbsRel (the error left once each image's scale is corrected), each image's median(pred) / median(gt) and their
    geometric mean; `samples` are report.json per-sample records."""
    groups: dict[float, list[dict[str, Any]]] = {}
    for s in samples:
        groups.setdefault(focal_of[s["sample_id"]], []).append(s)
    out = {}
    for f, rows in sorted(groups.items()):
        ratios = [median_ratio(r["modes"]["median"]["scale"]) for r in rows]
        out[f] = {
            "n": len(rows),
            "abs_rel": float(np.mean([r["modes"]["metric"]["abs_rel"] for r in rows])),
            "delta1": float(np.mean([r["modes"]["metric"]["delta1"] for r in rows])),
            "median_abs_rel": float(np.mean([r["modes"]["median"]["abs_rel"] for r in rows])),
            "median_ratio": float(np.exp(np.mean(np.log(ratios)))),
            "image_ratios": ratios,
        }
    return out


def _score(checkpoint: str, store: Path, out: Path, scale: str, focal_of: dict[str, float]) -> list[dict[str, Any]]:
    """One trained model on the unseen cameras at one scale -> rows: per camera, then all cameras (f_test_px None)."""
    results = evaluate([checkpoint], str(store), [BENCHMARK], out, [], dump=True, scale=scale)
    metric, median = (next(r for r in results if r["mode"] == m) for m in ("metric", "median"))
    samples = json.loads((out / "report.json").read_text())["per_sample"][0]["samples"]
    rows = [{"f_test_px": f, **v} for f, v in per_camera(samples, focal_of).items()]
    summary = {
        "n": metric["n_samples"],
        "abs_rel": metric["metrics"]["abs_rel"],
        "delta1": metric["metrics"]["delta1"],
        "median_abs_rel": median["metrics"]["abs_rel"],
    }
    return [*rows, {"f_test_px": None, **summary}]


def run(
    out: Path, seeds: list[int], steps: int | None, scenes: int, overrides: list[str], preset: str = PRESET
) -> dict[str, Any]:
    """Train every mode for every seed with one recipe, score each at both scales, write the tables and the plot."""
    t_start = time.perf_counter()
    store = out / "store"
    if not (store / "store.json").exists():
        generate(str(out / "src"), scenes_per_camera=scenes, cameras=CAMERAS)
        ingest("synthetic", str(out / "src"), str(store), progress=False)
    base = [*(["steps=" + str(steps)] if steps is not None else []), "datasets=synthetic_kitti", *overrides]
    cfg0 = load_config(preset, base)
    cat = open_store(str(store)).catalog(columns=["sample_id", "split", "fx", "fy"]).to_pylist()
    focal_of = {r["sample_id"]: (r["fx"] + r["fy"]) / 2 for r in cat}
    f_train = train_focal_px([focal_of[r["sample_id"]] for r in cat if r["split"] == "train"], cfg0.ratio_range)
    infer_hw = get_model_config(cfg0.model_name).infer_hw
    # The resize `fit` applies to label and none modes (DepthNet.infer): these images into the model's infer_hw.
    val = [
        {"name": c.name, "f_px": c.f_px, "fit_shrink": min(infer_hw[0] / c.height, infer_hw[1] / c.width)}
        for c in CAMERAS
        if c.split == "val"
    ]
    rows: list[dict[str, Any]] = []
    timings = []
    for seed in seeds:
        for mode in MODES:
            sets = [
                *base,
                f"cstm={mode}",
                f"seed={seed}",
                f"storage_path={out / 'ray'}",
                f"registered_model=ablation-{mode}",
            ]
            t0 = time.perf_counter()
            result = train(load_config(preset, sets), str(store), run_name=f"ablation {mode} seed {seed}")
            t1 = time.perf_counter()
            for scale in SCALES:
                if mode == "image" and scale != SCALES[0]:  # image mode ignores the scale: the same numbers
                    same = [r for r in rows if (r["mode"], r["seed"], r["scale"]) == (mode, seed, SCALES[0])]
                    rows += [{**r, "scale": scale} for r in same]
                    continue
                report_dir = out / f"report-{mode}-seed{seed}-{scale}"
                scored = _score(result["checkpoint"], store, report_dir, scale, focal_of)
                rows += [{"mode": mode, "seed": seed, "scale": scale, **r} for r in scored]
            timings.append({"mode": mode, "seed": seed, "train_s": t1 - t0, "score_s": time.perf_counter() - t1})
    summary = {
        "preset": preset,
        "train_config": {k: v for k, v in cfg0.to_dict().items() if k not in ("cstm", "seed", "storage_path")},
        "seeds": seeds,
        "cameras": [c.__dict__ for c in CAMERAS],
        "f_train_px": f_train,
        "val_cameras": val,
        "rows": rows,
        "timings_s": timings,
        "wall_s": time.perf_counter() - t_start,
    }
    (out / "ablation.json").write_text(json.dumps(summary, indent=1))
    text = markdown(summary)
    (out / "ablation.md").write_text(text)
    plot(summary, out / PLOT_FILE)
    print(text)
    return summary


def _mean(rows: list[dict[str, Any]], key: str, geometric: bool = False) -> float:
    values = np.array([r[key] for r in rows])
    return float(np.exp(np.mean(np.log(values))) if geometric else np.mean(values))


def _each(rows: list[dict[str, Any]], key: str) -> str:
    return ", ".join(f"{r[key]:.3f}" for r in rows)


def _pick(rows: list[dict[str, Any]], **where: Any) -> list[dict[str, Any]]:
    return [r for r in rows if all(r[k] == v for k, v in where.items())]


def markdown(summary: dict[str, Any]) -> str:
    """The ablation's tables: all unseen cameras per scale (per seed and mean), per camera, the focal diagnostic."""
    rows, f_train, val = summary["rows"], summary["f_train_px"], summary["val_cameras"]
    foci = [c["f_px"] for c in val]
    lines = []
    for scale in SCALES:
        lines += [
            f"Scale `{scale}`, all unseen cameras (metric, no alignment):",
            "",
            "| cstm | AbsRel per seed | mean | delta<1.25 per seed | mean | median-aligned AbsRel, mean |",
            "|---|---|---|---|---|---|",
        ]
        for mode in MODES:
            got = _pick(rows, mode=mode, scale=scale, f_test_px=None)
            lines.append(
                f"| {mode} | {_each(got, 'abs_rel')} | {_mean(got, 'abs_rel'):.3f} | "
                f"{_each(got, 'delta1')} | {_mean(got, 'delta1'):.3f} | {_mean(got, 'median_abs_rel'):.3f} |"
            )
        none, label = (_pick(rows, mode=m, scale=scale, f_test_px=None) for m in ("none", "label"))
        ratio, delta1 = _mean(label, "abs_rel") / _mean(none, "abs_rel"), _mean(label, "delta1")
        lines += [
            "",
            f"AbsRel label / none: {ratio:.2f} (goal <= {GOAL_ABS_REL_RATIO:.2f}: "
            f"{'met' if ratio <= GOAL_ABS_REL_RATIO else 'missed'}); label delta1 {delta1:.3f} "
            f"(goal >= {GOAL_DELTA1}: {'met' if delta1 >= GOAL_DELTA1 else 'missed'})",
            "",
        ]
    lines += [
        "Per unseen camera, mean over seeds (median ratio: geometric mean over images and seeds of "
        f"median(pred) / median(gt); f_train = {f_train:.1f} px):",
        "",
        "| scale | cstm | " + " | ".join(f"f={f:g}: AbsRel | delta1 | median ratio" for f in foci) + " |",
        "|---|---|" + "---|---|---|" * len(foci),
    ]
    for scale in SCALES:
        for mode in MODES:
            cells = []
            for f in foci:
                got = _pick(rows, mode=mode, scale=scale, f_test_px=f)
                cells.append(
                    f"{_mean(got, 'abs_rel'):.3f} | {_mean(got, 'delta1'):.3f} | {_mean(got, 'median_ratio', True):.2f}"
                )
            lines.append(f"| {scale} | {mode} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Focal diagnostic: theory for none is f_train / f_seen (f_seen = f_test x the shrink the scale applies); "
        "for CSTM, 1.",
        "",
        "| f_test (px) | f_test / f_train | fit shrink | theory none, native | theory none, fit |",
        "|---|---|---|---|---|",
    ]
    for c in val:
        x, s = c["f_px"] / f_train, c["fit_shrink"]
        lines.append(f"| {c['f_px']:g} | {x:.2f} | {s:.3f} | {1 / x:.2f} | {1 / (s * x):.2f} |")
    minutes = summary["wall_s"] / 60
    lines += ["", f"Wall time: {minutes:.1f} min for {len(summary['timings_s'])} runs (train + score)."]
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], path: Path) -> None:
    """median(pred) / median(gt) against f_test / f_train, one panel per scale: each image (small), each camera's
    geometric mean over images and seeds (large), with y = 1 (CSTM) and the none theory y = 1 / (shrink x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullFormatter

    rows, f_train = summary["rows"], summary["f_train_px"]
    foci = [c["f_px"] for c in summary["val_cameras"]]
    shrinks = {c["fit_shrink"] for c in summary["val_cameras"]}
    fig, axes = plt.subplots(1, len(SCALES), figsize=(9.5, 4.0), sharey=True)
    xs = np.geomspace(min(foci) / f_train / 1.4, max(foci) / f_train * 1.4, 50)
    for ax, scale in zip(axes, SCALES):
        for i, mode in enumerate(MODES):
            marker, colour = MARKERS[mode]
            for f in foci:
                x = f / f_train * (1 + 0.03 * (i - 1))  # modes side by side, not on top of each other
                got = _pick(rows, mode=mode, scale=scale, f_test_px=f)
                per_image = [v for r in got for v in r["image_ratios"]]
                ax.scatter([x] * len(per_image), per_image, s=6, marker=marker, color=colour, alpha=0.25, lw=0)
                label = mode if f == foci[0] else None
                ax.scatter([x], [_mean(got, "median_ratio", True)], s=60, marker=marker, color=colour, label=label)
        # One theory curve per panel: every unseen camera has the same image size, hence the same shrink.
        s = next(iter(shrinks)) if scale == "fit" and len(shrinks) == 1 else 1.0
        ax.plot(xs, np.ones_like(xs), "k--", lw=1, label="y = 1 (CSTM)")
        theory = "y = 1 / x" if s == 1 else f"y = 1 / ({s:.2f} x)"
        ax.plot(xs, 1 / (s * xs), "k:", lw=1, label=f"{theory} (none, theory)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):  # plain numbers: the log axes' default 6x10^-1 labels hide the ratios
            axis.set_major_locator(FixedLocator([0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6]))
            axis.set_major_formatter(lambda v, _: f"{v:g}")
            axis.set_minor_formatter(NullFormatter())
        ax.set_title(f"{scale} scale" + (" (main)" if scale == SCALES[0] else f": images shrunk x{s:.2f}"))
        ax.set_xlabel(f"f_test / f_train (f_train = {f_train:.0f} px)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="upper right")
    axes[0].set_ylabel("median(pred) / median(gt)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m eval.ablation", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="ablation", help="output folder (store, runs, reports, tables)")
    parser.add_argument("--seeds", default="0,1", help="comma list of seeds (default 0,1)")
    parser.add_argument("--preset", default=PRESET, help=f"training preset for every run (default {PRESET})")
    parser.add_argument("--steps", type=int, help="training steps per run (default: the preset's)")
    parser.add_argument("--scenes", type=int, default=24, help="scenes per camera (default 24)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra training overrides")
    args = parser.parse_args(argv)
    run(Path(args.out), [int(s) for s in args.seeds.split(",")], args.steps, args.scenes, args.set, args.preset)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
