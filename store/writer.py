"""The one writer: a shard of canonical samples -> Zarr arrays + its catalog and quarantine rows (staged).

Commit protocol: a shard's arrays are written first, under a fresh attempt path; its rows become visible
only when store.commit.Committer commits them to the Delta tables (many shards per transaction). A crash
at any moment leaves whole committed shards, plus arrays no row points at (garbage for store.maintain).
"""

from __future__ import annotations

import uuid
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import zarr

from schemas.catalog import CATALOG_COLUMNS, QUARANTINE_COLUMNS, validate_catalog
from schemas.sample import Sample, depth_stats
from store import layout
from store.codecs import checksum, encode_depth, encode_rgb
from store.store import Store


@dataclass(frozen=True)
class Rejected:
    """An input that did not become a sample: which file, and why."""

    item: str
    sample_id: str
    file: str
    reason: str
    split: str


def _write_bytes_array(group: zarr.Group, name: str, blobs: list[bytes]) -> None:
    # One element per sample, one shard file per array: mixed image sizes cost no padding, and a read of
    # one sample is a range request for its chunk. Payloads are already compressed by store.codecs.
    values = np.empty(len(blobs), dtype=object)
    values[:] = blobs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr: variable-length bytes have no finalised v3 spec yet
        arr = group.create_array(
            name,
            shape=(len(blobs),),
            chunks=(1,),
            shards=(max(len(blobs), 1),),
            dtype="variable_length_bytes",
            compressors=None,
        )
    if blobs:
        arr[:] = values


# zarr v3 sharding: the index (n x (offset, nbytes) uint64 LE + crc32c) ends the shard file; a
# variable-length bytes chunk of one element is [u32 count = 1][u32 length][payload].
_INDEX_ENTRY, _INDEX_CRC, _VLEN_HEADER = 16, 4, 8


def payload_offsets(store: Store, path: str, lengths: list[int]) -> list[int]:
    """Byte offsets of each element's payload inside a written shard file, read from the shard's own index,
    so a reader can fetch a sample with one range request instead of going through zarr's machinery."""
    n = len(lengths)
    if n == 0:
        return []
    size = store.fs.size(path)
    tail = store.fs.cat_file(path, start=size - (n * _INDEX_ENTRY + _INDEX_CRC))
    index = np.frombuffer(tail[: n * _INDEX_ENTRY], "<u8").reshape(n, 2)
    if not np.array_equal(index[:, 1], np.asarray(lengths, np.uint64) + _VLEN_HEADER):
        raise RuntimeError(f"{path}: shard index disagrees with the payloads just written")
    return (index[:, 0] + _VLEN_HEADER).astype(np.int64).tolist()


@dataclass(frozen=True)
class Staged:
    """A shard whose arrays are written: its catalog rows and quarantine rows, not yet committed."""

    catalog: pa.Table
    quarantine: pa.Table


def quarantine_rows(dataset: str, shard: str, rejected: list[Rejected]) -> pa.Table:
    """Quarantine rows of rejected inputs, stamped with the time of this attempt."""
    now = datetime.now(UTC)
    return pa.table(
        {
            "dataset": [dataset] * len(rejected),
            "split": [r.split for r in rejected],
            "item": [r.item for r in rejected],
            "sample_id": [r.sample_id for r in rejected],
            "file": [r.file for r in rejected],
            "reason": [r.reason for r in rejected],
            "shard": [shard] * len(rejected),
            "time": [now] * len(rejected),
            "row_key": [0] * len(rejected),  # set by the commit
        },
        schema=QUARANTINE_COLUMNS,
    )


def write_shard(
    store: Store,
    dataset: str,
    shard: str,
    samples: list[Sample],
    rejected: list[Rejected],
    rgb_codec: str = "auto",
) -> pa.Table:
    """Write one shard and commit it at once (one transaction); returns its catalog rows. Ingest stages
    shards with `stage_shard` and batches their commits instead."""
    from store.commit import Committer

    staged = stage_shard(store, dataset, shard, samples, rejected, rgb_codec)
    committer = Committer(store, operation="write_shard")
    committer.add(staged.catalog, staged.quarantine)
    committer.close()
    return staged.catalog


def stage_shard(
    store: Store,
    dataset: str,
    shard: str,
    samples: list[Sample],
    rejected: list[Rejected],
    rgb_codec: str = "auto",
) -> Staged:
    """Write one shard's arrays; return its rows for a Committer. Samples must already pass Sample.check()."""
    layout.check_dataset_name(dataset)
    attempt = uuid.uuid4().hex[:12]
    group_path = layout.arrays_group(store.root, dataset, f"{shard}-{attempt}")
    rows: dict[str, list] = {f.name: [] for f in CATALOG_COLUMNS}
    rgb_blobs, depth_blobs = [], []
    for index, s in enumerate(samples):
        rgb = encode_rgb(s.rgb, rgb_codec, s.rgb_source, s.rgb_format)
        depth, scale = encode_depth(s.depth_m, s.meta.depth_scale)
        rgb_blobs.append(rgb.data)
        depth_blobs.append(depth.data)
        m, (h, w) = s.meta, s.depth_m.shape
        row = {
            "sample_id": m.sample_id,
            "dataset": dataset,
            "split": m.split,
            "scene": m.scene,
            "frame": m.frame,
            "camera": m.camera,
            "sensor": m.sensor,
            "source_uris": list(m.source_uris),
            "adapter": m.adapter,
            "adapter_version": m.adapter_version,
            "height": h,
            "width": w,
            "fx": float(s.k_px[0]),
            "fy": float(s.k_px[1]),
            "cx": float(s.k_px[2]),
            "cy": float(s.k_px[3]),
            **depth_stats(s.depth_m, s.valid),
            "rgb_codec": rgb.codec,
            "depth_codec": depth.codec,
            "depth_scale": scale,
            "shard": f"{shard}-{attempt}",
            "index": index,
            "rgb_bytes": len(rgb.data),
            "depth_bytes": len(depth.data),
            "checksum": checksum(rgb.data, depth.data),
            "row_key": 0,  # set by the commit
        }
        for k, v in row.items():
            rows[k].append(v)
    if samples:  # a shard whose every input was rejected has no arrays
        group = zarr.open_group(store.zarr_store(group_path), mode="w")
        _write_bytes_array(group, "rgb", rgb_blobs)
        _write_bytes_array(group, "depth", depth_blobs)
    for name, blobs in (("rgb", rgb_blobs), ("depth", depth_blobs)):
        path = layout.array_file(store.root, dataset, f"{shard}-{attempt}", name)
        rows[f"{name}_offset"] = payload_offsets(store, path, [len(b) for b in blobs])
    table = pa.table(rows, schema=CATALOG_COLUMNS)
    validate_catalog(table)
    return Staged(table, quarantine_rows(dataset, shard, rejected))
