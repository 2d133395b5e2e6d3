"""A training run pins the catalog version it starts on: an ingest committing meanwhile changes nothing it reads."""

from __future__ import annotations

import hashlib
import shutil
import threading
import time

import mlflow
import pytest
from test_train import _cfg

from ingest.engine import ingest
from ingest.synthetic import Camera, generate
from pipelines import plan_epoch
from store import open_store
from train.run import train

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def expected_digest(store, cfg, steps: int) -> str:
    """The samples digest the loop computes, from the global order of `store`'s catalog version."""
    digest, plans = "", {}
    first = plan_epoch(store, cfg.mix(), cfg.seed, 0, cfg.batch_size)
    for step in range(steps):
        epoch, start = divmod(step, first.steps)
        plan = plans.setdefault(epoch, plan_epoch(store, cfg.mix(), cfg.seed, epoch, cfg.batch_size))
        rows = plan.order.rows[start * cfg.batch_size : (start + 1) * cfg.batch_size]
        ids = plan.rows.take(rows)["sample_id"].to_pylist()
        digest = hashlib.blake2b((digest + "\n".join(ids)).encode(), digest_size=16).hexdigest()
    return digest


def test_ingest_during_a_two_worker_run_changes_nothing_it_reads(tiny_store, ray_runtime, mlflow_sqlite, tmp_path):
    store_url = str(tmp_path / "store")
    shutil.copytree(tiny_store, store_url)
    pinned = open_store(store_url).version
    generate(str(tmp_path / "more"), 6, cameras=(Camera("cam_f95", 95.0, 96, 64, "kitti", "train"),))
    cfg = _cfg(tmp_path, steps=150, log_every=1, checkpoint_every=150, registered_model="pinned")
    out: dict = {}
    runner = threading.Thread(target=lambda: out.update(train(cfg, store_url)))
    runner.start()
    deadline = time.time() + 240
    while time.time() < deadline and runner.is_alive():  # wait until the workers are training
        runs = mlflow.search_runs(experiment_names=[cfg.experiment], filter_string="metrics.loss > 0")
        if len(runs):
            break
        time.sleep(0.5)
    summary = ingest("synthetic", str(tmp_path / "more"), store_url, name="more", workers=0, progress=False)
    committed_during_run = runner.is_alive()
    runner.join(600)
    assert summary.ingested == 6 and committed_during_run, "the ingest must commit while the run trains"
    latest = open_store(store_url)
    assert latest.version > pinned
    assert out["store_version"] == pinned
    run = mlflow.get_run(out["run_id"])
    assert run.data.tags["store_version"] == str(pinned) and run.data.tags["store_uri"] == store_url
    assert out["samples_digest"] == expected_digest(open_store(store_url, version=pinned), cfg, cfg.steps)
    assert out["samples_digest"] != expected_digest(latest, cfg, cfg.steps)  # the new rows would have changed it
