"""The canonical sample and the catalog row: the contract between ingest and everything after it."""

from schemas.camera import F_CANONICAL_PX, mean_focal_px
from schemas.catalog import CATALOG_COLUMNS, QUARANTINE_COLUMNS, validate_catalog
from schemas.sample import (
    SENSOR_KINDS,
    SPLITS,
    Sample,
    SampleError,
    SampleMeta,
    depth_stats,
    make_sample_id,
)

__all__ = [
    "CATALOG_COLUMNS",
    "F_CANONICAL_PX",
    "QUARANTINE_COLUMNS",
    "SENSOR_KINDS",
    "SPLITS",
    "Sample",
    "SampleError",
    "SampleMeta",
    "depth_stats",
    "make_sample_id",
    "mean_focal_px",
    "validate_catalog",
]
