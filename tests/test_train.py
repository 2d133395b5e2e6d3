"""Training on a real local Ray runtime (2 CPU workers, gloo) tracked in a real MLflow store."""

import os
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from train.config import load_config
from train.run import train

pytestmark = [pytest.mark.ray, pytest.mark.slow]
CROP = "64,96"


def _cfg(tmp_path: Path, **overrides):
    sets = [f"{k}={v}" for k, v in {"crop_hw": CROP, "storage_path": str(tmp_path / "ray"), **overrides}.items()]
    return load_config("tiny", sets)


def _epoch_loss(cfg, store: str, weights: dict | None) -> float:
    """The training loss over one epoch of the run's batches, for the model at `weights` (None: as initialised)."""
    from model import build_model, get_model_config
    from model.losses import total_loss
    from pipelines import training_batches

    torch.manual_seed(cfg.seed)  # the initial weights the run started from
    model = build_model(get_model_config(cfg.model_name, cstm=cfg.cstm))
    if weights is not None:
        model.load_state_dict(weights)
    model.eval()
    generator, losses = torch.Generator().manual_seed(0), []
    kw = {"batch_size": cfg.batch_size, "cstm": cfg.cstm, "crop_hw": cfg.crop_hw, "ratio_range": cfg.ratio_range}
    with torch.no_grad():
        for batch in training_batches(store, mix=cfg.mix(), seed=cfg.seed, **kw):
            pred = model(batch["rgb"]).float()
            loss, _ = total_loss(pred, batch["depth_c"], batch["valid"], batch["k_px_c"], dict(cfg.losses), generator)
            losses.append(loss.item())
    return float(np.mean(losses))


def test_overfit_tracks_and_registers(tiny_store, ray_runtime, mlflow_sqlite, tmp_path):
    cfg = _cfg(tmp_path, steps=200, log_every=10, checkpoint_every=200, registered_model="tiny-overfit")
    out = train(cfg, tiny_store)
    client = mlflow.MlflowClient()
    losses = [m.value for m in sorted(client.get_metric_history(out["run_id"], "loss"), key=lambda m: m.step)]
    assert len(losses) == 21  # step 1, then every 10 steps
    state = torch.load(out["checkpoint"], weights_only=True)  # tensors and plain values only
    # Each logged loss is one batch's (0.12-0.70 across these cameras and datasets): the fit is judged on the
    # whole epoch of training batches, trained weights against the same initial weights.
    fitted, initial = _epoch_loss(cfg, tiny_store, state["model"]), _epoch_loss(cfg, tiny_store, None)
    assert fitted <= 0.5 * initial, (fitted, initial)
    run = client.get_run(out["run_id"])
    assert run.data.params["model_name"] == "metric3d_tiny" and run.data.params["steps"] == "200"
    for key in ("samples_per_s", "data_wait_share", "lr", "silog"):
        assert key in run.data.metrics
    assert 0.0 <= run.data.metrics["data_wait_share"] <= 1.0
    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 1 and inputs[0].dataset.name.startswith("catalog-")
    assert run.data.tags["train_datasets"] == "synthetic_kitti,synthetic_nyu"
    artifacts = {a.path for a in client.list_artifacts(out["run_id"])}
    assert {"previews", "lineage"} <= artifacts and "checkpoint" not in artifacts  # weights once, in the model
    assert out["model_uri"] == "models:/tiny-overfit@candidate" and out["version"] == "1"
    assert str(client.get_model_version_by_alias("tiny-overfit", "candidate").version) == "1"
    assert state["train_datasets"] == ["synthetic_kitti", "synthetic_nyu"] and state["step"] == 200
    model = mlflow.pyfunc.load_model(out["model_uri"])
    image = np.random.default_rng(0).integers(0, 255, (1, 64, 96, 3), dtype=np.uint8)
    depth = model.predict({"image": image, "intrinsics": np.array([[80.0, 80.0, 47.5, 31.5]])})
    assert depth.shape == (1, 64, 96) and depth.dtype == np.float32 and (depth > 0).all()
    # Evaluating the registered model reads its lineage from MLflow and logs a linked evaluation run.
    from eval.run import evaluate

    results = evaluate(
        [out["model_uri"]], tiny_store, ["synthetic_kitti:val", "synthetic_nyu"], tmp_path / "rep", [], limit=2
    )
    assert {(r["benchmark"], r["zero_shot"]) for r in results} == {("synthetic_kitti", False), ("synthetic_nyu", False)}
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{out['run_id']}'")
    assert len(children) == 1 and "synthetic_kitti.metric.abs_rel" in children[0].data.metrics


def test_worker_failure_resumes_with_the_same_samples(tiny_store, ray_runtime, mlflow_sqlite, tmp_path):
    base = {"steps": 8, "checkpoint_every": 3, "log_every": 1, "preview_count": 0}
    clean = train(_cfg(tmp_path / "clean", **base), tiny_store)
    drill = train(_cfg(tmp_path / "drill", **base, fail_at_step=5), tiny_store)
    assert (tmp_path / "drill" / "ray").exists()
    marker = list((tmp_path / "drill" / "ray").rglob("failed-once"))
    assert len(marker) == 1, "the drill did not fail a worker"
    assert drill["samples_digest"] == clean["samples_digest"]
    assert drill["metrics"]["step"] == clean["metrics"]["step"] == 8


@pytest.mark.s3
def test_against_mlflow_server_and_s3_store(tiny_store, ray_runtime, mlflow_server, s3_bucket, tmp_path):
    import s3fs

    url = f"{s3_bucket}/store"
    fs = s3fs.S3FileSystem(endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    fs.put(tiny_store, url.removeprefix("s3://"), recursive=True)
    out = train(_cfg(tmp_path, steps=4, checkpoint_every=4, log_every=2, preview_count=1), url)
    run = mlflow.MlflowClient(mlflow_server).get_run(out["run_id"])
    assert run.data.tags["store_uri"] == url and "loss" in run.data.metrics
    model = mlflow.pyfunc.load_model(out["model_uri"])
    depth = model.predict({"image": np.zeros((1, 32, 48, 3), np.uint8), "intrinsics": np.array([[40.0, 40, 24, 16]])})
    assert depth.shape == (1, 32, 48)
