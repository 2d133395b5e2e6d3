"""The catalog as a Delta table: versions pin rows and order, readers stay fresh, concurrent writers never
commit an id twice, compaction keeps a version's rows, vacuum removes orphans, format 1 migrates."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import make_sample

from ingest.synthetic import Camera, generate
from schemas.catalog import CATALOG_COLUMNS, QUARANTINE_COLUMNS
from store import StoreError, open_store
from store.commit import Committer
from store.maintain import main as maintain_main
from store.migrate import main as migrate_main
from store.writer import Rejected, stage_shard, write_shard


def _samples(start: int, n: int, dataset: str = "toy") -> list:
    return [make_sample(8, 12, seed=i, frame=str(i), dataset=dataset) for i in range(start, start + n)]


def _ids(store) -> list[str]:
    return store.catalog(columns=["sample_id"])["sample_id"].to_pylist()


def test_versions_pin_rows_and_order(tmp_path: Path):
    url = str(tmp_path / "s")
    store = open_store(url, create=True)
    assert store.version == 0 and store.catalog().num_rows == 0
    write_shard(store, "toy", "a", _samples(0, 3), [])
    write_shard(store, "other", "b", _samples(3, 2, "other"), [])
    v1, v2 = 1, 2
    assert open_store(url).version == v2
    first = open_store(url, version=v1)
    assert first.pinned and first.version == v1 and len(_ids(first)) == 3
    write_shard(store, "toy", "c", _samples(5, 2), [])
    assert _ids(open_store(url, version=v2)) == _ids(open_store(url).at_version(v2))  # same rows, same order
    assert len(_ids(open_store(url, version=v2))) == 5 and len(_ids(open_store(url))) == 7
    # A pinned store reads its version's samples; a later sample is not in it.
    late = _samples(5, 1)[0].meta.sample_id
    with pytest.raises(KeyError, match=f"not in catalog version {v2}"):
        open_store(url, version=v2).read(late)
    with pytest.raises(StoreError, match="no catalog version 99 .latest is 3"):
        open_store(url, version=99)


def test_a_long_lived_reader_sees_every_new_version(tmp_path: Path):
    url = str(tmp_path / "s")
    writer = open_store(url, create=True)
    reader = open_store(url)
    assert reader.catalog().num_rows == 0
    write_shard(writer, "toy", "a", _samples(0, 2), [])
    assert reader.catalog().num_rows == 2 and reader.version == 1
    write_shard(writer, "toy", "b", _samples(2, 2), [])
    assert reader.read(_samples(3, 1)[0].meta.sample_id).meta.frame == "3"


def _race(url: str, batches: list[list], rounds: int = 1) -> None:
    """Several committers at once, each with its own store handle, committing overlapping ids."""
    errors = []

    def work(samples):
        try:
            store = open_store(url)
            committer = Committer(store, commit_rows=2)
            for i in range(0, len(samples), 2):
                staged = stage_shard(store, "toy", f"s{i}", samples[i : i + 2], [])
                committer.add(staged.catalog, staged.quarantine)
            committer.close()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def _every_version_unique(url: str) -> int:
    latest = open_store(url)
    for v in range(latest.version + 1):
        ids = _ids(latest.at_version(v))
        assert len(ids) == len(set(ids)), f"version {v} holds an id twice"
    return len(_ids(latest))


def test_concurrent_committers_never_commit_an_id_twice(tmp_path: Path):
    url = str(tmp_path / "s")
    open_store(url, create=True)
    every = _samples(0, 12)
    _race(url, [every, every[4:], every[::-1]])
    assert _every_version_unique(url) == 12


@pytest.mark.s3
def test_concurrent_committers_on_s3(s3_bucket: str):
    url = f"{s3_bucket}/store"
    open_store(url, create=True)
    every = _samples(0, 8)
    _race(url, [every, every[2:]])
    assert _every_version_unique(url) == 8


def _ingest_cmd(src: Path, store: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ingest.run", "--dataset", "kitti", "--src", str(src), "--store", store]


@pytest.mark.slow
@pytest.mark.parametrize("where", ["local", pytest.param("s3", marks=pytest.mark.s3)])
def test_two_ingest_processes_at_once(tmp_path: Path, where: str, request: pytest.FixtureRequest):
    cams = (Camera("a", 120.0, 64, 48, "kitti", "train"), Camera("b", 200.0, 64, 48, "kitti", "val"))
    generate(str(tmp_path / "src"), scenes_per_camera=16, cameras=cams)
    store = str(tmp_path / "store") if where == "local" else f"{request.getfixturevalue('s3_bucket')}/store"
    base = _ingest_cmd(tmp_path / "src" / "kitti", store)
    runs = [
        [*base, "--shard-size", "3", "--commit-rows", "3", "--workers", "0", "--quiet"],
        [*base, "--split", "train", "--limit", "12", "--shard-size", "2", "--commit-rows", "2", "--workers", "0"],
    ]
    procs = [subprocess.Popen(r, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for r in runs]
    outs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert _every_version_unique(store) == 32
    assert open_store(store).version >= 4  # the runs really interleaved many commits


def test_compaction_keeps_every_versions_rows_and_order_and_vacuum_removes_orphans(tmp_path: Path, capsys):
    url = str(tmp_path / "s")
    store = open_store(url, create=True)
    for i in range(6):  # six commits of two datasets: twelve small files
        write_shard(store, "toy", f"t{i}", _samples(2 * i, 2), [Rejected("it", f"toy/bad{i}", "f", "r", "train")])
        write_shard(store, "other", f"o{i}", _samples(100 + i, 1, "other"), [])
    before = open_store(url).catalog().to_pylist()
    pinned_version = open_store(url).version
    orphan = stage_shard(store, "toy", "killed", _samples(50, 1), [])  # arrays written, never committed
    assert maintain_main([url, "--compact"]) == 0
    assert "compacted 12 -> 2 files" in capsys.readouterr().out
    after = open_store(url)
    assert after.version > pinned_version
    for path in (tmp_path / "s" / "catalog").glob("dataset=*/part-compact-*.parquet"):  # written in key order
        keys = pq.read_table(path, columns=["row_key"])["row_key"].to_numpy()
        assert (np.diff(keys) > 0).all()
    assert after.catalog().to_pylist() == before  # latest: same rows, same order
    assert open_store(url, version=pinned_version).catalog().to_pylist() == before  # the pinned version too
    assert maintain_main([url, "--vacuum", "--retain-hours", "0"]) == 0
    out = capsys.readouterr().out
    assert "arrays: removed 1 array groups" in out
    assert not (tmp_path / "s" / "arrays" / "toy" / f"{orphan.catalog['shard'][0].as_py()}.zarr").exists()
    final = open_store(url)
    assert final.catalog().to_pylist() == before
    for row in final.catalog().to_pylist():
        final.read_row(row)  # every committed sample still reads
    assert final.quarantine().num_rows == 6


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def test_format_1_store_migrates_without_touching_arrays(tmp_path: Path):
    """A format-1 store (one Parquet part per shard, as the previous release wrote it) becomes format 2."""
    root = tmp_path / "s"
    store = open_store(str(root), create=True)
    parts = []
    for i, shard in enumerate(("train-000000-aa", "train-000001-bb")):
        staged = stage_shard(
            store, "toy", shard, _samples(3 * i, 3), [Rejected("it", f"toy/q{i}", "f", "bad", "train")]
        )
        parts.append(staged)
        cat = staged.catalog.drop_columns(["row_key"])
        hex_sums = pa.array([c.hex() for c in cat["checksum"].to_pylist()])  # format 1 stored hex text
        cat = cat.set_column(cat.schema.get_field_index("checksum"), "checksum", hex_sums)
        q = staged.quarantine.drop_columns(["row_key", "time"])
        for table, name in ((cat, "catalog"), (q, "quarantine")):
            path = root / name / "dataset=toy" / f"{shard}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path)
    import shutil

    shutil.rmtree(root / "catalog" / "_delta_log")
    shutil.rmtree(root / "quarantine" / "_delta_log")
    (root / "store.json").write_text(json.dumps({"format": "metric-depth-store", "version": 1}))
    arrays = _tree_digest(root / "arrays")
    with pytest.raises(StoreError, match=r"python -m store\.migrate"):
        open_store(str(root))
    assert migrate_main([str(root), "--quiet"]) == 0
    assert migrate_main([str(root), "--quiet"]) == 0  # a second run finds nothing to do
    migrated = open_store(str(root))
    expected = pa.concat_tables([p.catalog for p in parts]).drop_columns(["row_key"])
    assert migrated.catalog().drop_columns(["row_key"]).cast(expected.schema).equals(expected)
    assert migrated.quarantine().num_rows == 2 and migrated.quarantine()["time"].null_count == 0
    for s in _samples(0, 6):
        assert np.array_equal(migrated.read(s.meta.sample_id).depth_m, s.depth_m)
    assert _tree_digest(root / "arrays") == arrays  # not one array byte rewritten


def test_the_catalog_is_an_ordinary_delta_table(tmp_path: Path):
    import duckdb
    import polars as pl
    from deltalake import DeltaTable

    url = str(tmp_path / "s")
    store = open_store(url, create=True)
    write_shard(store, "toy", "a", _samples(0, 3), [])
    write_shard(store, "other", "b", _samples(3, 2, "other"), [])
    ours = open_store(url).catalog().to_pandas().set_index("sample_id")
    by_delta = DeltaTable(f"{url}/catalog").to_pandas().set_index("sample_id")
    by_polars = pl.read_delta(f"{url}/catalog", version=1)
    # DuckDB's own delta extension is a download (absent offline); it scans the table's Arrow dataset instead.
    catalog = DeltaTable(f"{url}/catalog").to_pyarrow_dataset()  # noqa: F841 - DuckDB finds it by name
    counts = dict(duckdb.sql("SELECT dataset, count(*) FROM catalog GROUP BY dataset").fetchall())
    assert sorted(by_delta.index) == sorted(ours.index)
    assert by_polars.height == 3
    assert counts == {"toy": 3, "other": 2}
    assert set(CATALOG_COLUMNS.names) <= set(by_delta.reset_index().columns)
    assert set(QUARANTINE_COLUMNS.names) == set(DeltaTable(f"{url}/quarantine").schema().to_arrow().names)
