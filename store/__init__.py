"""The on-disk format: Parquet catalog + Zarr v3 arrays. Writer and reader live here and nowhere else."""

from store.store import CorruptSampleError, Store, StoreError, as_store, open_store

__all__ = ["CorruptSampleError", "Store", "StoreError", "as_store", "open_store"]
