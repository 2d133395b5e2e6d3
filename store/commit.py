"""Batched, conditional commits of staged catalog and quarantine rows (the only code that appends to them).

Workers write a shard's arrays and hand back its rows; the committer gathers rows and commits them in few,
large transactions (a table of 8M rows in ~500 files opens in seconds; one file per 64-row shard would
be 125,000 files). Before each commit it catches up on what other writers committed since the version it
knows and drops rows whose ids they already committed; the commit then lands on exactly the next version
or fails and goes round again.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError

from store.store import Store, StoreError
from store.table import PARTITION, DeltaRef, rows_added_since

# Chosen by measurement (docs/performance.md, bench.catalog_scale / bench.ingest): at 16,384 rows a commit
# costs ~0.1 s against ~6 min of ingest CPU for those rows, and 8M rows make ~500 files.
COMMIT_ROWS = 16_384
# A slow ingest still makes its rows visible (and safe from a crash) at least this often.
COMMIT_SECONDS = 30.0
MAX_COMMIT_ATTEMPTS = 200


@dataclass
class _Pending:
    ref: DeltaRef
    dt: DeltaTable
    tables: list[pa.Table] = field(default_factory=list)
    foreign: dict[str, set[str]] = field(default_factory=dict)  # dataset -> ids other writers committed

    @property
    def rows(self) -> int:
        return sum(t.num_rows for t in self.tables)


@dataclass
class CommitResult:
    committed: int = 0  # catalog rows now visible
    quarantined: int = 0
    duplicates: int = 0  # rows dropped because another writer committed the same id first
    versions: list[int] = field(default_factory=list)  # catalog versions this committer made


class Committer:
    """Collects staged rows; commits quarantine then catalog rows when enough have gathered (or on close)."""

    def __init__(
        self,
        store: Store,
        operation: str = "ingest",
        base: tuple[int, int] | None = None,
        commit_rows: int = COMMIT_ROWS,
        commit_seconds: float = COMMIT_SECONDS,
    ) -> None:
        """`base`: the (catalog, quarantine) versions the caller checked its ids against (default: the ones
        `store` holds now); ids other writers commit after them are dropped from this committer's rows."""
        if store.pinned:
            raise StoreError(f"{store.url} is opened at pinned version {store.version}: open the latest to write")
        self.store = store
        self.operation = operation
        self.commit_rows = commit_rows
        self.commit_seconds = commit_seconds
        catalog_version, quarantine_version = base or (store.version, store.quarantine_version)
        self._catalog = _Pending(store.catalog_ref, store.catalog_ref.open(catalog_version))
        self._quarantine = _Pending(store.quarantine_ref, store.quarantine_ref.open(quarantine_version))
        self._since = time.monotonic()
        self.result = CommitResult()

    def add(self, catalog_rows: pa.Table, quarantine_rows: pa.Table | None = None) -> CommitResult | None:
        """Stage one shard's rows; commits (and returns what it did) when a batch is due."""
        if self._catalog.rows + self._quarantine.rows == 0:
            self._since = time.monotonic()
        if catalog_rows.num_rows:
            self._catalog.tables.append(catalog_rows)
        if quarantine_rows is not None and quarantine_rows.num_rows:
            self._quarantine.tables.append(quarantine_rows)
        due = self._catalog.rows + self._quarantine.rows >= self.commit_rows
        if due or time.monotonic() - self._since >= self.commit_seconds:
            return self.flush()
        return None

    def flush(self) -> CommitResult:
        """Commit everything staged: the quarantine first, then the catalog (the catalog commit makes samples
        visible; a crash in between leaves rejected inputs recorded and nothing half-visible)."""
        quarantined, _ = self._commit(self._quarantine)
        committed, duplicates = self._commit(self._catalog)
        self._since = time.monotonic()
        self.result.quarantined += quarantined
        self.result.committed += committed
        self.result.duplicates += duplicates
        return CommitResult(committed, quarantined, duplicates)

    def close(self) -> CommitResult:
        """Commit what is left; returns the totals."""
        self.flush()
        return self.result

    def _commit(self, pending: _Pending) -> tuple[int, int]:
        """(rows committed, rows dropped as already committed by another writer)."""
        if not pending.tables:
            return 0, 0
        rows = pa.concat_tables(pending.tables)
        pending.tables = []
        # Each dataset's rows contiguous and sorted by id: the files of one commit then cover disjoint
        # row_key ranges and readers skip the sort.
        rows = rows.sort_by([(PARTITION, "ascending"), ("sample_id", "ascending")])
        staged, wait = rows.num_rows, 0.05
        for _ in range(MAX_COMMIT_ATTEMPTS):
            rows = self._catch_up(pending, rows)
            if rows.num_rows == 0:
                return 0, staged
            try:
                version = pending.ref.append(pending.dt, rows, {"metricdepth.operation": self.operation})
            except CommitFailedError:
                time.sleep(wait * (1 + random.random()))  # another writer landed first: catch up, try again
                wait = min(wait * 2, 2.0)
                continue
            if pending is self._catalog:
                self.result.versions.append(version)
            return rows.num_rows, staged - rows.num_rows
        raise StoreError(f"{pending.ref.uri}: no commit landed after {MAX_COMMIT_ATTEMPTS} attempts (contention)")

    def _catch_up(self, pending: _Pending, rows: pa.Table) -> pa.Table:
        latest = pending.ref.open()
        if latest.version() != pending.dt.version():
            for dataset in pc.unique(rows[PARTITION]).to_pylist():
                added = rows_added_since(pending.ref, pending.dt, latest, dataset, "sample_id")
                pending.foreign.setdefault(dataset, set()).update(added.to_pylist())
            pending.dt = latest
        known = set().union(*pending.foreign.values()) if pending.foreign else set()
        if not known:
            return rows
        return rows.filter(pc.invert(pc.is_in(rows["sample_id"], pa.array(sorted(known), pa.string()))))
