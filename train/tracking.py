"""MLflow on the driver: where to track, the run's params and lineage, previews, and the registered model.

Tracking URI: MLFLOW_TRACKING_URI when set (a server), else a SQLite file `mlflow.db` in the working
directory with artifacts beside it in `mlartifacts/`. The registry uses the same URI.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"


def start_run(experiment: str, run_name: str | None = None) -> mlflow.ActiveRun:
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        location = None
        if uri.startswith("sqlite:"):
            location = Path("mlartifacts").resolve().as_uri()  # a file store beside the SQLite database
        mlflow.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment)
    return mlflow.start_run(run_name=run_name)


def log_config(config: dict[str, Any], prefix: str = "") -> None:
    flat = {f"{prefix}{k}": (",".join(map(str, v)) if isinstance(v, (list, tuple)) else v) for k, v in config.items()}
    mlflow.log_params({k: str(v)[:500] for k, v in flat.items()})


def log_lineage(store_url: str, store_version: int, digest: str, mix: dict[str, Any], sizes: dict[str, int]) -> None:
    """The data a run trained on: the store and its pinned catalog version (re-readable with
    `open_store(url, version=N)`), the digest of the rows drawn from, per-dataset rows, and the epoch's mix
    record (samples drawn per dataset and weights; every epoch draws the same counts, fresh permutations)."""
    counts, weights = mix["counts"], mix["weights"]
    record = {"store": store_url, "store_version": store_version, "catalog_digest": digest, "catalog_rows": sizes}
    mlflow.log_dict({**record, **mix}, "lineage/mix.json")
    table = pd.DataFrame(
        {
            "dataset": list(counts),
            "catalog_rows": [sizes[d] for d in counts],
            "drawn_per_epoch": [counts[d] for d in counts],
            "weight": [weights[d] for d in counts],
        }
    )
    dataset = mlflow.data.from_pandas(table, source=store_url, name=f"catalog-v{store_version}-{digest}")
    tags = {"catalog_digest": digest, "store_version": str(store_version), "datasets": ",".join(counts)}
    mlflow.log_input(dataset, context="training", tags=tags)
    mlflow.set_tags(
        {
            "store_uri": store_url,
            "store_version": str(store_version),
            "catalog_digest": digest,
            "train_datasets": ",".join(sorted(counts)),
        }
    )


def log_preview(name: str, rgb: np.ndarray, depth_gt: np.ndarray, depth_pred: np.ndarray) -> None:
    """One image: RGB | ground truth | prediction, depth coloured on a shared scale (0 = black)."""
    valid = depth_gt > 0
    hi = float(np.percentile(depth_gt[valid], 98)) if valid.any() else float(depth_pred.max())
    panels = [rgb, _colour(depth_gt, hi), _colour(depth_pred, hi)]
    mlflow.log_image(np.concatenate(panels, axis=1), f"previews/{name}.png")


def _colour(depth: np.ndarray, hi: float) -> np.ndarray:
    from matplotlib import colormaps

    rgba = colormaps["turbo"](np.clip(depth / max(hi, 1e-6), 0, 1))
    out = (rgba[..., :3] * 255).astype(np.uint8)
    out[depth <= 0] = 0
    return out


def register_model(checkpoint_path: str, registered_name: str) -> tuple[str, str]:
    """Log the pyfunc model with its signature and register it; returns (version, model URI)."""
    with warnings.catch_warnings():
        # MLflow warns that a dict-of-arrays `predict` hint is no schema; the explicit SIGNATURE is the schema.
        warnings.filterwarnings("ignore", category=UserWarning, module="mlflow")
        from model.pyfunc import CHECKPOINT_ARTIFACT, SIGNATURE, DepthPyfunc

    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=DepthPyfunc(),
        artifacts={CHECKPOINT_ARTIFACT: checkpoint_path},
        signature=SIGNATURE,
        registered_model_name=registered_name,
    )
    version = str(info.registered_model_version)
    return version, f"models:/{registered_name}@latest"
