import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers import make_sample

from store import CorruptSampleError, StoreError, open_store
from store.writer import Rejected, write_shard


def _assert_same(a, b):
    assert np.array_equal(a.rgb, b.rgb)
    assert a.depth_m.dtype == b.depth_m.dtype == np.float32
    assert np.array_equal(a.depth_m, b.depth_m)
    assert np.array_equal(a.valid, b.valid)
    assert a.k_px == b.k_px
    assert a.meta.sample_id == b.meta.sample_id


def _roundtrip(url: str) -> None:
    store = open_store(url, create=True)
    samples = [
        make_sample(24, 32, seed=0, frame="0"),
        make_sample(40, 17, seed=1, frame="1"),
        make_sample(8, 8, seed=2, frame="2", depth_scale=None),
    ]
    write_shard(store, "toy", "train-000000-abc", samples, [Rejected("it", "toy/x", "f.png", "broken", "train")])
    store = open_store(url)
    cat = store.catalog()
    assert cat.num_rows == 3
    assert sorted(cat["depth_codec"].to_pylist()) == ["f32", "u16", "u16"]
    assert set(cat["rgb_codec"].to_pylist()) == {"dzstd"}  # no source bytes given: the lossless payload
    for s in samples:
        _assert_same(store.read(s.meta.sample_id), s)
    for row in cat.to_pylist():  # the range reads fetch exactly what zarr's own API returns
        assert store.read_payloads(row) == store.read_payloads(row, via_zarr=True)
    q = store.quarantine()
    assert q.to_pylist()[0]["reason"] == "broken"


def test_local_roundtrip_is_exact(tmp_path: Path):
    _roundtrip(str(tmp_path / "store"))


@pytest.mark.s3
def test_s3_roundtrip_is_exact(s3_bucket: str):
    _roundtrip(f"{s3_bucket}/store")


def test_mixed_sizes_waste_no_padding(tmp_path: Path):
    store = open_store(str(tmp_path), create=True)
    big, small = make_sample(300, 400, seed=0, frame="a"), make_sample(10, 10, seed=1, frame="b")
    table = write_shard(store, "toy", "s0", [big, small], [], rgb_codec="raw")
    payload = sum(table["rgb_bytes"].to_pylist()) + sum(table["depth_bytes"].to_pylist())
    files = [p for p in (tmp_path / "arrays").rglob("*") if p.is_file()]
    on_disk = sum(p.stat().st_size for p in files)
    # Shard index (16 bytes per element) and metadata only; padding the small image to 300x400 would cost
    # 480 kB of raw rgb.
    assert on_disk - payload < 4096, (on_disk, payload)


@pytest.mark.parametrize("policy", ["auto", "source", "dzstd", "raw"])
def test_every_rgb_policy_round_trips_exactly(tmp_path: Path, policy: str):
    import cv2

    s = make_sample(30, 41, seed=4)
    png = cv2.imencode(".png", cv2.cvtColor(s.rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
    s = replace(s, rgb_source=png, rgb_format="png")
    store = open_store(str(tmp_path), create=True)
    write_shard(store, "toy", "s0", [s], [], rgb_codec=policy)
    assert np.array_equal(open_store(str(tmp_path)).read(s.meta.sample_id).rgb, s.rgb)


def test_flipped_byte_is_reported_not_returned(tmp_path: Path):
    store = open_store(str(tmp_path), create=True)
    s = make_sample(32, 32, seed=3)
    write_shard(store, "toy", "s0", [s], [], rgb_codec="raw")
    shard_files = [p for p in (tmp_path / "arrays").rglob("rgb/c/*") if p.is_file()]
    assert len(shard_files) == 1
    data = bytearray(shard_files[0].read_bytes())
    data[40] ^= 0x01  # inside the first (only) chunk's compressed bytes
    shard_files[0].write_bytes(bytes(data))
    with pytest.raises(CorruptSampleError, match=s.meta.sample_id):
        open_store(str(tmp_path)).read(s.meta.sample_id)


def test_other_format_version_is_refused_naming_both(tmp_path: Path):
    open_store(str(tmp_path), create=True)
    (tmp_path / "store.json").write_text(json.dumps({"format": "metric-depth-store", "version": 99}))
    with pytest.raises(StoreError, match="version 99.*version 2"):
        open_store(str(tmp_path))


def test_missing_store_is_a_clear_error(tmp_path: Path):
    with pytest.raises(StoreError, match="not a store"):
        open_store(str(tmp_path / "nothing"))


def test_unreferenced_arrays_are_invisible(tmp_path: Path):
    store = open_store(str(tmp_path), create=True)
    write_shard(store, "toy", "s0", [make_sample(seed=0)], [])
    # A killed attempt leaves arrays without a catalog part: readers must not see them.
    os.makedirs(tmp_path / "arrays" / "toy" / "s1-dead.zarr")
    assert open_store(str(tmp_path)).catalog().num_rows == 1


def test_summary_lists_datasets_and_quarantine(tmp_path: Path):
    from store.summary import summarise

    store = open_store(str(tmp_path), create=True)
    write_shard(
        store,
        "toy",
        "s0",
        [make_sample(seed=0, frame="a"), make_sample(seed=1, frame="b")],
        [Rejected("it", "toy/x", "f.png", "truncated PNG", "train")],
    )
    lines = summarise(str(tmp_path))
    assert lines[0].endswith("catalog version 1: 2 samples")
    assert any(line.split()[:3] == ["toy", "train", "2"] for line in lines)
    assert "  x1: truncated PNG" in lines
    history = lines[lines.index("catalog history (2 versions, newest first):") + 2 :]
    assert [h.split()[0] for h in history] == ["1", "0"]
    assert history[0].split()[-2:] == ["write_shard", "2"] and history[1].split()[-2:] == ["create_table", "0"]
