"""Catalog scale: an 8,000,000-row catalog of 11 datasets of very different sizes, written through the
real commit path (shards of the ingest's default 64 rows, committed by store.commit.Committer with its
default batching), locally and on an S3 endpoint (a moto server on loopback that this bench starts).

    python -m bench.catalog_scale [--rows 8000000] [--dir /tmp/catalog-8m] [--s3]

Writes the catalog (once; reused when present), then in fresh processes: open the latest version's loader
columns through Store.catalog, build one epoch's balanced order, slice one rank's batch at global step
1,000,000 (global batch 192, 8 ranks); load every column; then `store.maintain --compact` and open again.
Goals: open <= 5 s locally, <= 30 s on S3, <= 2 s after compaction; order <= 10 s; peak RSS <= 2 GB.
"""

from __future__ import annotations

import argparse
import binascii
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ingest.engine import DEFAULT_SHARD_SIZE
from schemas.catalog import CATALOG_COLUMNS
from store import open_store
from store.commit import Committer

# Metric3D's training mix, in proportion (taskonomy and argoverse2 dominate; pandaset and dsec are tiny).
SHARES = {
    "taskonomy": 4472,
    "argoverse2": 2856,
    "mapillary_psd": 742,
    "drivingstereo": 176,
    "lyft": 158,
    "uasol": 136,
    "cityscapes": 135,
    "diml": 122,
    "ddad": 74,
    "pandaset": 38,
    "dsec": 21,
}
BATCH_ROWS = 16_384  # generated at once, then handed to the committer as 64-row shards


def _sizes(total: int) -> dict[str, int]:
    w = np.array(list(SHARES.values()), np.float64)
    sizes = np.floor(total * w / w.sum()).astype(int)
    sizes[0] += total - sizes.sum()
    return dict(zip(SHARES, sizes.tolist()))


def _hex_ids(rng: np.random.Generator, n: int, n_bytes: int = 8) -> pa.Array:
    """n random hex strings of 2 * n_bytes characters (8 bytes: a sample id's digest)."""
    raw = binascii.hexlify(rng.bytes(n_bytes * n))
    return pa.array(np.frombuffer(raw, dtype=f"S{2 * n_bytes}")).cast(pa.string())


