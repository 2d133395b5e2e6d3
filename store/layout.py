"""Where things live under a store root, and the format version.

  store.json                                   {"format": FORMAT_NAME, "version": FORMAT_VERSION}
  catalog/dataset=<name>/<shard>.parquet       one part per committed shard (written last: the commit)
  quarantine/dataset=<name>/<shard>.parquet    rejected inputs of that shard (written just before)
  arrays/<name>/<shard>-<attempt>.zarr/        Zarr v3 group: `rgb`, `depth` (one element per sample)

A shard's arrays live under a fresh attempt suffix, so a killed or concurrent attempt never writes into
the arrays a catalog part already points at; unreferenced attempts are garbage, invisible to readers.
"""

from __future__ import annotations

import re

FORMAT_NAME = "metric-depth-store"
FORMAT_VERSION = 1
DATASET_NAME = re.compile(r"^[a-z0-9_]+$")


def check_dataset_name(name: str) -> str:
    if not DATASET_NAME.match(name):
        raise ValueError(f"dataset name {name!r} must be lower-case letters, digits and '_' (it names folders)")
    return name


def store_json(root: str) -> str:
    return f"{root}/store.json"


def catalog_dir(root: str) -> str:
    return f"{root}/catalog"


def catalog_part(root: str, dataset: str, shard: str) -> str:
    return f"{root}/catalog/dataset={dataset}/{shard}.parquet"


def quarantine_dir(root: str) -> str:
    return f"{root}/quarantine"


def quarantine_part(root: str, dataset: str, shard: str) -> str:
    return f"{root}/quarantine/dataset={dataset}/{shard}.parquet"


def arrays_group(root: str, dataset: str, located_shard: str) -> str:
    """`located_shard` is the catalog's `shard` column: "<shard>-<attempt>"."""
    return f"{root}/arrays/{dataset}/{located_shard}.zarr"


def array_file(root: str, dataset: str, located_shard: str, array: str) -> str:
    """The one shard file holding every element of `array` ("rgb" or "depth"): zarr v3 key c/0."""
    return f"{arrays_group(root, dataset, located_shard)}/{array}/c/0"


def shard_of_part(path: str) -> str:
    return path.rsplit("/", 1)[-1].removesuffix(".parquet")
