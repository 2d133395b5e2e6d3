"""Bad input: each bad sample is quarantined with the file and the reason; the run goes on."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import kitti_tree, metric3d_annotations
from PIL import Image

from ingest.engine import ingest
from store import open_store


@pytest.mark.real
def test_bad_inputs_are_quarantined_with_reasons(real_root: Path, tmp_path: Path):
    demo = real_root / "metric3d_demo" / "kitti_demo"
    src = tmp_path / "src"
    shutil.copytree(demo, src)
    good = {
        "rgb": "rgb/0000000005.png",
        "depth": "depth/0000000005.png",
        "cam_in": [707.0, 707.0, 604.0, 180.0],
        "depth_scale": 256.0,
    }
    png = (demo / "rgb" / "0000000050.png").read_bytes()
    (src / "rgb" / "truncated.png").write_bytes(png[: len(png) // 2])
    Image.fromarray(np.full((375, 1242), 7, np.uint8)).save(src / "depth" / "eight_bit.png")
    Image.fromarray(np.full((100, 100), 700, np.uint16)).save(src / "depth" / "small.png")
    for copy in ("scale_zero", "focal_zero"):  # distinct label files: each entry is its own sample
        shutil.copy(demo / "depth" / "0000000005.png", src / "depth" / f"{copy}.png")
    entries = [
        good,
        {**good, "rgb": "rgb/truncated.png"},
        {**good, "depth": "depth/eight_bit.png"},
        {**good, "depth": "depth/scale_zero.png", "depth_scale": 0.0},  # 0/0 and x/0: NaN and inf depth
        {**good, "depth": "depth/small.png"},
        {**good, "depth": "depth/focal_zero.png", "cam_in": [0.0, 0.0, 604.0, 180.0]},
        {**good, "rgb": "../../../../etc/passwd"},
        {**good, "rgb": "rgb/missing.png"},
    ]
    summary = ingest(
        "metric3d_json", str(metric3d_annotations(src, entries)), str(tmp_path / "store"), workers=0, progress=False
    )
    assert (summary.ingested, summary.quarantined) == (1, 7)
    q = {r["item"]: r for r in open_store(str(tmp_path / "store")).quarantine().to_pylist()}
    reasons = sorted(r["reason"] for r in q.values())
    expected_fragments = [
        "truncated PNG",
        "single-channel uint16",
        "non-finite",
        "sizes differ",
        "focal must be > 0",
        "escapes the dataset root",
        "not found",
    ]
    for fragment in expected_fragments:
        assert any(fragment in r for r in reasons), (fragment, reasons)
    files = {r["file"] for r in q.values()}
    assert any(f.endswith("rgb/truncated.png") for f in files)
    assert any(f.endswith("depth/eight_bit.png") for f in files)


@pytest.mark.real
def test_missing_calibration_is_quarantined(real_root: Path, tmp_path: Path):
    src = kitti_tree(real_root, tmp_path / "kitti")
    (src / "2011_10_03" / "calib_cam_to_cam.txt").unlink()
    s = ingest("kitti", str(src), str(tmp_path / "store"), workers=0, progress=False)
    assert (s.ingested, s.quarantined) == (0, 3)
    q = open_store(str(tmp_path / "store")).quarantine().to_pylist()
    assert all(r["file"].endswith("calib_cam_to_cam.txt") and r["reason"] == "file not found" for r in q)
    # A re-run does not quarantine the same inputs twice.
    s = ingest("kitti", str(src), str(tmp_path / "store"), workers=0, progress=False)
    assert (s.ingested, s.quarantined, s.already_present) == (0, 0, 3)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ingest.run", *args], capture_output=True, text=True, timeout=120)


def test_cli_wrong_dataset_is_one_clear_line(tmp_path: Path):
    r = _cli("--dataset", "kitty", "--src", str(tmp_path), "--store", str(tmp_path / "s"))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0
    assert "unknown dataset adapter 'kitty'" in r.stderr and "kitti" in r.stderr


def test_cli_unreadable_src(tmp_path: Path):
    r = _cli("--dataset", "kitti", "--src", str(tmp_path / "nope"), "--store", str(tmp_path / "s"))
    assert r.returncode == 2 and "cannot read --src" in r.stderr and r.stderr.strip().count("\n") == 0


def test_cli_store_of_another_version(tmp_path: Path):
    store = tmp_path / "s"
    store.mkdir()
    (store / "store.json").write_text(json.dumps({"format": "metric-depth-store", "version": 0}))
    r = _cli("--dataset", "kitti", "--src", str(tmp_path), "--store", str(store), "--workers", "0")
    assert r.returncode == 2 and "version 0" in r.stderr and r.stderr.strip().count("\n") == 0


def test_cli_list_shows_every_adapter_with_a_description():
    r = _cli("--list")
    assert r.returncode == 0
    names = {line.split()[0] for line in r.stdout.splitlines()}
    assert {"kitti", "nyu", "metric3d_json", "synthetic"} <= names


@pytest.mark.ray
def test_cli_ray_ingest_from_a_folder_holding_a_store_named_store(tmp_path: Path):
    """Ray workers import the project even when the working directory has a `store/` folder (a data store)."""
    from ingest.synthetic import Camera, generate

    generate(str(tmp_path / "src"), 2, cameras=(Camera("a", 100.0, 64, 48, "kitti", "train"),))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "ingest.run",
            "--dataset",
            "synthetic",
            "--src",
            "src",
            "--store",
            "store",
            "--workers",
            "2",
            "--shard-size",
            "1",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ingested 2, already present 0, quarantined 0" in r.stdout
