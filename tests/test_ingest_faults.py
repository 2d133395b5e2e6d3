"""Input faults are quarantined and the run goes on; storage faults are retried, then stop the run with one
line and are never quarantined; quarantined items can be retried once fixed (their history stays)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faultproxy import FaultProxy
from helpers import metric3d_annotations

from ingest.engine import ingest
from ingest.synthetic import Camera, generate
from store import open_store

CAMS = (Camera("a", 120.0, 64, 48, "kitti", "train"),)


@pytest.mark.real
def test_paths_outside_the_source_in_any_form_are_quarantined(real_root: Path, tmp_path: Path):
    src = tmp_path / "src"
    shutil.copytree(real_root / "metric3d_demo" / "kitti_demo", src)
    good = {"rgb": "rgb/0000000005.png", "depth": "depth/0000000005.png", "cam_in": [707.0, 707.0, 604.0, 180.0]}
    escapes = ["rgb/../../../etc/passwd", "/etc/passwd", "depth/../../../../../etc/hostname", "..\\..\\etc\\passwd"]
    entries = [{**good, "depth_scale": 256.0}] + [
        {**good, "rgb": bad, "depth": f"depth/{i}.png", "depth_scale": 256.0} for i, bad in enumerate(escapes)
    ]
    summary = ingest(
        "metric3d_json", str(metric3d_annotations(src, entries)), str(tmp_path / "s"), workers=0, progress=False
    )
    assert (summary.ingested, summary.quarantined) == (1, len(escapes))
    q = open_store(str(tmp_path / "s")).quarantine().to_pylist()
    # `..` anywhere is refused; an absolute path is looked up as a suffix under the JSON's folder only (the
    # metric3d_json rule for paths that carry their source repository's prefix), so it is simply not found.
    reasons = {r["item"]: r["reason"] for r in q}
    assert sum("escapes the dataset root" in r for r in reasons.values()) == 3, reasons
    assert sum("not found under the annotation file's folder" in r for r in reasons.values()) == 1, reasons
    assert sum(r["file"].endswith(f"(outside {src / 'annotations.json'})") for r in q) >= 3, q


def test_retry_quarantined_commits_what_now_passes_and_keeps_history(tmp_path: Path):
    generate(str(tmp_path / "src"), 4, cameras=CAMS)
    src = tmp_path / "src" / "kitti"
    image = sorted(src.rglob("image_02/data/*.png"))[1]
    good = image.read_bytes()
    image.write_bytes(good[: len(good) // 2])  # one truncated image: an input fault
    store = str(tmp_path / "s")
    first = ingest("kitti", str(src), store, workers=0, progress=False)
    assert (first.ingested, first.quarantined) == (3, 1)
    again = ingest("kitti", str(src), store, workers=0, progress=False)
    assert (again.ingested, again.already_present) == (0, 4)  # a plain re-run leaves the quarantined item
    still = ingest("kitti", str(src), store, workers=0, progress=False, retry_quarantined=True)
    assert (still.ingested, still.quarantined) == (0, 1)  # still missing: a second history row
    image.write_bytes(good)
    fixed = ingest("kitti", str(src), store, workers=0, progress=False, retry_quarantined=True)
    assert (fixed.ingested, fixed.quarantined, fixed.already_present) == (1, 0, 3)
    s = open_store(store)
    assert s.audit(checksums=True) == 4
    q = s.quarantine().to_pylist()
    assert len(q) == 2 and len({r["sample_id"] for r in q}) == 1 and q[0]["time"] <= q[1]["time"]


def _cli(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ingest.run", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.mark.s3
@pytest.mark.slow
def test_storage_faults_stop_the_run_and_are_never_quarantined(tmp_path: Path, s3_endpoint: str, s3_bucket: str):
    import os

    import fsspec

    generate(str(tmp_path / "src"), 3, cameras=CAMS)
    fs = fsspec.filesystem("s3", endpoint_url=s3_endpoint)
    src_url = f"{s3_bucket}-src/kitti"
    fs.mkdir(src_url.removeprefix("s3://").split("/")[0])
    fs.put(str(tmp_path / "src" / "kitti") + "/", src_url.removeprefix("s3://"), recursive=True)
    store = str(tmp_path / "store")

    # Every read of a label PNG (not the listings) answers 503: retried, then the run stops.
    def labels_fail(method: str, path: str) -> str | None:
        key = path.split("?")[0]
        return "503" if method == "GET" and "groundtruth" in key and key.endswith(".png") else None

    broken = FaultProxy(s3_endpoint, labels_fail)
    with broken as url:
        env = {**os.environ, "AWS_ENDPOINT_URL": url, "AWS_MAX_ATTEMPTS": "2"}
        t0 = time.time()
        r = _cli("--dataset", "kitti", "--src", src_url, "--store", store, "--workers", "0", "--quiet", env=env)
        took = time.time() - t0
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip().count("\n") == 0 and "groundtruth" in r.stderr and "still failing" in r.stderr
    assert took < 120
    s = open_store(store)
    assert s.catalog().num_rows == 0 and s.quarantine().num_rows == 0  # nothing quarantined, nothing lost
    r = _cli("--dataset", "kitti", "--src", src_url, "--store", store, "--workers", "0", "--quiet")
    assert r.returncode == 0 and "ingested 3, already present 0, quarantined 0" in r.stdout, r.stdout + r.stderr
