"""Where things live under a store root, and the format version.

  store.json                                   {"format": FORMAT_NAME, "version": FORMAT_VERSION}
  catalog/                                     Delta table, partitioned by dataset: one row per sample
  quarantine/                                  Delta table, partitioned by dataset: one row per rejected attempt
  arrays/<name>/<shard>-<attempt>.zarr/        Zarr v3 group: `rgb`, `depth` (one element per sample)

A shard's arrays live under a fresh attempt suffix, so a killed or concurrent attempt never writes into
the arrays a catalog row already points at; unreferenced attempts are garbage, invisible to readers
(`store.maintain --vacuum` removes them). Format 1 kept the catalog as one Parquet part per shard
(catalog/dataset=<name>/<shard>.parquet, same for the quarantine); `store.migrate` turns it into format 2.
"""

from __future__ import annotations

import re

FORMAT_NAME = "metric-depth-store"
FORMAT_VERSION = 2
MIGRATABLE = (1,)  # older versions store.migrate turns into this one
DATASET_NAME = re.compile(r"^[a-z0-9_]+$")


def check_dataset_name(name: str) -> str:
    if not DATASET_NAME.match(name):
        raise ValueError(f"dataset name {name!r} must be lower-case letters, digits and '_' (it names folders)")
    return name


def store_json(root: str) -> str:
    return f"{root}/store.json"


def catalog_dir(root: str) -> str:
    return f"{root}/catalog"


def quarantine_dir(root: str) -> str:
    return f"{root}/quarantine"


def arrays_group(root: str, dataset: str, located_shard: str) -> str:
    """`located_shard` is the catalog's `shard` column: "<shard>-<attempt>"."""
    return f"{root}/arrays/{dataset}/{located_shard}.zarr"


def array_file(root: str, dataset: str, located_shard: str, array: str) -> str:
    """The one shard file holding every element of `array` ("rgb" or "depth"): zarr v3 key c/0."""
    return f"{arrays_group(root, dataset, located_shard)}/{array}/c/0"


def arrays_dir(root: str) -> str:
    return f"{root}/arrays"


def legacy_parts(root: str, table: str) -> str:
    """Glob of a format-1 table's parts (`table`: catalog or quarantine)."""
    return f"{root}/{table}/dataset=*/*.parquet"
