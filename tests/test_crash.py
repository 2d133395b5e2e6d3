"""kill -9 an ingest at several moments, re-run it each time: exact count, no duplicates, nothing half-written.

Commits are batched (2 shards of 2 samples per commit here), so a kill can land with shards' arrays written
but not committed, inside a commit, or in start-up; every table version must stay whole.
"""

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
COMMIT_ROWS = 4


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
        "--commit-rows",
        str(COMMIT_ROWS),
        "--workers",
        str(workers),
        "--quiet",
    ]
    # Own process group, so the kill reaches Ray's processes too.
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def _arrays_written(store: Path) -> int:
    """Shards whose arrays exist (committed or not): the ingest's progress, ahead of its commits."""
    return len(list((store / "arrays").glob("*/*.zarr"))) if (store / "arrays").exists() else 0


def _versions(store: Path) -> list[int]:
    log = store / "catalog" / "_delta_log"
    return sorted(int(p.stem) for p in log.glob("*.json")) if log.exists() else []


def _audit(store: Path) -> int:
    if not (store / "store.json").exists():
        return 0  # killed before the store was created
    latest = open_store(str(store))
    for version in _versions(store):  # every version ever committed is whole, not only the last
        s = latest.at_version(version)
        s.audit(checksums=True)  # raises on duplicate ids, a checksum mismatch or missing arrays
        for row in s.catalog().to_pylist():
            s.read_row(row)  # and every sample decodes
        assert s.catalog().num_rows % COMMIT_ROWS == 0 or version == _versions(store)[-1]
    return latest.catalog().num_rows


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kill_dash_nine_at_five_moments(tmp_path: Path):
    cams = (Camera("a", 120.0, 96, 64, "kitti", "train"), Camera("b", 240.0, 96, 64, "kitti", "train"))
    generate(str(tmp_path / "src"), scenes_per_camera=N_FRAMES // 2, cameras=cams)
    src, store = tmp_path / "src" / "kitti", tmp_path / "store"
    # (workers, kill once this many more shards' arrays are written, extra delay): in-process runs die
    # inside a shard write, with one shard staged and not committed, or inside a commit; Ray runs die
    # during start-up or with tasks in flight.
    moments = [(0, 0, 0.0), (0, 1, 0.0), (2, 0, 1.5), (0, 2, 0.004), (2, 3, 0.0), (0, 3, 0.02)]
    killed, counts = 0, []
    for workers, after, delay in moments:
        proc = _start(src, store, workers)
        deadline, start = time.time() + 120, _arrays_written(store)
        while _arrays_written(store) < start + after and proc.poll() is None and time.time() < deadline:
            time.sleep(0.002)
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
