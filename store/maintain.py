"""python -m store.maintain URL: compact the catalog, checkpoint its log, remove what no version needs.

Examples:
  python -m store.maintain /data/store --compact                       # few large files: opens in about a second
  python -m store.maintain s3://bucket/store --vacuum --retain-hours 168
--compact rewrites each dataset's small Parquet files into large ones, one commit per dataset (same rows,
same row_key, same order; pinned versions keep their own files), and checkpoints the log. --vacuum deletes Parquet files no version within the retention reads
(compaction leftovers, failed commit attempts, format-1 parts after store.migrate) and Zarr array groups no
catalog row points at (killed or concurrent ingest attempts), both only when older than --retain-hours:
an ingest running now keeps its uncommitted files as long as the retention is longer than its commits take.
Versions older than the retention cannot be opened after a vacuum.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import CommitProperties
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction

from schemas.catalog import CATALOG_COLUMNS, QUARANTINE_COLUMNS
from store import StoreError, open_store
from store.store import Store
from store.table import PARTITION, DeltaRef

COMPACT_ROW_GROUP_ROWS = 131_072
COMPACT_FILE_ROWS = 2_000_000  # ~0.3 GB files: large enough to open fast, small enough to read in parallel
DEFAULT_RETAIN_HOURS = 168.0  # Delta Lake's own default (7 days): long enough for any pinned run to start


@dataclass
class Report:
    """What maintenance did, per table and for the arrays, one line each."""

    lines: list[str] = field(default_factory=list)


def _compact(ref: DeltaRef, name: str, schema: pa.Schema, out: Report) -> None:
    """Rewrite each dataset's files as few large ones, rows in canonical order with their row_key kept, one
    replace-where commit per dataset (pinned versions keep reading their own files until a vacuum).

    The files are written here with Arrow and committed as add actions: delta-rs's own writers (and its
    compact/z_order) spread rows over their output out of order, which would cost every reader a sort."""
    dt = ref.open()
    adds = pa.table(dt.get_add_actions(flatten=True))
    files = Counter(adds[f"partition.{PARTITION}"].to_pylist())
    rewritten = 0
    for dataset in sorted(d for d, n in files.items() if n > 1):
        rows = ref.read(dt, schema, None, (), datasets=[dataset]).cast(schema).drop_columns([PARTITION])
        actions = [
            _write_file(ref, dataset, rows.slice(start, COMPACT_FILE_ROWS))
            for start in range(0, rows.num_rows, COMPACT_FILE_ROWS)
        ]
        props = CommitProperties(max_commit_retries=0, custom_metadata={"metricdepth.operation": "compact"})
        try:
            dt.create_write_transaction(
                actions,
                mode="overwrite",
                schema=schema,
                partition_by=[PARTITION],
                partition_filters=[(PARTITION, "=", dataset)],
                commit_properties=props,
            )
        except CommitFailedError:
            raise StoreError(f"{ref.uri}: another writer committed while compacting {dataset}; run it again") from None
        dt = ref.open()
        rewritten += files[dataset]
    dt.create_checkpoint()
    after = len(ref.open().file_uris())
    out.lines.append(
        f"{name}: compacted {len(adds)} -> {after} files ({rewritten} rewritten), version {dt.version()}, "
        "log checkpointed"
    )


def _write_file(ref: DeltaRef, dataset: str, rows: pa.Table) -> AddAction:
    """One Parquet data file of the table (rows as given, partition column left out as Delta does), and the
    add action that commits it, with the statistics readers order files by."""
    relative = f"{PARTITION}={dataset}/part-compact-{uuid.uuid4().hex}.parquet"
    path = ref.file_path(relative)
    pq.write_table(rows, path, filesystem=ref.filesystem, row_group_size=COMPACT_ROW_GROUP_ROWS, compression="zstd")
    keys = rows["row_key"]
    stats = {
        "numRecords": rows.num_rows,
        "minValues": {"row_key": pc.min(keys).as_py()},
        "maxValues": {"row_key": pc.max(keys).as_py()},
        "nullCount": {"row_key": 0},
    }
    size = ref.filesystem.get_file_info(path).size
    return AddAction(relative, size, {PARTITION: dataset}, int(time.time() * 1000), False, json.dumps(stats))


def _vacuum_table(ref: DeltaRef, name: str, hours: float, out: Report) -> None:
    dt = ref.open()
    removed = dt.vacuum(retention_hours=math.ceil(hours), dry_run=False, enforce_retention_duration=False, full=True)
    out.lines.append(f"{name}: vacuumed {len(removed)} unreferenced files older than {hours:g} h")


def orphan_arrays(store: Store, older_than_s: float) -> list[str]:
    """Zarr groups under arrays/ that no catalog row points at and that were written before `older_than_s`
    (epoch seconds). Rows are only ever added, so what the latest version does not reference, none does."""
    cat = store.catalog(columns=["dataset", "shard"])
    referenced = {
        f"{d}/{s}"
        for d, s in zip(cat["dataset"].cast("string").to_pylist(), cat["shard"].cast("string").to_pylist(), strict=True)
    }
    orphans = []
    for group in sorted(store.fs.glob(f"{store.root}/arrays/*/*.zarr")):
        dataset, shard = group.rsplit("/", 2)[-2], group.rsplit("/", 1)[-1].removesuffix(".zarr")
        if f"{dataset}/{shard}" in referenced:
            continue
        if _modified_s(store, group) < older_than_s:
            orphans.append(group)
    return orphans


def _modified_s(store: Store, group: str) -> float:
    info = store.fs.info(f"{group}/zarr.json")
    stamp = info.get("mtime") or info.get("LastModified") or info.get("created")
    return stamp.timestamp() if hasattr(stamp, "timestamp") else float(stamp)


def maintain(url: str, compact: bool, vacuum: bool, retain_hours: float) -> Report:
    """Compact and/or vacuum the store at `url`; returns what was done."""
    store = open_store(url)
    out = Report()
    if compact:
        _compact(store.catalog_ref, "catalog", CATALOG_COLUMNS, out)
        _compact(store.quarantine_ref, "quarantine", QUARANTINE_COLUMNS, out)
    if vacuum:
        _vacuum_table(store.catalog_ref, "catalog", retain_hours, out)
        _vacuum_table(store.quarantine_ref, "quarantine", retain_hours, out)
        orphans = orphan_arrays(store, time.time() - retain_hours * 3600)
        for group in orphans:
            store.fs.rm(group, recursive=True)
        out.lines.append(f"arrays: removed {len(orphans)} array groups no catalog row points at")
    store.refresh()
    out.lines.append(f"catalog version {store.version}: {store.catalog(columns=['row_key']).num_rows} samples")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m store.maintain", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("store", help="store URL (local path or s3://...)")
    parser.add_argument("--compact", action="store_true", help="rewrite small catalog files into large ones")
    parser.add_argument("--vacuum", action="store_true", help="delete files and arrays no kept version needs")
    parser.add_argument(
        "--retain-hours",
        type=float,
        default=DEFAULT_RETAIN_HOURS,
        help=f"--vacuum keeps anything younger than this (default {DEFAULT_RETAIN_HOURS:g} h)",
    )
    args = parser.parse_args(argv)
    if not (args.compact or args.vacuum):
        parser.error("nothing to do: give --compact and/or --vacuum")
    if args.retain_hours < 0:
        parser.error("--retain-hours must be >= 0")
    try:
        report = maintain(args.store, args.compact, args.vacuum, args.retain_hours)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(report.lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
