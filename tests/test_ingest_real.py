"""Real samples through the real adapters: statistics equal an independent decode of the same files."""

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import kitti_tree, nyu_tree
from PIL import Image

from ingest.engine import ingest
from store import open_store


def _independent_stats(depth_png: Path, scale: float) -> dict:
    raw = np.asarray(Image.open(depth_png)).astype(np.float64)  # PIL, not the code under test
    d = raw / scale
    v = d[d > 0]
    return {
        "valid_frac": v.size / d.size,
        "depth_min_m": v.min(),
        "depth_median_m": float(np.median(v)),
        "depth_max_m": v.max(),
    }


def _check_stats(store, folder: Path, scale: float, expected_rows: int):
    cat = store.catalog().to_pylist()
    assert len(cat) == expected_rows
    for row in cat:
        # Adapters list files as rgb, depth, then anything else (calibration).
        name = Path(row["source_uris"][1]).name
        want = _independent_stats(folder / "depth" / name, scale)
        for k, v in want.items():
            assert row[k] == pytest.approx(v, rel=1e-6), (name, k)
        sample = store.read(row["sample_id"])
        raw = np.asarray(Image.open(folder / "depth" / name))
        assert np.array_equal(sample.depth_m, (raw.astype(np.float32) / np.float32(scale)))
        rgb_file = folder / "rgb" / Path(row["source_uris"][0]).name
        assert sample.rgb.shape == np.asarray(Image.open(rgb_file).convert("RGB")).shape


@pytest.mark.real
def test_metric3d_json_kitti_demo(real_root: Path, tmp_path: Path):
    folder = real_root / "metric3d_demo" / "kitti_demo"
    s = ingest("metric3d_json", str(folder / "test_annotations.json"), str(tmp_path), workers=0, progress=False)
    assert (s.ingested, s.quarantined) == (3, 0)
    store = open_store(str(tmp_path))
    _check_stats(store, folder, 256.0, 3)
    row = store.catalog().to_pylist()[0]
    assert (row["fx"], row["fy"], row["cx"], row["cy"]) == (707.0493, 707.0493, 604.0814, 180.5066)
    assert row["split"] == "test" and row["sensor"] == "lidar" and row["dataset"] == "metric3d_json"
    again = ingest("metric3d_json", str(folder / "test_annotations.json"), str(tmp_path), workers=0, progress=False)
    assert (again.ingested, again.already_present) == (0, 3)


@pytest.mark.real
def test_metric3d_json_nyu_demo(real_root: Path, tmp_path: Path):
    folder = real_root / "metric3d_demo" / "nyu_demo"
    s = ingest(
        "metric3d_json",
        str(folder / "test_annotations.json"),
        str(tmp_path),
        name="nyu_demo",
        workers=0,
        progress=False,
    )
    assert s.ingested == 3
    _check_stats(open_store(str(tmp_path)), folder, 1000.0, 3)


@pytest.mark.real
@pytest.mark.s3
def test_metric3d_json_to_s3(real_root: Path, s3_bucket: str):
    folder = real_root / "metric3d_demo" / "kitti_demo"
    url = f"{s3_bucket}/store"
    s = ingest("metric3d_json", str(folder / "test_annotations.json"), url, workers=0, progress=False)
    assert s.ingested == 3
    _check_stats(open_store(url), folder, 256.0, 3)


@pytest.mark.real
def test_kitti_native_tree(real_root: Path, tmp_path: Path):
    src = kitti_tree(real_root, tmp_path / "kitti")
    s = ingest("kitti", str(src), str(tmp_path / "store"), workers=0, progress=False)
    assert (s.ingested, s.quarantined) == (3, 0)
    store = open_store(str(tmp_path / "store"))
    rows = store.catalog().to_pylist()
    assert {r["split"] for r in rows} == {"val"}
    assert {(r["fx"], r["fy"], r["cx"], r["cy"]) for r in rows} == {(707.0493, 707.0493, 604.0814, 180.5066)}
    # PNG sources are transcoded to the lossless delta+zstd payload when it is no larger than 1.1x the PNG;
    # KITTI's sparse lidar depth (~20 % valid) is kept as points.
    assert {r["rgb_codec"] for r in rows} == {"dzstd"} and {r["depth_codec"] for r in rows} == {"pu16"}
    for r in rows:
        png = Path(r["source_uris"][0]).stat().st_size
        assert r["rgb_bytes"] <= 1.1 * png
    _check_stats(store, real_root / "metric3d_demo" / "kitti_demo", 256.0, 3)


