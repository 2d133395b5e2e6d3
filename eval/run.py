"""python -m eval.run: score models on benchmarks of a store and write report.json / .md / .html.

Examples:
  python -m eval.run --model models:/metric-depth@candidate --store demo/store --benchmarks synthetic_kitti:val
  python -m eval.run --model runs:/<run_id>/model --store s3://bucket/store --benchmarks nyu,kitti --out reports/
  python -m eval.run --model ckpt.pt --store demo/store --benchmarks nyu --baselines constant,oracle --dump
MODEL is an MLflow model URI (models:/name@alias, models:/name/3, models:/name/latest, models:/m-<id>,
runs:/<id>/model), or a checkpoint path (several: comma-separated). Baselines need no weights: `constant` predicts
the median training depth everywhere; `oracle` is each model scaled by the per-image ground-truth median (its metric
numbers show how much error is scale alone; they are the model's median-aligned predictions, not inferred again).
Models run on --device (default auto: CUDA when available, else CPU) in --autocast precision (default off). An MLflow
model gets an evaluation run under its training run: params, metrics linked to the logged model, the report.
Every result says whether the benchmark is zero-shot or in-domain for the model, and why, read from its lineage
(eval.domain). Metric mode scores predictions clipped to the protocol's depth range; an image left out of a mean
(no scored pixel, a non-finite or non-positive prediction) is counted with its reason in report.json and report.md.
--scale native runs our models at each image's own pixel scale (padded to the encoder stride) instead of fitting it
into the model's infer_hw: the scale CSTM label and none modes train at (model.config.INFER_SCALES).
"""

from __future__ import annotations

import argparse
import inspect
import sys
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from eval import report
from eval.harness import EXCLUSION_REASONS, Scores, resolve_benchmark, score
from eval.models import DepthModel, Loaded, constant_baseline, load_depth_model
from model.config import INFER_SCALES
from model.device import add_device_arguments, autocast, resolve_device
from store import StoreError, open_store
from store.fs import parse_storage_options

BASELINES = ("constant", "oracle")


def evaluate(
    model_uris: list[str],
    store_url: str,
    benchmarks: list[str],
    out: Path,
    baselines: list[str],
    limit: int | None = None,
    dump: bool = False,
    storage_options: dict | None = None,
    keep: int = 3,
    store_version: int | None = None,
    scale: str = "fit",
    device: str = "auto",
    autocast_mode: str = "off",
) -> list[dict[str, Any]]:
    """Score models (and baselines) on benchmarks, run at `scale` (INFER_SCALES) on `device` (model.device) in
    `autocast_mode` precision; write the report under out."""
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise KeyError(f"unknown baselines {unknown}; valid: {', '.join(BASELINES)}")
    if scale not in INFER_SCALES:
        raise KeyError(f"unknown scale {scale!r}; valid: {', '.join(INFER_SCALES)}")
    precision = autocast(resolve_device(device), autocast_mode)  # checked before anything is read or loaded
    # Pinned for the whole evaluation (latest when not given): the report names the version it scored, and
    # re-running with --store-version gives the same rows, hence the same numbers.
    store = open_store(store_url, storage_options).at_version(store_version)
    benches = [resolve_benchmark(store, b, limit) for b in benchmarks]
    models = [_at_scale(load_depth_model(u, device), scale) for u in model_uris]
    entries: list[Loaded] = list(models)
    roles: dict[str, dict[str, Any]] = {}  # baseline name -> what it is: the report shows each where it adds
    if "constant" in baselines:
        constant = constant_baseline(store, models[0].train_datasets if models else None)
        entries.append(constant)
        roles[constant.name] = {"kind": "constant", "depth_m": constant.info["depth_m"]}
    oracles = [replace(m, name=f"{m.name} + oracle scale", info={}) for m in models] if "oracle" in baselines else []
    roles.update({o.name: {"kind": "oracle", "of": m.name} for o, m in zip(oracles, models)})
    results, all_scores, kept = [], [], {}
    scored: dict[tuple[str, str], Scores] = {}
    with precision:
        for loaded in entries:
            for bench in benches:
                scores, samples = score(loaded, store, bench, keep=keep)
                scored[(loaded.name, bench.dataset)] = scores
                all_scores.append(scores)
                results += scores.results()
                if samples:
                    kept[f"{loaded.name} / {bench.dataset}"] = samples
    for o, m in zip(oracles, models):
        for bench in benches:
            scores = _as_oracle(scored[(m.name, bench.dataset)], o.name)
            all_scores.append(scores)
            results += scores.results()
    meta = {
        "provenance": report.provenance(models, roles, store, benches),
        "metric_mode": "no alignment; predictions clipped to the protocol's depth_range_m before scoring",
        "scale": {"name": scale, "meaning": INFER_SCALES[scale]},
        "device": str(resolve_device(device)),  # timings depend on it
        "autocast": autocast_mode,
        "exclusion_reasons": EXCLUSION_REASONS,
    }
    report.write(out, results, all_scores, kept, meta, dump)
    settings = {"scale": scale, "device": device, "autocast": autocast_mode, "limit": limit, "baselines": baselines}
    _log_to_mlflow(models, results, out, store, benches, settings)
    return results


@dataclass(frozen=True)
class _AtScale:
    """A model whose infer() runs at a chosen INFER_SCALES scale."""

    model: DepthModel
    scale: str

    def infer(self, rgb: Any, k_px: tuple[float, float, float, float]) -> dict[str, Any]:
        return self.model.infer(rgb, k_px, scale=self.scale)


