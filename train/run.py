"""python -m train.run: train a metric depth model on a store with Ray Train, tracked in MLflow.

Examples:
  python -m train.run --config tiny --store demo/store
  python -m train.run --config tiny --store demo/store --set steps=100 --set cstm=none --set crop_hw=128,160
  RAY_ADDRESS=auto python -m train.run --config metric3d_convnext_large --store s3://bucket/store
--set key=value sets any field of train.config.TrainConfig (tuples as comma lists, losses as name:weight).
Local Ray by default (RAY_ADDRESS selects a cluster); MLflow in ./mlflow.db unless MLFLOW_TRACKING_URI is set.
The last line names the registered model version and its URI. A corrupt sample is replaced and counted (MLflow
metric bad_samples, artifact bad_samples.json); more than max_bad_samples stops the run with one line naming them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import numpy as np

from pipelines import catalog_digest, plan_epoch
from pipelines.cstm import check_mode
from pipelines.loading import check_bad_samples
from store import StoreError, open_store
from store.fs import parse_storage_options
from train import tracking
from train.config import TrainConfig, load_config
from train.loop import CHECKPOINT_FILE, read_bad_samples, train_loop


def _absolute(path: str) -> str:
    return path if "://" in path else str(Path(path).resolve())


def train(
    cfg: TrainConfig,
    store_url: str,
    storage_options: dict[str, Any] | None = None,
    run_name: str | None = None,
    store_version: int | None = None,
) -> dict[str, Any]:
    """Fit, log and register. Returns run id, registered version, URI, final metrics, checkpoint path and
    the catalog version the run read (the latest at start unless `store_version` pins another)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from infra.ray_runtime import init_ray
    from model import get_model_config

    check_mode(cfg.cstm)
    get_model_config(cfg.model_name, cstm=cfg.cstm)  # fail before starting anything: unknown name, unsupported cstm
    store_url = _absolute(store_url)
    # The run pins the catalog version it starts on: every rank and loader actor (and every restart after a
    # failure) reads exactly these rows, whatever an ingest commits meanwhile.
    store = open_store(store_url, storage_options).at_version(store_version)
    plan = plan_epoch(store, cfg.mix(), cfg.seed, 0, cfg.batch_size)
    sizes = {d: int(n) for d, n in zip(*np.unique(np.asarray(plan.rows["dataset"].to_pylist()), return_counts=True))}
    with tracking.start_run(cfg.experiment, run_name) as run:
        tracking.log_config(cfg.to_dict())
        tracking.log_lineage(store_url, store.version, catalog_digest(plan.rows), plan.order.lineage(), sizes)
        name = f"{cfg.experiment}-{run.info.run_id[:8]}"
        storage = _absolute(cfg.storage_path)
        loop_config = {
            "train": cfg.to_dict(),
            "store_url": store_url,
            "store_version": store.version,
            "storage_options": store.storage_options,
            "mlflow_run_id": run.info.run_id,
            "mlflow_tracking_uri": tracking.tracking_uri(),
            "drill_dir": os.path.join(storage, name, "drill"),
            "train_datasets": sorted(plan.order.counts),
        }
        init_ray(max(2, cfg.num_workers * cfg.cpus_per_worker))
        trainer = TorchTrainer(
            train_loop,
            train_loop_config=loop_config,
            scaling_config=ScalingConfig(
                num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, resources_per_worker={"CPU": cfg.cpus_per_worker}
            ),
            torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
            run_config=RunConfig(
                name=name,
                storage_path=storage,
                worker_runtime_env={"env_vars": _forwarded_env()},
                failure_config=FailureConfig(max_failures=cfg.max_failures),
                checkpoint_config=CheckpointConfig(num_to_keep=2),
            ),
        )
        result = trainer.fit()
        if result.error:
            raise result.error
        local = tempfile.mkdtemp(prefix="ckpt-")
        result.checkpoint.to_directory(local)
        # A run the workers stopped for corrupt samples fails here, naming them, and registers nothing.
        check_bad_samples(read_bad_samples(local), cfg.max_bad_samples)
        checkpoint_path = os.path.join(local, CHECKPOINT_FILE)
        mlflow.log_artifact(checkpoint_path, artifact_path="checkpoint")
        _log_previews(checkpoint_path, store, plan, cfg.preview_count)
        version, uri = tracking.register_model(checkpoint_path, cfg.registered_model)
        metrics = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))}
        return {
            "run_id": run.info.run_id,
            "version": version,
            "model_uri": uri,
            "metrics": metrics,
            "samples_digest": result.metrics.get("samples_digest"),
            "store_version": store.version,
            "checkpoint": checkpoint_path,
        }


# What the workers need to find S3, MLflow and the hub: places and names, never a secret. Ray stores a runtime
# env and shows it in its dashboard and state API, so keys, session tokens and passwords stay out: workers take
# credentials from their node's own chain (the raylet's env, an instance profile or web identity, ~/.aws,
# ~/.mlflow/credentials). docs/operations.md, "Secrets".
FORWARDED_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",  # a path: the token itself stays in the node's file
    "MLFLOW_TRACKING_URI",
    "MLFLOW_S3_ENDPOINT_URL",
    "HF_HUB_OFFLINE",
)


def _forwarded_env(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The driver's variables named in FORWARDED_ENV, for the workers' runtime env (no secret values)."""
    return {k: environ[k] for k in FORWARDED_ENV if k in environ}


def _log_previews(checkpoint_path: str, store, plan, count: int) -> None:
    from model import load_checkpoint

    model, _ = load_checkpoint(checkpoint_path)
    for row in plan.rows.slice(0, count).to_pylist():
        rgb, depth = store.read_arrays(row)
        pred = model.infer(rgb, (row["fx"], row["fy"], row["cx"], row["cy"]))["depth_m"]
        tracking.log_preview(row["sample_id"].replace("/", "_"), rgb, depth, pred)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="preset name (tiny, metric3d_convnext_large) or a TOML file")
    parser.add_argument("--store", required=True, help="store URL (local path or s3://...)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    parser.add_argument("--run-name", help="MLflow run name")
    parser.add_argument(
        "--store-version", type=int, help="catalog version to train on (default: the latest when the run starts)"
    )
    parser.add_argument("--storage-options", help='JSON for fsspec/s3fs, e.g. \'{"endpoint_url": "..."}\'')
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.set)
        out = train(cfg, args.store, parse_storage_options(args.storage_options), args.run_name, args.store_version)
    except (KeyError, FileNotFoundError, ValueError, StoreError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in out.items() if k != "metrics"} | {"final_loss": out["metrics"].get("loss")}))
    print(f"registered model {cfg.registered_model} version {out['version']}: {out['model_uri']} (run {out['run_id']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