def _part(rng: np.random.Generator, dataset: str, n: int, part: int) -> pa.Table:
    ids = pc.binary_join_element_wise(pa.scalar(f"{dataset}/train/"), _hex_ids(rng, n), "")
    f = rng.uniform(500, 2200, n)
    cols = {
        "sample_id": ids,
        "dataset": pa.array([dataset] * n),
        "split": pa.array(["train"] * n),
        "scene": pc.binary_join_element_wise(pa.scalar("scene_"), pa.array((np.arange(n) // 80).astype(str)), ""),
        "frame": pa.array((np.arange(n) % 80).astype(str)),
        "camera": pa.array(["cam"] * n),
        "sensor": pa.array(["lidar"] * n),
        "source_uris": pa.array([[f"s3://datasets/{dataset}/part{part}/frame.jpg"]] * n),
        "adapter": pa.array([dataset] * n),
        "adapter_version": pa.array(np.ones(n, np.int32)),
        "height": pa.array(np.full(n, 1080, np.int32)),
        "width": pa.array(np.full(n, 1920, np.int32)),
        "fx": f,
        "fy": f,
        "cx": np.full(n, 960.0),
        "cy": np.full(n, 540.0),
        "valid_frac": rng.uniform(0, 1, n),
        "depth_min_m": rng.uniform(0.5, 2, n),
        "depth_median_m": rng.uniform(2, 30, n),
        "depth_max_m": rng.uniform(30, 200, n),
        "rgb_codec": pa.array(["jpeg"] * n),
        "depth_codec": pa.array(["u16"] * n),
        "depth_scale": np.full(n, 256.0),
        "shard": pa.array([f"train-{part:06d}-x-y"] * n),
        "index": pa.array((np.arange(n) % 64).astype(np.int32)),
        "rgb_offset": np.zeros(n, np.int64),
        "rgb_bytes": np.full(n, 500_000, np.int64),
        "depth_offset": np.zeros(n, np.int64),
        "depth_bytes": np.full(n, 100_000, np.int64),
        "checksum": pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), n, [None, pa.py_buffer(rng.bytes(16 * n))]),
        "row_key": np.zeros(n, np.int64),  # set by the commit
    }
    return pa.table(cols, schema=CATALOG_COLUMNS)


def generate(url: str, total: int) -> dict:
    """Every row through Committer.add in 64-row shards (one ingest per dataset, as a user would run them)."""
    store = open_store(url, create=True, create_bucket=True)
    rng = np.random.default_rng(0)
    t0, commits = time.perf_counter(), 0
    for dataset, n in _sizes(total).items():
        committer = Committer(store)
        for part, start in enumerate(range(0, n, BATCH_ROWS)):
            table = _part(rng, dataset, min(BATCH_ROWS, n - start), part)
            for i in range(0, table.num_rows, DEFAULT_SHARD_SIZE):
                committer.add(table.slice(i, DEFAULT_SHARD_SIZE))
        commits += len(committer.close().versions)
        store.refresh()
    return {"write_s": time.perf_counter() - t0, "commits": commits, "version": store.version}


def measure(root: str) -> dict:
    """Run in a fresh process so peak memory is this work's alone."""
    from pipelines.sampling import epoch_order, rank_positions, rows_at, steps_per_epoch
    from store.store import READ_COLUMNS, READ_TYPES

    store = open_store(root)
    t0 = time.perf_counter()
    table = store.catalog(columns=READ_COLUMNS, types=READ_TYPES)
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    order = epoch_order(table, seed=0, epoch=0)
    t_order = time.perf_counter() - t0
    batch, world, step = 192, 8, 1_000_000
    steps = steps_per_epoch(order, batch)
    epoch, in_epoch = divmod(step, steps)
    order = epoch_order(table, seed=0, epoch=epoch)
    t0 = time.perf_counter()
    rows = rows_at(table, order.rows[rank_positions(in_epoch, batch, 3, world)])
    t_slice = time.perf_counter() - t0
    peak_loader_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    t0 = time.perf_counter()
    store.audit()
    t_audit = time.perf_counter() - t0
    t0 = time.perf_counter()
    whole = store.catalog()
    t_whole = time.perf_counter() - t0
    return {
        "audit_unique_ids_s": t_audit,
        "rows": table.num_rows,
        "load_s": t_load,
        "order_s": t_order,
        "slice_s": t_slice,
        "slice_rows": len(rows),
        "epoch_of_step": epoch,
        "peak_gb_loader_columns": peak_loader_gb,
        "load_every_column_s": t_whole,
        "every_column_gb_in_arrow": whole.nbytes / 1e9,
        "peak_gb_after_every_column": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    }


def _measure(url: str, env: dict | None = None) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.catalog_scale", "--dir", url, "--measure-only"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _report(label: str, r: dict) -> None:
    print(
        f"{label}: rows {r['rows']}: open {r['load_s']:.2f} s, order {r['order_s']:.2f} s (goal 10), "
        f"slice {r['slice_s'] * 1000:.1f} ms (goal 100), peak {r['peak_gb_loader_columns']:.2f} GB (goal 2); "
        f"every column {r['load_every_column_s']:.2f} s, {r['every_column_gb_in_arrow']:.2f} GB in Arrow, "
        f"peak {r['peak_gb_after_every_column']:.2f} GB"
    )


def _moto() -> tuple[subprocess.Popen, dict]:
    import shutil
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    return proc, {**env, "AWS_ENDPOINT_URL": url}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=8_000_000)
    parser.add_argument("--dir", default="/tmp/catalog-8m")
    parser.add_argument("--s3", action="store_true", help="also write and open it on a loopback moto S3 server")
    parser.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_only:
        print(json.dumps(measure(args.dir)))
        return
    root = Path(args.dir)
    if not (root / "store.json").exists():
        w = generate(str(root), args.rows)
        print(f"wrote {args.rows} rows in {w['write_s']:.1f} s: {w['commits']} commits, version {w['version']}")
    _report("local", _measure(str(root)))
    if args.s3:
        proc, env = _moto()
        try:
            os.environ.update(env)
            w = generate("s3://bench-catalog/store", args.rows)
            print(f"s3: wrote {args.rows} rows in {w['write_s']:.1f} s: {w['commits']} commits")
            _report("s3 (moto, loopback)", _measure("s3://bench-catalog/store", {**os.environ, **env}))
        finally:
            proc.terminate()
    from store.maintain import maintain

    t0 = time.perf_counter()
    print("\n".join(maintain(str(root), compact=True, vacuum=False, retain_hours=168.0).lines))
    print(f"compacted in {time.perf_counter() - t0:.1f} s")
    _report("local, compacted", _measure(str(root)))


if __name__ == "__main__":
    main()
