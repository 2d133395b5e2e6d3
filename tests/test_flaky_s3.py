"""Flaky object storage: a fault-injecting proxy in front of the moto S3 server fails a share of requests.

At 10 % (HTTP 500/503 and dropped connections) ingest, training and evaluation give exactly the results of a
clean run; at 100 % each stops with one line naming the endpoint, in bounded time, with nothing committed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faultproxy import FaultProxy, share_failing
from test_train import _cfg
from test_train_pinning import expected_digest

from ingest.synthetic import Camera, generate
from store import open_store

pytestmark = [pytest.mark.slow, pytest.mark.s3]
CAMS = (
    Camera("cam_f80", 80.0, 96, 64, "kitti", "train"),
    Camera("cam_f140", 140.0, 96, 64, "kitti", "train"),
    Camera("cam_f110", 110.0, 96, 64, "kitti", "val"),
)


def _cli(module: str, *args: str, endpoint: str, timeout: int = 600) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint}
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout, env=env)
    return r, time.time() - t0


def _ingest(src: str, store: str, endpoint: str) -> float:
    """Ingest the generated source through the CLI against `endpoint`; returns the wall time."""
    r, took = _cli(
        "ingest.run",
        "--dataset",
        "synthetic",
        "--src",
        src,
        "--store",
        store,
        "--workers",
        "0",
        "--quiet",
        endpoint=endpoint,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return took


def _rows(url: str) -> list[tuple]:
    cat = open_store(url).catalog(columns=["sample_id", "checksum", "row_key"])
    return list(zip(*(cat[c].to_pylist() for c in cat.column_names), strict=True))


@pytest.mark.timeout(1500)
def test_ten_percent_faults_change_nothing_and_total_faults_fail_clearly(
    tmp_path: Path, s3_endpoint: str, s3_bucket: str, ray_runtime, mlflow_sqlite, monkeypatch
):
    from eval.run import evaluate
    from train.run import train

    generate(str(tmp_path / "src"), 6, cameras=CAMS)
    src = str(tmp_path / "src")
    clean, flaky = f"{s3_bucket}/clean", f"{s3_bucket}/flaky"
    clean_s = _ingest(src, clean, s3_endpoint)
    flaky_proxy = FaultProxy(s3_endpoint, share_failing(0.10, seed=7))
    with flaky_proxy as proxy_url:
        flaky_s = _ingest(src, flaky, proxy_url)
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy_url)  # this process and (forwarded) the Ray workers
        cfg = _cfg(tmp_path, steps=8, log_every=4, checkpoint_every=8, registered_model="flaky")
        out = train(cfg, flaky)
        flaky_eval = evaluate([out["checkpoint"]], flaky, ["synthetic_kitti:val"], tmp_path / "rep-flaky", [])
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    counts = flaky_proxy.counts
    assert counts["failed"] >= 0.05 * (counts["passed"] + counts["failed"]) > 10, counts  # faults were injected
    assert _rows(flaky) == _rows(clean)  # same ids, same bytes, same order
    assert out["samples_digest"] == expected_digest(open_store(clean), cfg, cfg.steps)
    clean_eval = evaluate([out["checkpoint"]], clean, ["synthetic_kitti:val"], tmp_path / "rep-clean", [])
    strip = [{k: v for k, v in row.items() if k != "model"} for row in clean_eval]
    assert [{k: v for k, v in row.items() if k != "model"} for row in flaky_eval] == strip
    print(f"ingest: clean {clean_s:.1f} s, 10 % faults {flaky_s:.1f} s (slowdown x{flaky_s / clean_s:.2f}); {counts}")

    with FaultProxy(s3_endpoint, share_failing(1.0, seed=0)) as dead:
        for module, args in (
            ("ingest.run", ("--dataset", "synthetic", "--src", src, "--store", f"{s3_bucket}/never", "--workers", "0")),
            ("train.run", ("--config", "tiny", "--store", clean)),
            ("eval.run", ("--model", out["checkpoint"], "--store", clean, "--benchmarks", "synthetic_kitti")),
        ):
            r, took = _cli(module, *args, endpoint=dead, timeout=300)
            assert r.returncode == 2, (module, r.stdout[-2000:], r.stderr[-2000:])
            line = r.stderr.strip()
            assert line.count("\n") == 0 and dead in line, (module, line)
            assert took < 120, (module, took)
    import fsspec

    fs = fsspec.filesystem("s3", endpoint_url=s3_endpoint)
    assert not fs.exists(f"{s3_bucket.removeprefix('s3://')}/never/store.json")  # nothing committed
