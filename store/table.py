"""The catalog and the quarantine as Delta Lake tables: settings, creation, snapshot reads, conditional commits.

Everything that knows delta-rs lives here. A commit lands on exactly the version after the one its writer
checked (`max_commit_retries=0`): when another writer got there first, the commit fails, the writer catches
up on what that writer added and checks again. That is how "no sample id twice in any version" holds with
no lock service, locally and on S3 (delta-rs commits there with conditional writes).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from store.fs import StorageUnavailable, retry_io

# row_key = (commit version << 32) + position in that commit: the canonical order of a version's rows.
ROW_KEY_SHIFT = 32
PARTITION = "dataset"


class TableIOError(StorageUnavailable):
    """The table's storage did not answer after the retries: a transient fault, never quarantined."""


def delta_options(url: str, storage_options: dict[str, Any]) -> dict[str, str]:
    """delta-rs settings from the store's fsspec/s3fs options and the environment (endpoint, region, keys when
    given explicitly; otherwise delta-rs takes credentials from the node's own chain)."""
    if not url.startswith("s3://"):
        return {}
    client = storage_options.get("client_kwargs") or {}
    endpoint = (
        storage_options.get("endpoint_url")
        or client.get("endpoint_url")
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
    )
    region = client.get("region_name") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    out = {"AWS_REGION": region or "us-east-1"}
    if endpoint:
        out["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            out["AWS_ALLOW_HTTP"] = "true"
    for key, name in (
        ("key", "AWS_ACCESS_KEY_ID"),
        ("secret", "AWS_SECRET_ACCESS_KEY"),
        ("token", "AWS_SESSION_TOKEN"),
    ):
        if storage_options.get(key):
            out[name] = str(storage_options[key])
    return out


def arrow_filesystem(url: str, options: dict[str, str]) -> pafs.FileSystem:
    """A pyarrow filesystem for reading the table's Parquet files with Arrow's own threaded readers."""
    if not url.startswith("s3://"):
        return pafs.LocalFileSystem()
    endpoint = options.get("AWS_ENDPOINT_URL")
    kwargs: dict[str, Any] = {"region": options["AWS_REGION"]}
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        kwargs |= {"endpoint_override": host, "scheme": scheme}
    if "AWS_ACCESS_KEY_ID" in options:
        kwargs |= {
            "access_key": options["AWS_ACCESS_KEY_ID"],
            "secret_key": options.get("AWS_SECRET_ACCESS_KEY"),
            "session_token": options.get("AWS_SESSION_TOKEN"),
        }
    return pafs.S3FileSystem(**kwargs)


def _retrying(
    what: str, fn: Callable[[], Any], attempts: int = 6, first_wait_s: float = 0.2, invalid_is_transient: bool = False
) -> Any:
    """Transient storage faults (timeouts, throttling, resets: delta-rs raises its object-store errors as
    OSError) are retried with exponential backoff; then one clear error naming what failed.
    `invalid_is_transient`: the files read are committed and immutable, so a file that reads as invalid
    (an empty body after a reset connection: "Parquet file size is 0 bytes") is a transport fault too."""
    retried: tuple[type[BaseException], ...] = (OSError, pa.ArrowInvalid) if invalid_is_transient else (OSError,)

    def transient(exc: BaseException) -> bool:
        return isinstance(exc, retried) and not isinstance(exc, (TableNotFoundError, CommitFailedError))

    return retry_io(what, fn, attempts, first_wait_s, error=TableIOError, transient=transient)


@dataclass
class DeltaRef:
    """Where one table lives (URI + delta-rs options) and how to read its Parquet files."""

    uri: str
    options: dict[str, str]
    filesystem: pafs.FileSystem

    def create(self, schema: pa.Schema) -> DeltaTable:
        """Create the empty table (version 0) unless it exists; two creators at once both end up with it."""
        try:
            return DeltaTable.create(
                self.uri, schema, partition_by=[PARTITION], mode="ignore", storage_options=self.options
            )
        except CommitFailedError:
            return self.open()

    def open(self, version: int | None = None) -> DeltaTable:
        """The table at `version` (latest when None)."""
        return _retrying(
            f"open {self.uri}", lambda: DeltaTable(self.uri, version=version, storage_options=self.options)
        )

    def exists(self) -> bool:
        return _retrying(f"look up {self.uri}", lambda: DeltaTable.is_deltatable(self.uri, self.options))

    def file_path(self, relative: str) -> str:
        """The path of one of the table's files for `filesystem` (relative to the table root)."""
        return self._path(relative)

    def _path(self, relative: str) -> str:
        base = self.uri.removeprefix("s3://").removeprefix("file://").rstrip("/")
        return f"{base}/{relative}"

    def read(
        self,
        dt: DeltaTable,
        schema: pa.Schema,
        columns: list[str] | None,
        dictionary: tuple[str, ...],
        datasets: list[str] | None = None,
        types: dict[str, pa.DataType] | None = None,
    ) -> pa.Table:
        """Every row of the snapshot `dt` in the canonical order (dataset, then row_key): Arrow reads the files
        in parallel, files in order of (dataset, first row_key), so no sort is needed when a dataset's files
        cover disjoint row_key ranges: one file per commit per dataset, or after `store.maintain --compact`
        (which sorts by row_key). Only other writers' layouts pay for a sort."""
        adds = pa.table(dt.get_add_actions(flatten=True))
        if datasets is not None:  # partition pruning: only these datasets' files are read
            adds = adds.filter(pc.is_in(adds[f"partition.{PARTITION}"], pa.array(datasets, pa.string())))
        wanted = list(columns) if columns else schema.names
        read_cols = [c for c in dict.fromkeys([*wanted, "row_key"]) if c != PARTITION]
        if adds.num_rows == 0:
            return schema.empty_table().select(wanted)
        adds = adds.sort_by(
            [(f"partition.{PARTITION}", "ascending"), ("min.row_key", "ascending"), ("path", "ascending")]
        )
        paths = [self._path(p) for p in adds["path"].to_pylist()]
        # Low-cardinality strings come back as dictionaries (each distinct value stored once).
        file_schema = pa.schema(
            [
                pa.field(c, pa.dictionary(pa.int32(), pa.string())) if c in dictionary else schema.field(c)
                for c in schema.names
                if c != PARTITION
            ]
        )
        fmt = pads.ParquetFileFormat(
            read_options=pads.ParquetReadOptions(dictionary_columns=[c for c in dictionary if c != PARTITION])
        )
        sizes = adds["size_bytes"].to_pylist()
        # Files in the order above (to_table keeps fragment order with threads on); a bounded readahead keeps
        # the decode buffers small next to the table itself. The sizes come from the log: no HEAD request per
        # file (500 fewer round trips on S3 at 8M rows), and no size a failed request could garble.
        # Narrowing casts run per batch inside the scan, so the wide column never exists whole. The system
        # allocator hands freed decode buffers back (the default pool's per-thread caches kept ~0.3 GB).
        projection = {c: pc.field(c).cast(types[c]) if types and c in types else pc.field(c) for c in read_cols}
        table = _retrying(
            f"read {self.uri}",
            lambda: self._dataset(paths, sizes, file_schema, fmt).to_table(
                columns=projection,
                use_threads=True,
                fragment_readahead=4,
                batch_readahead=4,
                memory_pool=pa.system_memory_pool(),
            ),
            invalid_is_transient=True,
        )
        per_file = pc.dictionary_encode(adds[f"partition.{PARTITION}"].combine_chunks())
        codes = np.repeat(per_file.indices.to_numpy(), adds["num_records"].to_numpy())  # int32, one per row
        if PARTITION in wanted:
            column = pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), per_file.dictionary)
            table = table.append_column(PARTITION, column if PARTITION in dictionary else column.cast(pa.string()))
        _release_freed_memory()
        keys = table["row_key"].combine_chunks().to_numpy()
        in_order = (keys[1:] > keys[:-1]) | (codes[1:] != codes[:-1])  # keys restart where the dataset changes
        if not in_order.all():
            table = table.take(pa.array(np.lexsort((keys, codes))))
        return table.select(wanted)

    def _dataset(
        self, paths: list[str], sizes: list[int], schema: pa.Schema, fmt: pads.ParquetFileFormat
    ) -> pads.Dataset:
        fragments = [fmt.make_fragment(p, self.filesystem, file_size=n) for p, n in zip(paths, sizes, strict=True)]
        return pads.FileSystemDataset(fragments, schema, fmt, self.filesystem)

    def append(self, dt: DeltaTable, rows: pa.Table, metadata: dict[str, str]) -> int:
        """Commit `rows` on exactly the version after `dt`'s (CommitFailedError when another writer got there
        first); row_key is set here. Returns the new version."""
        version = dt.version() + 1
        keys = pa.array([(version << ROW_KEY_SHIFT) + i for i in range(rows.num_rows)], pa.int64())
        rows = rows.set_column(rows.schema.get_field_index("row_key"), "row_key", keys)
        props = CommitProperties(max_commit_retries=0, custom_metadata=metadata)
        write_deltalake(dt, rows, mode="append", commit_properties=props)
        return version


