"""Reading a store: the catalog, the quarantine, and one sample by id (checksum verified)."""

from __future__ import annotations

import json
import os
import threading
import warnings
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import zarr
from zarr.storage import FsspecStore, LocalStore

from schemas.catalog import CATALOG_COLUMNS, QUARANTINE_COLUMNS
from schemas.sample import Sample, SampleMeta
from store import layout
from store.codecs import (
    DecodeError,
    DepthGrid,
    DepthPoints,
    checksum,
    decode_depth_stored,
    decode_rgb_payload,
)
from store.fs import StorageUnavailable, atomic_write, is_local, retry_io, storage_options_from_env, url_to_fs, where
from store.table import DeltaRef, TableIOError, arrow_filesystem, delta_options

# The catalog columns `read_arrays` needs (locate, verify, decode) plus the intrinsics and valid fraction
# a loader transforms with: loading only these keeps a training catalog small.
READ_COLUMNS = [
    "sample_id",
    "dataset",
    "split",
    "height",
    "width",
    "fx",
    "fy",
    "cx",
    "cy",
    "valid_frac",
    "rgb_codec",
    "depth_codec",
    "depth_scale",
    "shard",
    "index",
    "rgb_offset",
    "rgb_bytes",
    "depth_offset",
    "depth_bytes",
    "checksum",
]
# The loader's narrower types: intrinsics to 1e-7 relative and payload sizes below 2 GiB lose nothing a
# loader uses, and an 8M-row catalog then needs 0.2 GB less memory in every rank and loader actor.
READ_TYPES = {
    "fx": pa.float32(),
    "fy": pa.float32(),
    "cx": pa.float32(),
    "cy": pa.float32(),
    "valid_frac": pa.float32(),
    "rgb_bytes": pa.int32(),
    "depth_bytes": pa.int32(),
}


class StoreError(RuntimeError):
    """The store cannot be used as asked (missing, other format version, unknown version, duplicate ids)."""


class CorruptSampleError(StoreError):
    """A sample's bytes fail their checksum or do not decode: reported, never returned."""


# Columns with few distinct values are read as dictionaries (each string stored once): an 8M-row catalog
# then fits in far less Arrow memory.
DICTIONARY_COLUMNS = ("dataset", "split", "scene", "camera", "sensor", "adapter", "rgb_codec", "depth_codec", "shard")


def _element_bytes(value: Any) -> bytes:
    # zarr returns a variable-length bytes element wrapped in 0-d object arrays around a fixed-width |S
    # array; numpy's bytes scalars drop trailing NUL bytes, so take the raw buffer of the |S array.
    while isinstance(value, np.ndarray) and value.dtype == object:
        value = value.item()
    return value.tobytes() if isinstance(value, np.ndarray) else bytes(value)


