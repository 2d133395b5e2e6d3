"""Balanced, deterministic, elastic sample order, computed on the catalog (row numbers only, no images).

One global order per (seed, epoch): each dataset contributes its weight's share of the epoch (small
datasets repeat, large ones are subsampled, with fresh permutations each epoch), then the whole list is
shuffled. Global batch b is positions [b*B, (b+1)*B); rank r of w takes the contiguous slice
[b*B + r*B/w, b*B + (r+1)*B/w). The union over ranks is the same for any w dividing B, and resuming at
(epoch, step) is just starting at position step*B. Random augmentation draws are keyed by
(seed, epoch, position), so a global batch is bit-identical whatever the number of workers. So is the stand-in
for a corrupt sample: drawn from the epoch's order by (seed, epoch, position, attempt).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Seed-stream tags, so order and augmentation draws never share a random stream.
_ORDER, _DATASET, _AUGMENT, _REPLACE = 0x0D, 0xDA, 0xA6, 0x5B


@dataclass(frozen=True)
class EpochOrder:
    """rows: int32 row numbers into the catalog table, in global order. mix: the record of the draw."""

    rows: np.ndarray
    datasets: tuple[str, ...]
    counts: dict[str, int]
    weights: dict[str, float]
    seed: int
    epoch: int

    def lineage(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "counts": dict(self.counts), "weights": dict(self.weights)}


def resolve_mix(available: list[str], mix: dict[str, float] | None) -> dict[str, float]:
    """Default: every dataset at an equal share, whatever its size. Unknown names fail loudly."""
    if not mix:
        return {d: 1.0 for d in sorted(available)}
    unknown = sorted(set(mix) - set(available))
    if unknown:
        raise KeyError(f"datasets {unknown} are not in the store's training rows; available: {sorted(available)}")
    bad = {d: w for d, w in mix.items() if not w > 0}
    if bad:
        raise ValueError(f"mix weights must be > 0, got {bad}")
    return {d: float(mix[d]) for d in sorted(mix)}


def _shares(total: int, weights: dict[str, float]) -> dict[str, int]:
    # Largest-remainder rounding: the counts sum exactly to `total`.
    names = list(weights)
    w = np.array([weights[n] for n in names], np.float64)
    exact = total * w / w.sum()
    base = np.floor(exact).astype(np.int64)
    rest = total - int(base.sum())
    order = np.argsort(-(exact - base), kind="stable")
    base[order[:rest]] += 1
    return dict(zip(names, base.tolist()))


def epoch_order(
    catalog: pa.Table, seed: int, epoch: int, mix: dict[str, float] | None = None, epoch_size: int | None = None
) -> EpochOrder:
    """The global order of one epoch over `catalog` (needs a `dataset` column). epoch_size defaults to the
    number of rows of the mixed datasets."""
    column = catalog["dataset"]
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    # One chunk (as Store.catalog returns it) is used as is: unifying or combining 8M codes would allocate
    # in Arrow's pool, which keeps ~0.5 GB of RSS for good.
    codes = (
        column.chunk(0)
        if column.num_chunks == 1
        else pa.table({"d": column}).unify_dictionaries()["d"].combine_chunks()
    )
    names = [str(n) for n in codes.dictionary.to_pylist()]
    weights = resolve_mix(names, mix)
    idx = codes.indices.to_numpy(zero_copy_only=False)
    # int32 row numbers (2^31 rows is far beyond any catalog): half the memory of int64 at 8M rows.
    by_dataset = np.argsort(idx, kind="stable").astype(np.int32)
    bounds = np.searchsorted(idx[by_dataset], np.arange(len(names) + 1))
    members = {n: by_dataset[bounds[i] : bounds[i + 1]] for i, n in enumerate(names)}
    total = epoch_size if epoch_size is not None else sum(len(members[d]) for d in weights)
    counts = _shares(total, weights)
    parts = []
    for d in weights:
        rows, need = members[d], counts[d]
        rng = np.random.default_rng([seed, epoch, _DATASET, names.index(d)])
        reps = -(-need // len(rows)) if need else 0
        drawn = np.concatenate([rng.permutation(rows) for _ in range(reps)]) if reps else rows[:0]
        parts.append(drawn[:need])
    order = np.concatenate(parts) if parts else np.zeros(0, np.int32)
    order = np.random.default_rng([seed, epoch, _ORDER]).permutation(order)
    return EpochOrder(order, tuple(weights), counts, weights, seed, epoch)


def steps_per_epoch(order: EpochOrder, batch_size: int) -> int:
    """Whole global batches only: the remainder of an epoch is dropped (and counted as such)."""
    return len(order.rows) // batch_size


def rank_positions(step: int, batch_size: int, rank: int, world_size: int) -> np.ndarray:
    """Global positions rank `rank` of `world_size` reads at global step `step`."""
    if batch_size % world_size:
        raise ValueError(f"batch_size {batch_size} must be divisible by world_size {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world of {world_size}")
    per = batch_size // world_size
    start = step * batch_size + rank * per
    return np.arange(start, start + per, dtype=np.int64)


def augment_rng(seed: int, epoch: int, position: int) -> np.random.Generator:
    """The random stream of one sample's augmentation: a function of where it sits, not who loads it."""
    return np.random.default_rng([seed, epoch, _AUGMENT, int(position)])


def replacement_position(seed: int, epoch: int, position: int, attempt: int, epoch_size: int) -> int:
    """The epoch position whose sample stands in for the one at `position` when its `attempt`-th candidate
    (1, 2, ...) failed to load: a function of where it sits, not who loads it, and drawn from the epoch's own
    order, so stand-ins follow the mix."""
    return int(np.random.default_rng([seed, epoch, _REPLACE, int(position), attempt]).integers(epoch_size))


def rows_at(table: pa.Table, row_numbers: np.ndarray) -> list[dict]:
    """A few catalog rows by number, as dicts: one-row slices are O(1), unlike a take over every chunk."""
    return [table.slice(int(r), 1).to_pylist()[0] for r in row_numbers]
