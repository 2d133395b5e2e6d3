"""python -m store.migrate URL: turn a format-1 store (one Parquet part per shard) into format 2 (Delta tables).

The catalog and quarantine parts are read in their old deterministic order (sorted paths) and committed as
one Delta version each; no array is read or rewritten (their bytes, codecs and offsets stay valid). The old
parts stay where they were until `python -m store.maintain URL --vacuum` removes them. A killed migration
is simply run again: a table that already holds its commit is not written twice.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from schemas.catalog import CATALOG_COLUMNS, QUARANTINE_COLUMNS
from store import layout
from store.fs import atomic_write, storage_options_from_env, url_to_fs
from store.table import DeltaRef, arrow_filesystem, delta_options

OPERATION = "migrate_v1"


def _legacy_table(fs, root: str, name: str, schema: pa.Schema, progress: bool) -> pa.Table:
    parts = sorted(fs.glob(layout.legacy_parts(root, name)))
    tables = []
    for path in tqdm(parts, desc=f"read {name} parts", unit="part", disable=not progress):
        part = pq.read_table(path, filesystem=fs, partitioning=None)
        if "time" in schema.names and "time" not in part.column_names:
            stamp = fs.info(path).get("mtime") or fs.info(path).get("LastModified")
            when = datetime.fromtimestamp(stamp, UTC) if isinstance(stamp, (int, float)) else stamp
            part = part.append_column("time", pa.array([when] * part.num_rows, schema.field("time").type))
        part = part.append_column("row_key", pa.array([0] * part.num_rows, pa.int64()))
        if name == "catalog":  # format 1 kept the checksum as hex text; format 2 keeps its 16 bytes
            raw = [bytes.fromhex(h) for h in part["checksum"].to_pylist()]
            part = part.set_column(part.schema.get_field_index("checksum"), "checksum", pa.array(raw, pa.binary(16)))
        tables.append(part.select(schema.names).cast(schema))
    return pa.concat_tables(tables) if tables else schema.empty_table()


def migrate(url: str, progress: bool = True) -> list[str]:
    """Migrate the store at `url` in place; returns what was done, one line per step."""
    options = storage_options_from_env(url)
    fs, root = url_to_fs(url, options)
    path = layout.store_json(root)
    if not fs.exists(path):
        raise FileNotFoundError(f"{url} is not a store (no store.json)")
    found = json.loads(fs.cat_file(path))
    if found.get("version") == layout.FORMAT_VERSION:
        return [f"{url} is already format {layout.FORMAT_VERSION}: nothing to do"]
    if found.get("format") != layout.FORMAT_NAME or found.get("version") not in layout.MIGRATABLE:
        raise ValueError(f"{url}: cannot migrate format {found.get('format')!r} version {found.get('version')!r}")
    dopts = delta_options(url, options)
    base = f"s3://{root}" if url.startswith("s3://") else root
    lines = []
    for name, schema in (("quarantine", QUARANTINE_COLUMNS), ("catalog", CATALOG_COLUMNS)):
        ref = DeltaRef(f"{base}/{name}", dopts, arrow_filesystem(url, dopts))
        dt = ref.create(schema)
        done = any(h.get("metricdepth.operation") == OPERATION for h in dt.history())
        if done:
            lines.append(f"{name}: already migrated (version {dt.version()})")
            continue
        rows = _legacy_table(fs, root, name, schema, progress)
        version = ref.append(dt, rows, {"metricdepth.operation": OPERATION}) if rows.num_rows else dt.version()
        lines.append(f"{name}: {rows.num_rows} rows from format-1 parts -> Delta version {version}")
    atomic_write(fs, path, json.dumps({"format": layout.FORMAT_NAME, "version": layout.FORMAT_VERSION}).encode())
    lines.append(f"{url} is now format {layout.FORMAT_VERSION}; old parts stay until `store.maintain --vacuum`")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m store.migrate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("store", help="store URL (local path or s3://...)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        lines = migrate(args.store, progress=not args.quiet)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
