"""Sparse depth stored as points (pu16 / pf32): lossless, no larger than the map, and loaded to the same tensors
as the map it replaces, including from stores written before the codec existed."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import training_batches
from pipelines.cstm import plan_transform, splat_points, warp_depth
from schemas.sample import SPARSE_VALID_FRAC
from store import open_store
from store.codecs import (
    DecodeError,
    DepthGrid,
    DepthPoints,
    decode_depth_payload,
    decode_depth_stored,
    depth_from_u16,
    encode_depth,
)
from store.store import Store
from store.writer import write_shard

OLD_STORE = Path(__file__).parent / "fixtures" / "store_format2_u16_sparse"  # written before points existed


def _sparse_u16(rng: np.random.Generator, h: int, w: int, frac: float) -> np.ndarray:
    raw = np.zeros((h, w), np.uint16)
    mask = rng.random((h, w)) < frac
    raw[mask] = rng.integers(1, 65536, int(mask.sum()))
    return raw


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 80),
    w=st.integers(1, 120),
    frac=st.floats(0.0, 0.49),
    scale=st.sampled_from([256.0, 1000.0, 5000.0]),
    seed=st.integers(0, 10_000),
)
def test_sparse_integer_depth_round_trips_bit_exact_and_never_grows(h, w, frac, scale, seed):
    raw = _sparse_u16(np.random.default_rng(seed), h, w, frac)
    depth_m = depth_from_u16(raw, scale)
    encoded, used_scale = encode_depth(depth_m, scale)
    assert used_scale == scale
    sparse = np.count_nonzero(raw) < SPARSE_VALID_FRAC * raw.size  # frac is a probability: count what came out
    assert encoded.codec in (("pu16", "u16") if sparse else ("u16", "du16"))
    back = decode_depth_payload(encoded.codec, encoded.data, h, w, used_scale)
    assert back.dtype == np.float32 and np.array_equal(back, depth_m)
    stored = decode_depth_stored(encoded.codec, encoded.data, h, w, used_scale)
    if encoded.codec == "pu16":
        assert isinstance(stored, DepthPoints)
        assert np.array_equal(stored.index, np.flatnonzero(raw)) and np.array_equal(stored.values, raw[raw > 0])
    from numcodecs import Zstd

    assert len(encoded.data) <= len(Zstd(level=3).encode(raw))  # never more than the u16 map of today


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 60), w=st.integers(1, 90), frac=st.floats(0.0, 0.49), seed=st.integers(0, 10_000))
def test_sparse_float_depth_round_trips_bit_exact(h, w, frac, seed):
    rng = np.random.default_rng(seed)
    depth_m = np.where(rng.random((h, w)) < frac, rng.uniform(0.1, 300.0, (h, w)), 0).astype(np.float32)
    encoded, scale = encode_depth(depth_m, None)
    assert scale == 0.0 and encoded.codec in ("pf32", "f32")  # dense float maps are f32 too
    assert np.array_equal(decode_depth_payload(encoded.codec, encoded.data, h, w, scale), depth_m)


def test_dense_depth_keeps_the_map_codecs():
    raw = _sparse_u16(np.random.default_rng(1), 48, 64, 0.9)
    assert np.count_nonzero(raw) >= SPARSE_VALID_FRAC * raw.size
    encoded, _ = encode_depth(depth_from_u16(raw, 1000.0), 1000.0)
    assert encoded.codec in ("u16", "du16")
    assert isinstance(decode_depth_stored(encoded.codec, encoded.data, 48, 64, 1000.0), DepthGrid)


def test_damaged_points_payload_is_a_decode_error():
    raw = _sparse_u16(np.random.default_rng(2), 40, 50, 0.1)
    encoded, _ = encode_depth(depth_from_u16(raw, 256.0), 256.0)
    assert encoded.codec == "pu16"
    with pytest.raises(DecodeError, match="shorter than its header"):
        decode_depth_stored("pu16", encoded.data[:5], 40, 50, 256.0)
    with pytest.raises(DecodeError):
        decode_depth_stored("pu16", encoded.data[:-7], 40, 50, 256.0)
    with pytest.raises(DecodeError, match="outside"):
        decode_depth_stored("pu16", encoded.data, 10, 10, 256.0)  # indices beyond a smaller map


def _reference_splat(depth: np.ndarray, plan) -> np.ndarray:
    """Every valid pixel moved one at a time to rint((u + 0.5) s - 0.5 - origin), nearest kept, then scaled."""
    h, w = plan.out_hw
    out = np.zeros((h, w), np.float32)
    for v, u in zip(*np.nonzero(depth)):
        x = int(np.rint((u + 0.5) * plan.sx - (0.5 + plan.x0)))
        y = int(np.rint((v + 0.5) * plan.sy - (0.5 + plan.y0)))
        if 0 <= x < w and 0 <= y < h:
            x = w - 1 - x if plan.flip else x
            z = depth[v, u] * np.float32(plan.depth_factor) if plan.depth_factor != 1.0 else depth[v, u]
            out[y, x] = z if out[y, x] == 0 else min(out[y, x], z)
    return out


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(4, 40),
    w=st.integers(4, 60),
    ratio=st.floats(0.3, 2.5),
    crop=st.tuples(st.integers(4, 50), st.integers(4, 70)),
    uv=st.tuples(st.floats(0, 1), st.floats(0, 1)),
    flip=st.booleans(),
    mode=st.sampled_from(["label", "image", "none"]),
    seed=st.integers(0, 10_000),
)
def test_splatting_points_moves_each_point_once_nearest_wins(h, w, ratio, crop, uv, flip, mode, seed):
    raw = _sparse_u16(np.random.default_rng(seed), h, w, 0.3)
    depth = depth_from_u16(raw, 256.0)
    plan = plan_transform((h, w), (50.0, 60.0, w / 2, h / 2), mode, ratio, crop, uv, flip)
    expected = _reference_splat(depth, plan)
    index = np.flatnonzero(depth)
    assert np.array_equal(splat_points(index, depth.ravel()[index], (h, w), plan), expected)
    assert np.array_equal(warp_depth(depth, plan, sparse=True), expected)  # a dense map takes the same path


def test_store_written_before_points_loads_the_same_tensors(tmp_path):
    old = open_store(str(shutil.copytree(OLD_STORE, tmp_path / "old")))
    rows = old.catalog().to_pylist()
    assert {r["depth_codec"] for r in rows} == {"u16"}  # sparse maps as maps: the format before this change
    samples = [old.read(r["sample_id"]) for r in rows]
    new = open_store(str(tmp_path / "new"), create=True)
    write_shard(new, "synthetic_kitti", "train-000000", samples, [])
    new_rows = {r["sample_id"]: r for r in new.catalog().to_pylist()}
    for row in rows:
        rewritten = new_rows[row["sample_id"]]
        # 96x64 maps of ~450 points: the u16 map is the smaller payload here, and is kept (never grows).
        assert rewritten["depth_codec"] in ("pu16", "u16")
        assert rewritten["depth_bytes"] <= row["depth_bytes"]
        assert np.array_equal(new.read_arrays(rewritten)[1], old.read_arrays(row)[1])
    for cstm in ("label", "image", "none"):
        kw = {"batch_size": 2, "crop_hw": (48, 80), "cstm": cstm, "seed": 5}
        pairs = list(zip(training_batches(old, **kw), training_batches(new, **kw), strict=True))
        assert pairs
        for a, b in pairs:
            assert a["sample_id"] == b["sample_id"]
            for field in ("rgb", "depth_c", "valid", "k_px_c", "f_px"):
                assert np.array_equal(a[field].numpy(), b[field].numpy()), field


def test_real_kitti_depth_is_stored_as_points_smaller_than_the_png(real_root):
    from numcodecs import Zstd

    demo = real_root / "metric3d_demo" / "kitti_demo" / "depth"
    paths = sorted(demo.glob("*.png"))
    assert paths, f"no KITTI depth PNGs under {demo}"
    for path in paths:
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        depth_m = depth_from_u16(raw, 256.0)
        encoded, _ = encode_depth(depth_m, 256.0)
        assert encoded.codec == "pu16"
        assert len(encoded.data) < 0.8 * len(Zstd(level=3).encode(raw))  # 0.68-0.69x the u16 map measured
        assert len(encoded.data) < path.stat().st_size
        assert np.array_equal(decode_depth_payload("pu16", encoded.data, *raw.shape, 256.0), depth_m)


class _MapStore(Store):
    """A store whose loader reads sparse depth as a dense map, as every store written before points did."""

    def read_stored(self, row):
        rgb, depth = super().read_stored(row)
        return rgb, DepthGrid(depth.dense(), 0.0) if isinstance(depth, DepthPoints) else depth


def test_real_kitti_points_load_the_tensors_the_dense_map_loads(real_root, tmp_path):
    from bench.fixtures import build
    from ingest.engine import ingest

    ann = build("kitti", tmp_path / "src")
    ingest("metric3d_json", str(ann), str(tmp_path / "store"), split="train", workers=0, progress=False)
    points, maps = open_store(str(tmp_path / "store")), _MapStore(str(tmp_path / "store"))
    assert set(points.catalog(columns=["depth_codec"])["depth_codec"].to_pylist()) == {"pu16"}
    for cstm in ("label", "image", "none"):
        kw = {"batch_size": 1, "crop_hw": (256, 480), "cstm": cstm, "seed": 3}
        pairs = list(zip(training_batches(points, **kw), training_batches(maps, **kw), strict=True))
        assert len(pairs) == 3
        for a, b in pairs:
            assert a["valid"].any()
            for field in ("rgb", "depth_c", "valid", "k_px_c", "f_px"):
                assert np.array_equal(a[field].numpy(), b[field].numpy()), field
