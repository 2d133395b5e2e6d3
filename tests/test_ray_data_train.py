"""loader = ray_data: the run reserves CPUs for each rank's Ray Data pipeline beside its Ray Train worker, trains the
samples the in-process loader would, and a runtime too small for that is one line at start, not a hang."""

from __future__ import annotations

import time

import mlflow
import pytest
from test_train_pinning import expected_digest

from store import open_store
from train.config import TrainConfig, load_config
from train.run import main, resource_shortfall, run_resources, train

STEPS = 4
SETS = {"steps": STEPS, "batch_size": 4, "crop_hw": "128,160", "loader": "ray_data", "preview_count": 0}


def _sets(tmp_path, **more) -> list[str]:
    return [f"{k}={v}" for k, v in {**SETS, "storage_path": tmp_path / "ray", **more}.items()]


@pytest.mark.ray
@pytest.mark.slow
def test_a_ray_data_run_finishes_with_the_in_process_samples(tiny_store, ray_runtime, mlflow_sqlite, tmp_path):
    # The session runtime has 2 CPUs: 2 workers x (0.5 train + 0.5 data) fill it exactly.
    halves = {"cpus_per_worker": 0.5, "data_cpus_per_worker": 0.5, "checkpoint_every": STEPS}
    cfg = load_config("tiny", _sets(tmp_path, **halves))
    out = train(cfg, tiny_store)
    assert out["metrics"]["step"] == STEPS
    assert out["samples_digest"] == expected_digest(open_store(tiny_store, version=out["store_version"]), cfg, STEPS)


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_runtime_too_small_is_one_line_at_start(
    tiny_store, ray_runtime, mlflow_sqlite, tmp_path, capsys, monkeypatch
):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # the session's local runtime: it cannot grow
    argv = ["--config", "tiny", "--store", tiny_store, "--verbose"]
    for item in _sets(tmp_path, data_cpus_per_worker=2):
        argv += ["--set", item]
    t0 = time.monotonic()
    assert main(argv) == 2
    assert time.monotonic() - t0 < 60
    assert capsys.readouterr().err == (
        "error: loader=ray_data needs 6 CPUs (2 workers x (1 train + 2 data)); the cluster has 2: add CPUs, or lower "
        "cpus_per_worker / data_cpus_per_worker (e.g. --set cpus_per_worker=0.5 --set data_cpus_per_worker=0.5)\n"
    )
    assert mlflow.search_runs(search_all_experiments=True).empty  # failed before the MLflow run


def test_run_resources():
    assert run_resources(TrainConfig(num_workers=2)) == {"CPU": 2.0, "GPU": 0.0}
    assert run_resources(TrainConfig(num_workers=2, loader="ray_data")) == {"CPU": 4.0, "GPU": 0.0}
    cfg = TrainConfig(num_workers=8, cpus_per_worker=8, data_cpus_per_worker=2, loader="ray_data", use_gpu=True)
    assert run_resources(cfg) == {"CPU": 80.0, "GPU": 8.0}


def test_resource_shortfall_names_the_need_and_the_fix():
    ray_data = TrainConfig(num_workers=2, loader="ray_data")
    assert resource_shortfall(ray_data, {"CPU": 4.0}) is None
    assert resource_shortfall(ray_data, {"CPU": 2.0}) == (
        "loader=ray_data needs 4 CPUs (2 workers x (1 train + 1 data)); the cluster has 2: add CPUs, or lower "
        "cpus_per_worker / data_cpus_per_worker (e.g. --set cpus_per_worker=0.5 --set data_cpus_per_worker=0.5)"
    )
    assert resource_shortfall(TrainConfig(num_workers=2, cpus_per_worker=2), {"CPU": 3.0}) == (
        "training needs 4 CPUs (2 workers x 2); the cluster has 3: add CPUs, or lower cpus_per_worker or "
        "num_workers (e.g. --set cpus_per_worker=1.5)"
    )
    tenths = TrainConfig(num_workers=2, cpus_per_worker=0.1, data_cpus_per_worker=0.2, loader="ray_data")
    assert resource_shortfall(tenths, {"CPU": 0.6}) is None  # 2 x (0.1 + 0.2) is 0.6000000000000001 in floats
    gpu = TrainConfig(num_workers=8, use_gpu=True)
    assert resource_shortfall(gpu, {"CPU": 96.0, "GPU": 4.0}) == (
        "use_gpu needs 8 GPUs (8 workers x 1); the cluster has 4: add GPUs, or --set num_workers=4"
    )
    assert resource_shortfall(gpu, {"CPU": 96.0}).endswith("the cluster has 0: add GPUs, or --set use_gpu=false")


def test_config_checks_loader_and_cpus():
    with pytest.raises(ValueError, match=r"unknown loader 'ray'; valid: inprocess, ray_data$"):
        load_config("tiny", ["loader=ray"])
    with pytest.raises(ValueError, match="data_cpus_per_worker > 0"):
        load_config("tiny", ["data_cpus_per_worker=0"])
    cfg = load_config("tiny", ["cpus_per_worker=0.5", "data_cpus_per_worker=0.25"])
    assert (cfg.cpus_per_worker, cfg.data_cpus_per_worker) == (0.5, 0.25)
