"""python -m train.run: train a metric depth model on a store with Ray Train, tracked in MLflow.

Examples:
  python -m train.run --config tiny --store demo/store
  python -m train.run --config tiny --store demo/store --set steps=100 --set cstm=none --set crop_hw=128,160
  RAY_ADDRESS=auto python -m train.run --config metric3d_convnext_large --store s3://bucket/store
--set key=value sets any field of train.config.TrainConfig (tuples as comma lists, losses as name:weight).
Local Ray by default (RAY_ADDRESS selects a cluster); MLflow in ./mlflow.db unless MLFLOW_TRACKING_URI is set.
The last line names the registered model version and its URI. A corrupt sample is replaced and counted (MLflow
metric bad_samples, artifact bad_samples.json); more than max_bad_samples stops the run with one line naming them.
The run reserves num_workers x cpus_per_worker CPUs, plus num_workers x data_cpus_per_worker with loader=ray_data;
a runtime that cannot hold them stops it at start with one line (docs/operations.md, "Ray").

Resuming: a run is one Ray Train run and one MLflow run. `--resume RUN` (an MLflow run id or the run's name)
continues a pre-empted or killed run from its last checkpoint: same MLflow run, same pinned catalog version,
same sample order (the samples digest equals an uninterrupted run's). Launching again with the same
`--run-name NAME` does the same when NAME exists and did not finish, so a retried job (a RayJob's
backoffLimit) resumes instead of starting over. The config must be the one the run started with (`steps` may
grow).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from store.fs import parse_storage_options
from train.config import TrainConfig, load_config

# Imported where used, not here: torch, Ray and MLflow take ~10 s to import, and `--help` must answer at once.


def _absolute(path: str) -> str:
    return path if "://" in path else str(Path(path).resolve())


def train(
    cfg: TrainConfig,
    store_url: str,
    storage_options: dict[str, Any] | None = None,
    run_name: str | None = None,
    store_version: int | None = None,
    resume: str | None = None,
) -> dict[str, Any]:
    """Fit, log and register. Returns run id, registered version, URI, final metrics, checkpoint path and
    the catalog version the run read (the latest at start unless `store_version` pins another). `resume`
    (an MLflow run id or run name), or a `run_name` that exists unfinished, continues that run."""
    import mlflow
    import numpy as np
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from infra.ray_runtime import cluster_capacity, init_ray
    from model import get_model_config
    from pipelines import catalog_digest, plan_epoch
    from pipelines.cstm import check_mode
    from pipelines.loading import check_bad_samples
    from store import open_store
    from train import tracking
    from train.loop import CHECKPOINT_FILE, read_bad_samples, train_loop

    check_mode(cfg.cstm)
    get_model_config(cfg.model_name, cstm=cfg.cstm)  # fail before starting anything: unknown name, unsupported cstm
    store_url = _absolute(store_url)
    tracking.connect()
    previous = _run_to_resume(cfg, resume, run_name)
    if previous is not None:
        store_version = _check_resumable(previous, cfg, store_url, store_version)
    # The run pins the catalog version it starts on: every rank and loader actor (and every restart after a
    # failure, and a resumed run) reads exactly these rows, whatever an ingest commits meanwhile.
    store = open_store(store_url, storage_options).at_version(store_version)
    plan = plan_epoch(store, cfg.mix(), cfg.seed, 0, cfg.batch_size)
    sizes = {d: int(n) for d, n in zip(*np.unique(np.asarray(plan.rows["dataset"].to_pylist()), return_counts=True))}
    resumed_id = previous.info.run_id if previous is not None else None
    # Before the MLflow run and the trainer: a runtime short of what the run reserves is one line now, not a hang
    # later (Ray Data's loader actors waiting for CPUs the Train workers hold). A local runtime is started with
    # as many logical CPUs as the run reserves, more than this machine's cores if need be: Ray's CPUs are
    # scheduling slots, not cores, and the workers and loader actors then share the cores.
    need = run_resources(cfg)
    init_ray(max(2, math.ceil(round(need["CPU"], 4))))
    capacity, final = cluster_capacity()
    if short := resource_shortfall(cfg, capacity):
        if final:
            raise ClusterTooSmall(short)
        print(f"warning: {short} (starting anyway: an autoscaling cluster adds nodes on demand)", file=sys.stderr)
    with tracking.start_run(cfg.experiment, run_name, run_id=resumed_id) as run:
        storage = _absolute(cfg.storage_path)
        name = _ray_name(previous, run_name, cfg.experiment, run.info.run_id)
        if previous is None:
            tracking.log_config(cfg.to_dict())
            mlflow.log_dict(cfg.to_dict(), "config.json")
            tracking.log_lineage(store_url, store.version, catalog_digest(plan.rows), plan.order.lineage(), sizes)
            mlflow.set_tags({"ray_run_name": name, "ray_storage_path": storage})
        else:
            mlflow.set_tag("resumed", str(int(previous.data.tags.get("resumed", "0")) + 1))
            if cfg.steps != int(previous.data.params["steps"]):
                mlflow.set_tag("steps_extended_to", str(cfg.steps))
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
        with _Progress(run.info.run_id, cfg.steps, cfg.batch_size):
            result = trainer.fit()
        if result.error:
            raise result.error
        local = tempfile.mkdtemp(prefix="ckpt-")
        result.checkpoint.to_directory(local)
        # A run the workers stopped for corrupt samples fails here, naming them, and registers nothing.
        check_bad_samples(read_bad_samples(local), cfg.max_bad_samples)
        checkpoint_path = os.path.join(local, CHECKPOINT_FILE)
        # The registered model carries the weights once; the full checkpoint (optimizer state) stays in the Ray run.
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


class ClusterTooSmall(ValueError):
    """The Ray runtime cannot hold the CPUs or GPUs a run reserves (the CLI prints it as one line)."""


def run_resources(cfg: TrainConfig) -> dict[str, float]:
    """The logical CPUs and GPUs a run reserves: num_workers x cpus_per_worker CPUs for the Ray Train workers, plus
    num_workers x data_cpus_per_worker for their Ray Data pipelines when loader = ray_data, and a GPU per worker
    when use_gpu."""
    data = cfg.data_cpus_per_worker if cfg.loader == "ray_data" else 0.0
    return {"CPU": cfg.num_workers * (cfg.cpus_per_worker + data), "GPU": float(cfg.num_workers if cfg.use_gpu else 0)}


def resource_shortfall(cfg: TrainConfig, capacity: Mapping[str, float]) -> str | None:
    """One line naming what the run needs beyond `capacity` (CPU and GPU counts) and what to change; None if it fits."""
    need, workers, problems = run_resources(cfg), cfg.num_workers, []
    have = {k: float(capacity.get(k, 0.0)) for k in need}
    if need["CPU"] - have["CPU"] > 1e-6:  # Ray counts resources in 1/10000ths: 2 x (0.1 + 0.2) fits in 0.6
        per = have["CPU"] / workers
        if cfg.loader == "ray_data":
            what = f"loader=ray_data needs {need['CPU']:g} CPUs ({workers} workers x ({cfg.cpus_per_worker:g} train"
            what += f" + {cfg.data_cpus_per_worker:g} data))"
            share = math.floor(per / 2 * 100) / 100
            lower = "cpus_per_worker / data_cpus_per_worker"
            hint = f" (e.g. --set cpus_per_worker={share:g} --set data_cpus_per_worker={share:g})" if share else ""
        else:
            what = f"training needs {need['CPU']:g} CPUs ({workers} workers x {cfg.cpus_per_worker:g})"
            share = math.floor(per * 100) / 100
            lower = "cpus_per_worker or num_workers"
            hint = f" (e.g. --set cpus_per_worker={share:g})" if share else ""
        problems.append(f"{what}; the cluster has {have['CPU']:g}: add CPUs, or lower {lower}{hint}")
    if need["GPU"] - have["GPU"] > 1e-6:
        fewer = f"--set num_workers={int(have['GPU'])}" if have["GPU"] >= 1 else "--set use_gpu=false"
        problems.append(
            f"use_gpu needs {need['GPU']:g} GPUs ({workers} workers x 1); the cluster has {have['GPU']:g}: "
            f"add GPUs, or {fewer}"
        )
    return "; ".join(problems) or None


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
    "METRICDEPTH_QUIET",  # infra.quiet: the workers stay as quiet as the driver
)


def _forwarded_env(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The driver's variables named in FORWARDED_ENV, for the workers' runtime env (no secret values)."""
    return {k: environ[k] for k in FORWARDED_ENV if k in environ}