def _at_scale(loaded: Loaded, scale: str) -> Loaded:
    """`fit` is every model's own default; another scale only for models whose infer() takes one."""
    if scale == "fit":
        return loaded
    if "scale" not in inspect.signature(loaded.model.infer).parameters:
        raise ValueError(f"{loaded.name}: --scale {scale} is not supported: this network runs at its own input size")
    return replace(loaded, model=_AtScale(loaded.model, scale))


def _as_oracle(scores: Scores, name: str) -> Scores:
    """The oracle `name` from its model's scores, nothing inferred again: its metric numbers are the model's
    median-aligned ones (per-image true scale, unclipped), its error-against-depth sums those of that prediction."""
    return replace(
        scores,
        model=name,
        depth_range_m=None,
        per_sample=[
            {**s, "modes": {"metric": s["modes"]["median"], "median": s["modes"]["median"], "lsq": s["modes"]["lsq"]}}
            for s in scores.per_sample
        ],
        excluded=list(scores.excluded),
        seconds=0.0,
        infer_ms=[],
        bin_abs_rel=scores.bin_abs_rel_median.copy(),
        bin_count=scores.bin_count.copy(),
        bin_abs_rel_median=scores.bin_abs_rel_median.copy(),
    )


def _log_to_mlflow(
    models: list[Loaded],
    results: list[dict[str, Any]],
    out: Path,
    store: Any,
    benches: list[Any],
    settings: dict[str, Any],
) -> None:
    """Each MLflow model gets an evaluation run, a child of its training run: what was scored (store, version,
    benchmarks, protocols, settings) as params, each benchmark's rows as an input dataset, the metrics linked to the
    logged model and that dataset, and the report. An MLflow failure is one TrackingError line."""
    import mlflow
    import pandas as pd

    from train.tracking import mlflow_errors

    params = {
        "store_uri": store.url,
        "store_version": store.version,
        "benchmarks": ",".join(f"{b.dataset}:{b.split}" for b in benches),
        "protocols": ",".join(f"{b.dataset}={b.protocol.name}" for b in benches),
        **{k: ",".join(v) if isinstance(v, list) else v for k, v in settings.items()},
    }
    for m in models:
        if not m.run_id:
            continue
        with mlflow_errors(f"logging the evaluation of {m.name}"):
            mlflow.set_experiment(experiment_id=mlflow.get_run(m.run_id).info.experiment_id)
            tags = {"mlflow.parentRunId": m.run_id, "evaluated_model": m.name}
            with mlflow.start_run(run_name=f"eval {m.name}", tags=tags):
                mlflow.log_params({**params, "model_uri": m.name})
                for b in benches:
                    rows = pd.DataFrame({"sample_id": [r["sample_id"] for r in b.rows]})
                    name = f"{b.dataset}:{b.split}@v{store.version}"
                    with warnings.catch_warnings():
                        # A local store path matches two of MLflow's (identical) local source types; it says so.
                        warnings.filterwarnings("ignore", "The specified dataset source can be interpreted")
                        dataset = mlflow.data.from_pandas(rows, source=store.url, name=name)
                    mlflow.log_input(dataset, context="evaluation")
                    metrics = {
                        f"{r['benchmark']}.{r['mode']}.{k}": v
                        for r in results
                        if r["model"] == m.name and r["benchmark"] == b.dataset
                        for k, v in r["metrics"].items()
                    }
                    mlflow.log_metrics(metrics, model_id=m.info.get("model_id"), dataset=dataset)
                mlflow.log_artifacts(str(out), artifact_path="report")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m eval.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", required=True, help="models:/name@alias, runs:/id/model or a checkpoint (comma list)"
    )
    parser.add_argument("--store", required=True, help="store URL (local path or s3://...)")
    parser.add_argument("--benchmarks", required=True, help="dataset[:split] names of the store, comma-separated")
    parser.add_argument("--out", default="report", help="output folder (default: report/)")
    parser.add_argument("--baselines", default="", help=f"comma list of {', '.join(BASELINES)}")
    parser.add_argument("--limit", type=int, help="score at most N samples per benchmark")
    parser.add_argument("--dump", action="store_true", help="per-sample metrics in report.json")
    parser.add_argument(
        "--store-version",
        type=int,
        help="catalog version to score (default: the latest; the report records the one it used)",
    )
    parser.add_argument("--storage-options", help="JSON for fsspec/s3fs")
    parser.add_argument(
        "--scale",
        choices=list(INFER_SCALES),
        default="fit",
        help="how our models see each image: " + "; ".join(f"{k}: {v}" for k, v in INFER_SCALES.items()),
    )
    add_device_arguments(parser)
    args = parser.parse_args(argv)
    try:
        evaluate(
            [m for m in args.model.split(",") if m],
            args.store,
            [b for b in args.benchmarks.split(",") if b],
            Path(args.out),
            [b for b in args.baselines.split(",") if b],
            args.limit,
            args.dump,
            parse_storage_options(args.storage_options),
            store_version=args.store_version,
            scale=args.scale,
            device=args.device,
            autocast_mode=args.autocast,
        )
    except (KeyError, FileNotFoundError, ValueError, StoreError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    print(report.summary(Path(args.out)))
    print(f"wrote {args.out}/report.json, report.md, report.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
