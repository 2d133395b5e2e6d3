"""A training job on a multi-node Ray cluster survives losing the node its workers run on.

A head and a worker node run as separate raylets on loopback; `python -m train.run` is submitted through the
Ray Jobs API, as a user of infra/ submits it; the worker node is killed (no graceful shutdown) after the
first checkpoint and a replacement node joins, as a cluster's autoscaler would bring one. The job finishes
from its last checkpoint with the samples digest of an uninterrupted run and one registered model version.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import mlflow
import pytest
from conftest import free_port
from test_train_pinning import expected_digest

from store import open_store
from train.config import load_config

pytestmark = [pytest.mark.slow, pytest.mark.ray]
STEPS, EVERY = 40, 10


def _checkpoints(storage: Path) -> list[Path]:
    return sorted(storage.glob("*/checkpoint_*")) if storage.exists() else []


@pytest.mark.timeout(900)
def test_node_loss_during_a_submitted_job(tiny_store: str, tmp_path: Path):
    import ray
    from ray.cluster_utils import Cluster
    from ray.job_submission import JobStatus, JobSubmissionClient

    if ray.is_initialized():
        ray.shutdown()  # this test runs its own cluster
    dashboard = free_port()
    # The head takes no training worker (0 CPUs): losing the worker node loses every rank's process.
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": True, "dashboard_port": dashboard},
    )
    worker = cluster.add_node(num_cpus=2)
    storage = tmp_path / "ray"
    sets = {"steps": STEPS, "checkpoint_every": EVERY, "log_every": 5, "crop_hw": "64,96", "storage_path": storage}
    cmd = [sys.executable, "-m", "train.run", "--config", "tiny", "--store", tiny_store]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "HF_HUB_OFFLINE": "1"}
    try:
        client = JobSubmissionClient(f"http://127.0.0.1:{dashboard}")
        job = client.submit_job(entrypoint=" ".join(cmd), runtime_env={"env_vars": env})
        deadline = time.time() + 600
        while not _checkpoints(storage) and time.time() < deadline:
            assert client.get_job_status(job) not in (JobStatus.FAILED, JobStatus.STOPPED), client.get_job_logs(job)
            time.sleep(0.5)
        assert _checkpoints(storage), "no checkpoint was written"
        cluster.remove_node(worker, allow_graceful=False)  # the node is gone: raylet and workers killed
        cluster.add_node(num_cpus=2)  # a replacement joins
        while client.get_job_status(job) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            assert time.time() < deadline, "the job did not finish"
            time.sleep(1)
        logs = client.get_job_logs(job)
        assert client.get_job_status(job) == JobStatus.SUCCEEDED, logs[-3000:]
    finally:
        cluster.shutdown()
    result = json.loads(next(line for line in logs.splitlines() if line.startswith('{"run_id"')))
    cfg = load_config("tiny", [f"{k}={v}" for k, v in sets.items()])
    store = open_store(tiny_store, version=result["store_version"])
    assert result["samples_digest"] == expected_digest(store, cfg, STEPS)  # as an uninterrupted run
    assert "worker group" in logs.lower() or "restart" in logs.lower() or "error count" in logs.lower(), logs[-3000:]
    uri = env["MLFLOW_TRACKING_URI"]
    versions = mlflow.MlflowClient(uri, uri).search_model_versions(f"name = '{cfg.registered_model}'")
    assert len(versions) == 1