def _run_to_resume(cfg: TrainConfig, resume: str | None, run_name: str | None):
    """The MLflow run to continue: `resume` (id or name; it must exist), else an unfinished run named
    `run_name` (Ray's convention: the same name resumes), else None (a new run)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    key = resume or run_name
    if key is None:
        return None
    if resume is not None and re.fullmatch(r"[0-9a-f]{32}", resume):
        try:
            return mlflow.get_run(resume)
        except MlflowException:
            pass
    experiment = mlflow.get_experiment_by_name(cfg.experiment)
    runs = (
        mlflow.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.ray_run_name = '{key}'",
            order_by=["attributes.start_time DESC"],
            output_format="list",
        )
        if experiment is not None and re.fullmatch(r"[\w.-]+", key)
        else []
    )
    if not runs:
        if resume is not None:
            raise ValueError(
                f"--resume {resume}: no MLflow run with that id or name in experiment {cfg.experiment!r} "
                f"(tracking URI {mlflow.get_tracking_uri()})"
            )
        return None
    if runs[0].info.status == "FINISHED":
        if resume is not None:
            raise ValueError(f"--resume {resume}: that run finished; start a new one (another --run-name)")
        raise ValueError(f"--run-name {run_name}: a finished run has that name; choose another, or --resume")
    return runs[0]


def _check_resumable(previous, cfg: TrainConfig, store_url: str, store_version: int | None) -> int:
    """The resumed run's config, store and catalog version must be the ones it started with (`steps` may
    grow); returns the pinned catalog version."""
    import mlflow

    defaults = json.loads(json.dumps(TrainConfig().to_dict()))  # tuples as lists, as the saved JSON has them
    # A field added since the run started was, for that run, its default: an older run stays resumable.
    saved = {**defaults, **mlflow.artifacts.load_dict(f"runs:/{previous.info.run_id}/config.json")}
    now = json.loads(json.dumps(cfg.to_dict()))
    differ = sorted(k for k in set(saved) | set(now) if k != "steps" and saved.get(k) != now.get(k))
    if differ:
        shown = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in differ[:5])
        raise ValueError(f"cannot resume run {previous.info.run_id} with another config ({shown})")
    tags = previous.data.tags
    if tags.get("store_uri") != store_url:
        raise ValueError(
            f"cannot resume run {previous.info.run_id} on {store_url}: it trained on {tags.get('store_uri')}"
        )
    pinned = int(tags["store_version"])
    if store_version is not None and store_version != pinned:
        raise ValueError(
            f"cannot resume run {previous.info.run_id} at catalog version {store_version}: it reads {pinned}"
        )
    return pinned


def _ray_name(previous, run_name: str | None, experiment: str, run_id: str) -> str:
    """The Ray Train run name: a resumed run's own (Ray then restores its last checkpoint), else --run-name,
    else the experiment and the MLflow run id."""
    if previous is not None:
        return previous.data.tags["ray_run_name"]
    return run_name or f"{experiment}-{run_id[:8]}"


class _Progress:
    """One progress line while Ray trains: step, loss, samples/s and ETA, read from the run's MLflow metrics
    (rewritten in place on a terminal; a line per change in a log file)."""

    def __init__(self, run_id: str, steps: int, batch_size: int, every_s: float = 5.0) -> None:
        self.run_id, self.steps, self.batch_size, self.every_s = run_id, steps, batch_size, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._tty = sys.stdout.isatty()

    def __enter__(self) -> _Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self._tty:
            print(flush=True)

    def _loop(self) -> None:
        import mlflow

        client, last, t0 = mlflow.MlflowClient(), None, time.monotonic()
        while not self._stop.wait(self.every_s):
            try:
                metrics = client.get_run(self.run_id).data.metrics
                history = client.get_metric_history(self.run_id, "loss")
            except Exception:  # noqa: BLE001 - a progress line must never stop the run
                continue
            if not history:
                continue
            step = max(m.step for m in history)
            if step == last:
                continue
            rate = metrics.get("samples_per_s", 0.0)
            left = (self.steps - step) * self.batch_size / rate if rate > 0 else float("nan")
            eta = time.strftime("%H:%M:%S", time.gmtime(left)) if left == left else "?"
            line = f"step {step}/{self.steps}  loss {metrics.get('loss', float('nan')):.4f}  {rate:.1f} samples/s  ETA {eta}  ({time.monotonic() - t0:.0f} s)"
            print(f"\r{line}" if self._tty else line, end="" if self._tty else "\n", flush=True)
            last = step


def _log_previews(checkpoint_path: str, store, plan, count: int) -> None:
    from model import load_checkpoint
    from train import tracking

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
    parser.add_argument(
        "--run-name",
        help="the run's name (MLflow and Ray Train); an unfinished run of that name is resumed",
    )
    parser.add_argument(
        "--resume", metavar="RUN", help="continue this run (MLflow run id or name) from its last checkpoint"
    )
    parser.add_argument("--verbose", action="store_true", help="show Ray's, torch's and MLflow's own log lines too")
    parser.add_argument(
        "--store-version", type=int, help="catalog version to train on (default: the latest when the run starts)"
    )
    parser.add_argument("--storage-options", help='JSON for fsspec/s3fs, e.g. \'{"endpoint_url": "..."}\'')
    args = parser.parse_args(argv)
    from store import StoreError

    if not args.verbose:
        from infra.quiet import quiet

        quiet()
    try:
        cfg = load_config(args.config, args.set)
        out = train(
            cfg,
            args.store,
            parse_storage_options(args.storage_options),
            args.run_name,
            args.store_version,
            args.resume,
        )
    except (KeyError, FileNotFoundError, ValueError, StoreError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in out.items() if k != "metrics"} | {"final_loss": out["metrics"].get("loss")}))
    print(f"registered model {cfg.registered_model} version {out['version']}: {out['model_uri']} (run {out['run_id']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
