"""Anything with the `infer` shape can be scored: our registered models, runs, checkpoints and baselines.

    load_depth_model("models:/metric-depth@candidate")  # registry: @alias, /version, /latest (any MLflow model URI)
    load_depth_model("models:/m-<model_id>")            # a logged model
    load_depth_model("runs:/<run_id>/model")            # a run's logged model
    load_depth_model("/path/checkpoint.pt")             # a checkpoint file
    load_depth_model("metric3d_v1:/path/official.pth")  # an official Metric3D v1 release file (lineage unknown)
MLflow URIs are resolved by MLflow itself (mlflow.models.get_model_info) against MLFLOW_TRACKING_URI, else
./mlflow.db, which must exist (train.tracking.use_existing_store). Each model comes with the datasets its training
saw and the catalog version it read them from (from the run's lineage in MLflow, or the checkpoint's copy of it),
so reports can say zero-shot or in-domain, and why (eval.domain), without anyone typing it. The network is put on
the device asked for (model.device: auto = CUDA when available).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from model.device import resolve_device

if TYPE_CHECKING:
    import torch


class DepthModel(Protocol):
    def infer(self, rgb: np.ndarray, k_px: tuple[float, float, float, float]) -> dict[str, np.ndarray]: ...


@dataclass
class Loaded:
    """A scorable model and its lineage: training datasets (None: unknown, reported as such) and the store URL and
    catalog version they were read from (None: not recorded; eval.domain then compares with the scored store).
    info: model_config, and for MLflow models model_id (the LoggedModel), registered_model and version (None when
    the logged model is not registered)."""

    name: str
    model: DepthModel
    train_datasets: frozenset[str] | None
    run_id: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    store_uri: str | None = None
    store_version: int | None = None


METRIC3D_V1_SCHEME = "metric3d_v1:"
MLFLOW_SCHEMES = ("models:/", "runs:/")


def _official_metric3d_v1(uri: str, device: torch.device) -> Loaded:
    """An official Metric3D v1 checkpoint, its variant told from its widths; its training sets are not recorded."""
    from model.metric3d_v1 import official_model, read_official_state, variant_of

    path = uri.removeprefix(METRIC3D_V1_SCHEME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--model {uri}: no such official Metric3D v1 checkpoint file")
    state = read_official_state(path)
    model = official_model(state, variant_of(state)).to(device)
    return Loaded(uri, model, None, None, {"model_config": asdict(model.config)})


def _registration(client: Any, run_id: str, model_id: str | None) -> tuple[str | None, str | None]:
    """(registered name, version) of the logged model `model_id`, or (None, None) when it is not registered."""
    if model_id is None:
        return None, None
    versions = [v for v in client.search_model_versions(f"run_id = '{run_id}'") if v.source == f"models:/{model_id}"]
    if not versions:
        return None, None
    first = min(versions, key=lambda v: (v.name, int(v.version)))
    return first.name, str(first.version)


def _from_mlflow(uri: str, device: torch.device) -> Loaded:
    """A logged or registered model: its weights file, and the lineage its training run recorded."""
    import mlflow

    from model.net import load_checkpoint
    from model.pyfunc import WEIGHTS_ARTIFACT
    from train.tracking import mlflow_errors, use_existing_store

    use_existing_store()
    with mlflow_errors(f"--model {uri}"):
        info = mlflow.models.get_model_info(uri)
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri)
        tags = mlflow.get_run(info.run_id).data.tags if info.run_id else {}
        name, version = (
            _registration(mlflow.MlflowClient(), info.run_id, info.model_id) if info.run_id else (None, None)
        )
    artifacts = mlflow.models.Model.load(local).flavors.get("python_function", {}).get("artifacts", {})
    if WEIGHTS_ARTIFACT not in artifacts:
        raise FileNotFoundError(
            f"--model {uri}: holds no {WEIGHTS_ARTIFACT!r} artifact: is it a model train.run logged?"
        )
    model, state = load_checkpoint(os.path.join(local, artifacts[WEIGHTS_ARTIFACT]["path"]))
    seen = frozenset(filter(None, tags.get("train_datasets", "").split(","))) if "train_datasets" in tags else None
    store_version = tags.get("store_version")
    return Loaded(
        uri,
        model.to(device),
        seen,
        info.run_id,
        {
            "model_config": state["model_config"],
            "model_id": info.model_id,
            "registered_model": name,
            "version": version,
        },
        tags.get("store_uri"),
        int(store_version) if store_version is not None else None,
    )


def load_depth_model(uri: str, device: str = "auto") -> Loaded:
    """An MLflow model URI, a checkpoint path or metric3d_v1:PATH -> a scorable model on `device`, with its lineage."""
    target = resolve_device(device)  # first: a missing GPU fails before anything is downloaded
    if uri.startswith(METRIC3D_V1_SCHEME):
        return _official_metric3d_v1(uri, target)
    if uri.startswith(MLFLOW_SCHEMES):
        return _from_mlflow(uri, target)
    if not os.path.isfile(uri):
        raise FileNotFoundError(f"--model {uri}: not a models:/ or runs:/ URI and no such checkpoint file")
    from model.net import load_checkpoint

    model, state = load_checkpoint(uri)
    seen = state.get("train_datasets")
    return Loaded(
        uri,
        model.to(target),
        frozenset(seen) if seen is not None else None,
        None,
        {"model_config": state["model_config"]},
        state.get("store_uri"),
        state.get("store_version"),
    )


@dataclass
class ConstantDepth:
    """Baseline: every pixel at one depth (the median training depth), whatever the image."""

    depth_m: float

    def infer(self, rgb: np.ndarray, k_px: tuple[float, float, float, float]) -> dict[str, np.ndarray]:
        return {"depth_m": np.full(rgb.shape[:2], self.depth_m, np.float32)}


def constant_baseline(store: Any, train_datasets: frozenset[str] | None) -> Loaded:
    """The median of the per-sample median depths of the training rows (all train rows when unknown)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cat = store.catalog(columns=["dataset", "split", "depth_median_m"])
    mask = pc.equal(cat["split"], "train")
    if train_datasets:
        mask = pc.and_(mask, pc.is_in(cat["dataset"].cast("string"), pa.array(sorted(train_datasets))))
    medians = cat.filter(mask)["depth_median_m"].to_numpy()
    medians = medians[np.isfinite(medians)]
    if medians.size == 0:
        raise ValueError("the constant baseline needs train rows with depth in the store")
    value = float(np.median(medians))
    return Loaded(
        f"constant({value:.2f} m)",
        ConstantDepth(value),
        train_datasets,
        None,
        {"depth_m": value},
        store.url,
        store.version,
    )
