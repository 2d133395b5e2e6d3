"""Anything with the `infer` shape can be scored: our registered models, runs, checkpoints and baselines.

    load_depth_model("models:/metric-depth@latest")   # registry (alias or version)
    load_depth_model("runs:/<run_id>/model")            # a run's logged model
    load_depth_model("/path/checkpoint.pt")             # a checkpoint file
    load_depth_model("metric3d_v1:/path/official.pth")  # an official Metric3D v1 release file (lineage unknown)
Each comes with the datasets its training saw and the catalog version it read them from (from the run's lineage
in MLflow, or the checkpoint's copy of it), so reports can say zero-shot or in-domain, and why (eval.domain),
without anyone typing it.
"""

from __future__ import annotations

import glob
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from model import load_checkpoint


class DepthModel(Protocol):
    def infer(self, rgb: np.ndarray, k_px: tuple[float, float, float, float]) -> dict[str, np.ndarray]: ...


@dataclass
class Loaded:
    """A scorable model and its lineage: training datasets (None: unknown, reported as such) and the store URL and
    catalog version they were read from (None: not recorded; eval.domain then compares with the scored store)."""

    name: str
    model: DepthModel
    train_datasets: frozenset[str] | None
    run_id: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    store_uri: str | None = None
    store_version: int | None = None


def _run_of(uri: str) -> str | None:
    import mlflow

    if uri.startswith("runs:/"):
        return uri.removeprefix("runs:/").split("/", 1)[0]
    name, sep, alias = uri.removeprefix("models:/").partition("@")
    client = mlflow.MlflowClient()
    if sep:
        return client.get_model_version_by_alias(name, alias).run_id
    name, _, version = name.partition("/")
    return client.get_model_version(name, version).run_id


METRIC3D_V1_SCHEME = "metric3d_v1:"


def _official_metric3d_v1(uri: str) -> Loaded:
    """An official Metric3D v1 checkpoint, its variant told from its widths; its training sets are not recorded."""
    from model.metric3d_v1 import official_model, read_official_state, variant_of

    path = uri.removeprefix(METRIC3D_V1_SCHEME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--model {uri}: no such official Metric3D v1 checkpoint file")
    state = read_official_state(path)
    model = official_model(state, variant_of(state))
    return Loaded(uri, model, None, None, {"model_config": asdict(model.config)})


def load_depth_model(uri: str) -> Loaded:
    """A registered model, a run's model, a checkpoint path or metric3d_v1:PATH -> a scorable model with its lineage."""
    if uri.startswith(METRIC3D_V1_SCHEME):
        return _official_metric3d_v1(uri)
    if uri.startswith(("models:/", "runs:/")):
        import mlflow

        local = mlflow.artifacts.download_artifacts(artifact_uri=uri)
        found = glob.glob(os.path.join(local, "**", "checkpoint.pt"), recursive=True)
        if not found:
            raise FileNotFoundError(f"{uri} holds no checkpoint.pt: is it a model logged by train.run?")
        run_id = _run_of(uri)
        tags = mlflow.MlflowClient().get_run(run_id).data.tags
        seen = frozenset(filter(None, tags.get("train_datasets", "").split(","))) if "train_datasets" in tags else None
        version = tags.get("store_version")
        model, state = load_checkpoint(found[0])
        return Loaded(
            uri,
            model,
            seen,
            run_id,
            {"model_config": state["model_config"]},
            tags.get("store_uri"),
            int(version) if version is not None else None,
        )
    if not os.path.isfile(uri):
        raise FileNotFoundError(f"--model {uri}: not a models:/ or runs:/ URI and no such checkpoint file")
    model, state = load_checkpoint(uri)
    seen = state.get("train_datasets")
    return Loaded(
        uri,
        model,
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
