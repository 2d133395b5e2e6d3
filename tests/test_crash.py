"""kill -9 an ingest at several moments, re-run it each time: exact count, no duplicates, nothing half-written."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest.synthetic import Camera, generate
from store import open_store

N_FRAMES = 48
SHARD = 2


def _start(src: Path, store: Path, workers: int) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "ingest.run",
        "--dataset",
        "kitti",
        "--src",
        str(src),
        "--store",
        str(store),
        "--shard-size",
        str(SHARD),
        "--workers",
        str(workers),
        "--quiet",
    ]
    # Own process group, so the kill reaches Ray's processes too.
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def _parts(store: Path) -> int:
    return len(list((store / "catalog").rglob("*.parquet"))) if (store / "catalog").exists() else 0


def _audit(store: Path) -> int:
    if not (store / "store.json").exists():
        return 0  # killed before the store was created
    s = open_store(str(store))
    n = s.audit(checksums=True)  # raises on duplicate ids, a checksum mismatch or missing arrays
    for row in s.catalog().to_pylist():
        s.read_row(row)  # and every sample decodes
    return n


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kill_dash_nine_at_five_moments(tmp_path: Path):
    cams = (Camera("a", 120.0, 96, 64, "kitti", "train"), Camera("b", 240.0, 96, 64, "kitti", "train"))
    generate(str(tmp_path / "src"), scenes_per_camera=N_FRAMES // 2, cameras=cams)
    src, store = tmp_path / "src" / "kitti", tmp_path / "store"
    # (workers, kill once this many shards are committed, extra delay): in-process runs die inside a
    # shard write; Ray runs die during start-up or with tasks in flight.
    moments = [(0, 0, 0.0), (0, 2, 0.013), (2, 0, 1.5), (0, 6, 0.031), (2, 8, 0.0), (0, 12, 0.007)]
    killed, counts = 0, []
    for workers, after, delay in moments:
        proc = _start(src, store, workers)
        deadline = time.time() + 120
        while _parts(store) < after and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(delay)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            killed += 1
        proc.wait(30)
        counts.append(_audit(store))
    assert killed >= 5, f"only {killed} runs were still going when killed: the kill moments need retuning"
    assert counts == sorted(counts) and counts[-1] < N_FRAMES, counts
    final = _start(src, store, 0)
    out, _ = final.communicate(timeout=300)
    assert final.returncode == 0, out.decode()
    assert _audit(store) == N_FRAMES
    assert "ingested" in out.decode()
    again = _start(src, store, 0)
    out, _ = again.communicate(timeout=120)
    assert f"ingested 0, already present {N_FRAMES}, quarantined 0" in out.decode()