def _release_freed_memory() -> None:
    """Hand the scan's freed decode buffers back to the OS (glibc keeps them in per-thread arenas: ~0.3 GB
    of RSS after reading an 8M-row catalog). A no-op where there is no glibc."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def rows_added_since(ref: DeltaRef, old: DeltaTable, new: DeltaTable, dataset: str, column: str) -> pa.Array:
    """`column` of the rows in files that `new` has and `old` has not, for one dataset: what other writers
    committed in between (a compaction's rewritten files come back too, which only repeats known values)."""
    before = set(pa.table(old.get_add_actions(flatten=True))["path"].to_pylist())
    adds = pa.table(new.get_add_actions(flatten=True))
    mask = pc.equal(adds[f"partition.{PARTITION}"], dataset)
    new = adds.filter(mask).filter(
        pc.invert(pc.is_in(adds.filter(mask)["path"], pa.array(sorted(before), pa.string())))
    )
    if new.num_rows == 0:
        return pa.array([], pa.string())
    paths = [ref.file_path(p) for p in new["path"].to_pylist()]
    fmt = pads.ParquetFileFormat()
    schema = pa.schema([(column, pa.string())])
    table = _retrying(
        f"read {ref.uri}",
        lambda: ref._dataset(paths, new["size_bytes"].to_pylist(), schema, fmt).to_table(columns=[column]),
        invalid_is_transient=True,
    )
    return table[column].combine_chunks()