@pytest.mark.real
def test_kitti_eigen_test_list(real_root: Path, tmp_path: Path):
    src = kitti_tree(real_root, tmp_path / "kitti")
    lines = [
        f"2011_10_03/2011_10_03_drive_0034_sync/image_02/data/{n}.png "
        f"2011_10_03_drive_0034_sync/proj_depth/groundtruth/image_02/{n}.png 707.0493"
        for n in ("0000000005", "0000000050")
    ]
    lines.append("2011_10_03/2011_10_03_drive_0034_sync/image_02/data/0000000001.png None 707.0493")
    (src / "eigen_test_files_with_gt.txt").write_text("\n".join(lines) + "\n")
    s = ingest("kitti", str(src), str(tmp_path / "store"), split="test", workers=0, progress=False)
    assert (s.ingested, s.quarantined) == (2, 0)


@pytest.mark.real
def test_nyu_native_trees(real_root: Path, tmp_path: Path):
    src = nyu_tree(real_root, tmp_path / "nyu")
    s = ingest("nyu", str(src), str(tmp_path / "store"), workers=0, progress=False)
    assert (s.ingested, s.quarantined) == (3, 0)
    rows = open_store(str(tmp_path / "store")).catalog().to_pylist()
    assert sorted(r["split"] for r in rows) == ["test", "train", "train"]
    assert rows[0]["rgb_codec"] == "jpeg"
    _check_stats(open_store(str(tmp_path / "store")), real_root / "metric3d_demo" / "nyu_demo", 1000.0, 3)


def test_synthetic_generates_and_ingests(tmp_path: Path):
    from ingest.synthetic import Camera, generate

    cams = (Camera("a", 100.0, 64, 48, "kitti", "train"), Camera("b", 300.0, 64, 48, "kitti", "val"))
    manifest = generate(str(tmp_path / "src"), scenes_per_camera=2, cameras=cams)
    assert manifest["counts"] == {"kitti/train/a": 2, "kitti/val/b": 2}
    s = ingest("synthetic", str(tmp_path / "src"), str(tmp_path / "store"), workers=0, progress=False)
    assert (s.ingested, s.quarantined) == (4, 0)
    rows = open_store(str(tmp_path / "store")).catalog().to_pylist()
    assert {r["dataset"] for r in rows} == {"synthetic_kitti"}
    assert sorted({r["fx"] for r in rows}) == [100.0, 300.0]
    assert all(r["sensor"] == "synthetic" and 0 < r["valid_frac"] < 0.3 for r in rows)
    assert json.loads((tmp_path / "src" / "synthetic.json").read_text())["seed"] == 0


def test_synthetic_depth_is_exact_geometry():
    """A flat ground seen by a level camera: z = f * h / (v - cy) on every ground pixel."""
    from ingest.synthetic import Camera, render

    cam = Camera("a", 200.0, 64, 48, "kitti", "train")
    _, depth = render(cam, seed=5, indoor=False)
    assert depth.dtype == np.float32 and (depth >= 0).all()
    # Pixels above the horizon see sky (or a cube): the top row is never ground.
    rng = np.random.default_rng(5)
    cam_h = rng.uniform(1.4, 1.8)
    v = 47
    cy = (48 - 1) / 2
    row = depth[v]
    ground = np.isclose(row, 200.0 * cam_h / (v - cy), rtol=1e-5)
    assert ground.sum() > 0
