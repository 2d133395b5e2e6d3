"""python -m eval.run: score models on benchmarks of a store and write report.json / .md / .html.

Examples:
  python -m eval.run --model models:/metric-depth@latest --store demo/store --benchmarks synthetic_kitti:val
  python -m eval.run --model runs:/<run_id>/model --store s3://bucket/store --benchmarks nyu,kitti --out reports/
  python -m eval.run --model ckpt.pt --store demo/store --benchmarks nyu --baselines constant,oracle --dump
MODEL is a registered model, a run's model, or a checkpoint path (several: comma-separated). Baselines
need no weights: `constant` predicts the median training depth everywhere; `oracle` is each model scaled
by the per-image ground-truth median (its metric numbers show how much error is scale alone).
Every result says whether the benchmark is zero-shot or in-domain for the model, and why, read from its lineage
(eval.domain). Metric mode scores predictions clipped to the protocol's depth range; an image left out of a mean
(no scored pixel, a non-finite or non-positive prediction) is counted with its reason in report.json and report.md.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from eval import report
from eval.harness import EXCLUSION_REASONS, Scores, resolve_benchmark, score
from eval.models import Loaded, constant_baseline, load_depth_model
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
) -> list[dict[str, Any]]:
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise KeyError(f"unknown baselines {unknown}; valid: {', '.join(BASELINES)}")
    # Pinned for the whole evaluation (latest when not given): the report names the version it scored, and
    # re-running with --store-version gives the same rows, hence the same numbers.
    store = open_store(store_url, storage_options).at_version(store_version)
    benches = [resolve_benchmark(store, b, limit) for b in benchmarks]
    models = [load_depth_model(u) for u in model_uris]
    entries: list[tuple[Loaded, bool]] = [(m, False) for m in models]
    if "constant" in baselines:
        entries.append((constant_baseline(store, models[0].train_datasets if models else None), False))
    if "oracle" in baselines:
        entries += [(replace(m, name=f"{m.name} + oracle scale", info={}), True) for m in models]
    results, all_scores, kept = [], [], {}
    for loaded, oracle in entries:
        for bench in benches:
            scores, samples = score(loaded, store, bench, keep=keep if not oracle else 0)
            if oracle:
                scores = _as_oracle(scores)
            all_scores.append(scores)
            results += scores.results()
            if samples:
                kept[f"{loaded.name} / {bench.dataset}"] = samples
    meta = {
        "store": store_url,
        "store_version": store.version,
        "benchmarks": {
            b.dataset: {
                "split": b.split,
                "protocol": b.protocol.name,
                "n_rows": len(b.rows),
                "depth_range_m": [b.protocol.min_depth_m, b.protocol.max_depth_m],
            }
            for b in benches
        },
        "metric_mode": "no alignment; predictions clipped to the protocol's depth_range_m before scoring",
        "exclusion_reasons": EXCLUSION_REASONS,
    }
    report.write(out, results, all_scores, kept, meta, dump)
    _log_to_mlflow(models, results, out)
    return results


def _as_oracle(scores: Scores) -> Scores:
    """The oracle's metric numbers are the base model's median-aligned ones (per-image true scale, unclipped)."""
    scores.depth_range_m = None
    for s in scores.per_sample:
        s["modes"] = {"metric": s["modes"]["median"], "median": s["modes"]["median"], "lsq": s["modes"]["lsq"]}
    return scores


def _log_to_mlflow(models: list[Loaded], results: list[dict[str, Any]], out: Path) -> None:
    """Each registered/run model gets a linked evaluation run (a child of its training run)."""
    import mlflow

    for m in models:
        if not m.run_id:
            continue
        train_run = mlflow.get_run(m.run_id)
        mlflow.set_experiment(experiment_id=train_run.info.experiment_id)
        with mlflow.start_run(
            run_name=f"eval {m.name}", tags={"mlflow.parentRunId": m.run_id, "evaluated_model": m.name}
        ):
            for r in results:
                if r["model"] != m.name:
                    continue
                prefix = f"{r['benchmark']}.{r['mode']}"
                mlflow.log_metrics({f"{prefix}.{k}": v for k, v in r["metrics"].items()})
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
    args = parser.parse_args(argv)
    try:
        results = evaluate(
            [m for m in args.model.split(",") if m],
            args.store,
            [b for b in args.benchmarks.split(",") if b],
            Path(args.out),
            [b for b in args.baselines.split(",") if b],
            args.limit,
            args.dump,
            parse_storage_options(args.storage_options),
            store_version=args.store_version,
        )
    except (KeyError, FileNotFoundError, ValueError, StoreError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    print(report.markdown(results))
    print(f"wrote {args.out}/report.json, report.md, report.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
