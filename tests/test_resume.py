"""A killed training run resumes: `--resume RUN` continues the same Ray Train run and the same MLflow run from
its last checkpoint, with the sample order of an uninterrupted run; the output stays one progress line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from test_train_pinning import expected_digest

from store import open_store
from train.config import load_config

pytestmark = [pytest.mark.slow, pytest.mark.ray]
STEPS = 40
SETS = {"steps": STEPS, "checkpoint_every": 10, "log_every": 5, "crop_hw": "64,96", "registered_model": "resumed"}


def _cmd(store: str, storage: Path, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "train.run", "--config", "tiny", "--store", store]
    for k, v in {**SETS, "storage_path": storage}.items():
        cmd += ["--set", f"{k}={v}"]
    return cmd + list(extra)


@pytest.mark.timeout(900)
def test_a_killed_run_resumes_with_the_same_samples(tiny_store: str, tmp_path: Path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "RAY_ADDRESS": ""}
    storage = tmp_path / "ray"
    first = subprocess.Popen(
        _cmd(tiny_store, storage, "--run-name", "pre-empted"),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the kill takes its local Ray with it
    )
    deadline = time.time() + 600
    while not list(storage.glob("pre-empted/checkpoint_*")) and first.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    assert first.poll() is None, first.stdout.read().decode()[-3000:]
    os.killpg(first.pid, signal.SIGKILL)  # pre-emption: no shutdown, no final checkpoint
    first.wait(30)
    again = subprocess.run(
        _cmd(tiny_store, storage, "--resume", "pre-empted"), cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    result = json.loads(next(line for line in again.stdout.splitlines() if line.startswith('{"run_id"')))
    cfg = load_config("tiny", [f"{k}={v}" for k, v in {**SETS, "storage_path": storage}.items()])
    assert result["samples_digest"] == expected_digest(
        open_store(tiny_store, version=result["store_version"]), cfg, STEPS
    )
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"], env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name(cfg.experiment).experiment_id])
    assert [r.info.run_id for r in runs] == [result["run_id"]]  # the same MLflow run, continued
    run = runs[0]
    assert run.data.tags["ray_run_name"] == "pre-empted" and run.data.tags["resumed"] == "1"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
    assert steps.count(1) == 1 and max(steps) == STEPS  # continued from a checkpoint, not from step 0
    assert len(client.search_model_versions(f"name = '{cfg.registered_model}'")) == 1
    # Quiet by default: the progress line and the result, none of Ray's per-report or polling lines.
    out = again.stdout + again.stderr
    assert "Reporting training result" not in out and "Failed to query Ray Train Controller" not in out
    assert any(line.startswith("step ") and f"/{STEPS}" in line for line in again.stdout.splitlines()), again.stdout
    assert (
        subprocess.run(
            _cmd(tiny_store, storage, "--resume", "nope"), cwd=tmp_path, env=env, capture_output=True, text=True
        ).returncode
        == 2
    )
