"""MLflow on the driver: where to track, the run's params and lineage, previews, and the registered model.

Tracking URI: MLFLOW_TRACKING_URI when set (a server), else a SQLite file `mlflow.db` in the working
directory with artifacts beside it in `mlartifacts/`. The registry uses the same URI. Readers (evaluation,
promotion) use `use_existing_store`: a missing SQLite file is an error, never a new empty database.

Aliases: every registered version gets CANDIDATE_ALIAS; `champion` is set by a person (`python -m
train.promote NAME VERSION`). `models:/NAME@latest` is MLflow's own virtual alias for the newest version.
Every MLflow failure here is a TrackingError: one line saying what failed, where, and why.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

CANDIDATE_ALIAS = "candidate"
STORE_HELP = (
    "run from the folder holding mlflow.db, or set MLFLOW_TRACKING_URI "
    "(e.g. sqlite:////abs/path/mlflow.db or http://mlflow.internal:5000)"
)


class TrackingError(ValueError):
    """An MLflow call failed or its store is missing; the message is one line (CLIs print it as is)."""


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else the SQLite file mlflow.db in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"


def _shown(uri: str) -> str:
    """The URI without any user:password part, for messages."""
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])) if "@" in parts.netloc else uri


def _local_store(uri: str) -> Path | None:
    """The file or folder a local tracking URI names (sqlite file, file: folder or bare path); None for servers."""
    if uri.startswith("sqlite:"):
        from sqlalchemy.engine import make_url

        database = make_url(uri).database
        return Path(database).resolve() if database else None
    scheme = urlsplit(uri).scheme
    if scheme == "file":
        return Path(urlsplit(uri).path)
    return Path(uri).resolve() if not scheme else None


def _unreachable(url: str) -> str | None:
    """Why a tracking server does not answer its /health (None when it answers at all)."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=10)
    except urllib.error.HTTPError:
        return None  # it answered (a login, a proxy's 404): MLflow's own calls say what is wrong
    except OSError as exc:
        return str(getattr(exc, "reason", exc))
    return None


def use_existing_store() -> str:
    """Point MLflow (tracking and registry) at tracking_uri(), which must exist when it is local and answer when
    it is a server; returns it."""
    uri = tracking_uri()
    local = _local_store(uri)
    if local is not None and not local.exists():
        where = "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else "the default, ./mlflow.db"
        raise TrackingError(f"no MLflow store at {local} (from {where}): {STORE_HELP}")
    # A server that is down fails here in seconds; MLflow's client retries each call for minutes first.
    if urlsplit(uri).scheme in ("http", "https") and (why := _unreachable(_shown(uri))):
        raise TrackingError(f"no MLflow server answers at {_shown(uri)} ({why}): {STORE_HELP}")
    return connect()


@contextmanager
def mlflow_errors(what: str) -> Iterator[None]:
    """Turn an MlflowException inside into a one-line TrackingError: `what` failed, the store, MLflow's reason."""
    try:
        yield
    except MlflowException as exc:
        lines = [line.strip() for line in str(exc.message).splitlines() if line.strip()]
        reason = lines[0][:300] if lines else type(exc).__name__
        raise TrackingError(f"{what}: {reason} (MLflow at {_shown(tracking_uri())})") from None


def connect() -> str:
    """Point MLflow (tracking and registry) at tracking_uri(); returns it."""
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def start_run(experiment: str, run_name: str | None = None, run_id: str | None = None) -> mlflow.ActiveRun:
    """Start a run in `experiment` (created when missing), or continue run `run_id`."""
    uri = connect()
    with mlflow_errors(f"starting a run in experiment {experiment}"):
        if run_id is not None:
            return mlflow.start_run(run_id=run_id)
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
    """Log the weights-only pyfunc model in the active run, register it and alias the new version
    CANDIDATE_ALIAS; returns (version, `models:/NAME@candidate`)."""
    from model.pyfunc import WEIGHTS_FILE, export_weights, log_pyfunc

    with mlflow_errors(f"registering model {registered_name}"), tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, WEIGHTS_FILE)
        export_weights(checkpoint_path, weights)
        info = log_pyfunc(weights, registered_name)
        version = str(info.registered_model_version)
        set_alias(registered_name, version, CANDIDATE_ALIAS)
    return version, f"models:/{registered_name}@{CANDIDATE_ALIAS}"


def set_alias(registered_name: str, version: str, alias: str) -> None:
    """Point `models:/NAME@alias` at `version` (moved from any version it named before)."""
    with mlflow_errors(f"setting alias {alias} of {registered_name} to version {version}"):
        mlflow.MlflowClient().set_registered_model_alias(registered_name, alias, version)