class Store:
    """A store root on any fsspec URL, at the latest catalog version or a pinned one. Use `open_store(url)`."""

    def __init__(
        self,
        url: str,
        storage_options: dict[str, Any] | None = None,
        create: bool = False,
        version: int | None = None,
        create_bucket: bool = False,
    ) -> None:
        self.url = url
        self.storage_options = {**storage_options_from_env(url), **(storage_options or {})}
        self.fs, self.root = url_to_fs(url, self.storage_options)
        self._arrays: dict[str, tuple[zarr.Array, zarr.Array]] = {}
        self._lock = threading.Lock()
        self._check_or_create(create, create_bucket)
        options = delta_options(url, self.storage_options)
        base = f"s3://{self.root}" if url.startswith("s3://") else os.path.abspath(self.root)
        arrow_fs = arrow_filesystem(url, options)
        self.catalog_ref = DeltaRef(layout.catalog_dir(base), options, arrow_fs)
        self.quarantine_ref = DeltaRef(layout.quarantine_dir(base), options, arrow_fs)
        if create:
            self.catalog_ref.create(CATALOG_COLUMNS)
            self.quarantine_ref.create(QUARANTINE_COLUMNS)
        self.pinned = version is not None
        try:
            self._catalog = self.catalog_ref.open(version)
            self._quarantine = self.quarantine_ref.open()
        except TableIOError as exc:
            raise StoreError(f"cannot reach store {where(self.url, self.storage_options)}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - delta-rs reports a missing version as a generic error
            raise StoreError(self._missing_version(version, exc)) from exc
        self._rows: tuple[int, dict[str, dict[str, Any]]] | None = None

    def _missing_version(self, version: int | None, exc: Exception) -> str:
        if version is None:
            return f"{self.url}: cannot open the catalog table ({exc})"
        try:
            latest = self.catalog_ref.open().version()
        except Exception:  # noqa: BLE001 - the message below is what matters
            latest = "unknown"
        return (
            f"{self.url} has no catalog version {version} (latest is {latest}; versions older than the vacuum "
            "retention are gone): use `python -m store.summary URL` to list the versions"
        )

    def _check_or_create(self, create: bool, create_bucket: bool = False) -> None:
        path = layout.store_json(self.root)
        expected = {"format": layout.FORMAT_NAME, "version": layout.FORMAT_VERSION}
        try:
            exists = self.fs.exists(path)
        except Exception as exc:  # noqa: BLE001 - any backend error here means the URL is unusable
            raise StoreError(f"cannot reach store {where(self.url, self.storage_options)}: {exc}") from exc
        if not exists:
            if not create:
                raise StoreError(f"{self.url} is not a store (no store.json); ingest into it first")
            if not is_local(self.fs):
                bucket = self.root.split("/", 1)[0]
                if not self.fs.exists(bucket):
                    # A typo in a bucket name must not quietly create a new bucket.
                    if not create_bucket:
                        endpoint = self.storage_options.get("endpoint_url") or "the default AWS endpoint"
                        raise StoreError(
                            f"bucket {bucket} does not exist at {endpoint}; create it, or pass --create-bucket"
                        )
                    self.fs.mkdir(bucket)
            atomic_write(self.fs, path, json.dumps(expected).encode())
            return
        found = json.loads(self.fs.cat_file(path))
        if found.get("format") != layout.FORMAT_NAME or found.get("version") != layout.FORMAT_VERSION:
            hint = (
                f"run `python -m store.migrate {self.url}` (rewrites the catalog as Delta tables, no array is touched)"
                if found.get("format") == layout.FORMAT_NAME and found.get("version") in layout.MIGRATABLE
                else "use the matching release or re-ingest into a new store"
            )
            raise StoreError(
                f"{self.url} has store format {found.get('format')!r} version {found.get('version')!r}; "
                f"this code reads {layout.FORMAT_NAME!r} version {layout.FORMAT_VERSION}: {hint}"
            )

    # -- versions ------------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        """The catalog version this store reads: the pinned one, or the latest seen by the last refresh."""
        return self._catalog.version()

    @property
    def quarantine_version(self) -> int:
        return self._quarantine.version()

    def refresh(self) -> None:
        """Follow the latest committed versions (no-op when pinned). Every read of an unpinned store does this."""
        if self.pinned:
            return
        try:
            self._catalog.update_incremental()
            self._quarantine.update_incremental()
        except Exception as exc:  # noqa: BLE001 - storage faults already retried inside delta-rs
            raise StoreError(f"cannot refresh store {where(self.url, self.storage_options)}: {exc}") from exc

    def at_version(self, version: int | None = None) -> Store:
        """The same store pinned at `version` (default: the version this one reads now): what a run hands its
        workers so every rank and loader actor reads the same rows."""
        return Store(self.url, self.storage_options, version=self.version if version is None else version)

    def history(self) -> list[dict[str, Any]]:
        """The catalog's commits, newest first: version, time, operation, rows added."""
        return self._catalog.history()

    # -- catalog -------------------------------------------------------------------------------------
    def zarr_store(self, path: str) -> zarr.abc.store.Store:
        if is_local(self.fs):
            return LocalStore(path)
        protocol = self.fs.protocol[0] if isinstance(self.fs.protocol, tuple) else self.fs.protocol
        return FsspecStore.from_url(f"{protocol}://{path}", storage_options=self.storage_options)

    def catalog(
        self,
        columns: list[str] | None = None,
        datasets: list[str] | None = None,
        types: dict[str, pa.DataType] | None = None,
    ) -> pa.Table:
        """One row per committed sample of this version (CATALOG_COLUMNS, or `columns`; low-cardinality strings
        as dictionaries; `types` narrows columns as they are read, e.g. READ_TYPES), of every dataset or only
        `datasets`, in the canonical order (dataset, row_key): the same rows in the same order every time
        this version is read."""
        self.refresh()
        return self.catalog_ref.read(self._catalog, CATALOG_COLUMNS, columns, DICTIONARY_COLUMNS, datasets, types)

    def audit(self, checksums: bool = False) -> int:
        """Check that sample ids are unique (and, with checksums, that every sample reads back intact);
        returns the number of samples. Raises StoreError / CorruptSampleError naming what is wrong."""
        table = self.catalog(columns=None if checksums else ["sample_id"])
        if table.num_rows and pc.count_distinct(table["sample_id"]).as_py() != table.num_rows:
            counts = pc.value_counts(table["sample_id"])
            dup = [c["values"].as_py() for c in counts if c["counts"].as_py() > 1][:3]
            raise StoreError(f"{self.url}: duplicate sample ids in catalog version {self.version}, e.g. {dup}")
        if checksums:
            for row in table.to_pylist():
                self.read_payloads(row)
        return table.num_rows

    def quarantine(self) -> pa.Table:
        """Rejected inputs with the file, the reason and the time of each attempt (latest version: history)."""
        self.refresh()
        return self.quarantine_ref.read(self._quarantine, QUARANTINE_COLUMNS, None, ())

    def _rows_by_id(self) -> dict[str, dict[str, Any]]:
        self.refresh()
        if self._rows is None or self._rows[0] != self.version:
            table = self.catalog()
            self._rows = (self.version, {row["sample_id"]: row for row in table.to_pylist()})
        return self._rows[1]

    # -- samples -------------------------------------------------------------------------------------
    def _open_arrays(self, dataset: str, shard: str) -> tuple[zarr.Array, zarr.Array]:
        key = f"{dataset}/{shard}"
        with self._lock:
            if key not in self._arrays:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    group = zarr.open_group(self.zarr_store(layout.arrays_group(self.root, dataset, shard)), mode="r")
                    self._arrays[key] = (group["rgb"], group["depth"])
            return self._arrays[key]

    def read_payloads(self, row: dict[str, Any], via_zarr: bool = False) -> tuple[bytes, bytes]:
        """The stored bytes of one catalog row, checksum verified: one range read per array, at the offsets
        the writer took from the shard index (`via_zarr` reads through zarr's API instead, for audits)."""
        what = f"sample {row['sample_id']} (shard {row['dataset']}/{row['shard']})"

        def fetch() -> tuple[bytes, ...]:
            if via_zarr:
                rgb_arr, depth_arr = self._open_arrays(row["dataset"], row["shard"])
                return (_element_bytes(rgb_arr[row["index"]]), _element_bytes(depth_arr[row["index"]]))
            return tuple(
                self.fs.cat_file(
                    layout.array_file(self.root, row["dataset"], row["shard"], name),
                    start=row[f"{name}_offset"],
                    end=row[f"{name}_offset"] + row[f"{name}_bytes"],
                )
                for name in ("rgb", "depth")
            )

        try:
            payloads = retry_io(what, fetch)
        except StorageUnavailable as exc:  # the storage, not the sample: never reported as corrupt
            raise StoreError(f"{exc} at {where(self.url, self.storage_options)}") from exc
        except Exception as exc:  # noqa: BLE001 - a corrupted or missing shard can fail inside any layer
            raise CorruptSampleError(f"{what}: cannot read its arrays: {exc}") from exc
        if checksum(*payloads) != row["checksum"]:
            raise CorruptSampleError(f"{what}: checksum mismatch, the stored bytes were altered")
        return payloads

    def read(self, sample_id: str) -> Sample:
        """The canonical sample with this id."""
        try:
            row = self._rows_by_id()[sample_id]
        except KeyError:
            raise KeyError(f"{sample_id!r} is not in catalog version {self.version} of {self.url}") from None
        return self.read_row(row)

    def read_arrays(self, row: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """(rgb uint8 HxWx3, depth_m float32 HxW) of a catalog row; needs only its locator columns."""
        rgb, depth = self.read_stored(row)
        return rgb, depth.dense() if isinstance(depth, DepthPoints) else depth.depth_m()

    def read_stored(self, row: dict[str, Any]) -> tuple[np.ndarray, DepthPoints | DepthGrid]:
        """(rgb uint8 HxWx3, depth as stored: points for sparse maps, else the map of stored values) for
        loaders, which convert only what their crop keeps."""
        rgb_bytes, depth_bytes = self.read_payloads(row)
        h, w = row["height"], row["width"]
        try:
            rgb = decode_rgb_payload(row["rgb_codec"], rgb_bytes, h, w)
            depth = decode_depth_stored(row["depth_codec"], depth_bytes, h, w, row["depth_scale"])
        except DecodeError as exc:
            raise CorruptSampleError(f"sample {row['sample_id']}: {exc}") from exc
        return rgb, depth

    def read_row(self, row: dict[str, Any]) -> Sample:
        rgb, depth = self.read_arrays(row)
        meta = SampleMeta(
            sample_id=row["sample_id"],
            dataset=row["dataset"],
            split=row["split"],
            scene=row["scene"],
            frame=row["frame"],
            camera=row["camera"],
            sensor=row["sensor"],
            source_uris=tuple(row["source_uris"]),
            adapter=row["adapter"],
            adapter_version=row["adapter_version"],
            depth_scale=row["depth_scale"] or None,
        )
        k_px = (row["fx"], row["fy"], row["cx"], row["cy"])
        return Sample(rgb=rgb, depth_m=depth, valid=depth > 0, k_px=k_px, meta=meta)


def open_store(
    url: str,
    storage_options: dict[str, Any] | None = None,
    create: bool = False,
    version: int | None = None,
    create_bucket: bool = False,
) -> Store:
    """Open the store at a local path or s3:// URL (storage options from the environment, then these), at
    catalog `version` (pinned) or following the latest. `create` makes a missing store; its bucket must exist
    unless `create_bucket`."""
    return Store(url, storage_options, create=create, version=version, create_bucket=create_bucket)


def as_store(store: Store | str) -> Store:
    return store if isinstance(store, Store) else open_store(store)


__all__ = ["CorruptSampleError", "Store", "StoreError", "as_store", "open_store"]
