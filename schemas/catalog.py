"""The catalog row (one per committed sample) and the quarantine row, as Arrow schemas checked by pandera.

The Arrow schema is what the store writes; `validate_catalog` is the full, slower pandera check used at
write time on each shard's part and by audits. Reading checks only the cheap invariants (schema, unique ids).
"""

from __future__ import annotations

import functools

import pyarrow as pa

from schemas.sample import SENSOR_KINDS, SPLITS

CATALOG_COLUMNS = pa.schema(
    [
        ("sample_id", pa.string()),
        ("dataset", pa.string()),
        ("split", pa.string()),
        ("scene", pa.string()),
        ("frame", pa.string()),
        ("camera", pa.string()),
        ("sensor", pa.string()),
        ("source_uris", pa.list_(pa.string())),
        ("adapter", pa.string()),
        ("adapter_version", pa.int32()),
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("fx", pa.float64()),
        ("fy", pa.float64()),
        ("cx", pa.float64()),
        ("cy", pa.float64()),
        ("valid_frac", pa.float64()),
        ("depth_min_m", pa.float64()),
        ("depth_median_m", pa.float64()),
        ("depth_max_m", pa.float64()),
        ("rgb_codec", pa.string()),
        ("depth_codec", pa.string()),
        ("depth_scale", pa.float64()),
        ("shard", pa.string()),
        ("index", pa.int32()),
        ("rgb_offset", pa.int64()),
        ("rgb_bytes", pa.int64()),
        ("depth_offset", pa.int64()),
        ("depth_bytes", pa.int64()),
        ("checksum", pa.binary(16)),  # XXH3-128 of the payloads (store.codecs.checksum)
        # The catalog's canonical order: (commit version << 32) + position in that commit. Assigned at the
        # commit, kept by compaction, so a version reads its rows in the same order whatever its files.
        ("row_key", pa.int64()),
    ]
)

QUARANTINE_COLUMNS = pa.schema(
    [
        ("dataset", pa.string()),
        ("split", pa.string()),
        ("item", pa.string()),
        ("sample_id", pa.string()),
        ("file", pa.string()),
        ("reason", pa.string()),
        ("shard", pa.string()),
        ("time", pa.timestamp("us", tz="UTC")),  # when this attempt failed: a retried item keeps its history
        ("row_key", pa.int64()),
    ]
)


@functools.cache
def _catalog_schema():  # noqa: ANN202 - a pandera schema; pandera loads only when rows are validated
    """The pandera schema of catalog rows (built once; pandera and pandas load here, not at import)."""
    import pandera.pandas as pda

    _nonempty = pda.Check.str_length(min_value=1)
    return pda.DataFrameSchema(
        {
            "sample_id": pda.Column(str, _nonempty, unique=True, nullable=False),
            "dataset": pda.Column(str, pda.Check.str_matches(r"^[a-z0-9_]+$"), nullable=False),
            "split": pda.Column(str, pda.Check.isin(SPLITS)),
            "scene": pda.Column(str, nullable=False),
            "frame": pda.Column(str, nullable=False),
            "camera": pda.Column(str, nullable=False),
            "sensor": pda.Column(str, pda.Check.isin(SENSOR_KINDS)),
            "height": pda.Column("int32", pda.Check.gt(0)),
            "width": pda.Column("int32", pda.Check.gt(0)),
            "fx": pda.Column(float, pda.Check.gt(0)),
            "fy": pda.Column(float, pda.Check.gt(0)),
            "cx": pda.Column(float),
            "cy": pda.Column(float),
            "valid_frac": pda.Column(float, pda.Check.in_range(0.0, 1.0)),
            # NaN when a sample has no valid pixel (kept: a fully invalid frame is still an image).
            "depth_min_m": pda.Column(float, pda.Check.ge(0), nullable=True),
            "depth_median_m": pda.Column(float, pda.Check.ge(0), nullable=True),
            "depth_max_m": pda.Column(float, pda.Check.ge(0), nullable=True),
            "shard": pda.Column(str, _nonempty),
            "index": pda.Column("int32", pda.Check.ge(0)),
        },
        strict=False,
    )


def validate_catalog(table: pa.Table) -> pa.Table:
    """Full check of catalog rows (types, ranges, non-null ids, unique sample_id); raises pandera SchemaError."""
    if not table.schema.equals(CATALOG_COLUMNS):
        raise ValueError(f"catalog schema differs from the expected one:\n{table.schema}\nexpected:\n{CATALOG_COLUMNS}")
    _catalog_schema().validate(table.drop_columns(["source_uris"]).to_pandas())
    return table
