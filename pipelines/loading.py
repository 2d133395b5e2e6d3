"""From the store to training batches: one per-sample function, used by an in-process path and a Ray Data path.

    batches = training_batches(store, mix={"kitti": 1, "nyu": 1}, seed=0, epoch=0, batch_size=8)
    ds = training_dataset(store, ...same arguments...)   # ray.data.Dataset with identical tensors

Each item: rgb uint8 Bx3xHxW (a view of channels-last memory; ImageNet normalisation happens on the
device: a float32 batch is 4x the bytes to move), depth_c float32 Bx1xHxW (canonical metres; metres when cstm is none), valid bool
Bx1xHxW, k_px_c float32 Bx4 (intrinsics after the transform), f_px float32 B (the original focal, to
de-canonicalise), sample_id and dataset (lists of str), bad_samples (list of (sample id, reason): the corrupt
samples met while filling this batch; each was replaced by a stand-in drawn by position, so the batch is the
same for any number of workers).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from pipelines.cstm import SPARSE_VALID_FRAC, apply, check_mode, plan_transform
from pipelines.sampling import (
    EpochOrder,
    augment_rng,
    epoch_order,
    rank_positions,
    replacement_position,
    rows_at,
    steps_per_epoch,
)
from schemas.camera import mean_focal_px
from store import Store, as_store
from store.store import READ_COLUMNS, READ_TYPES, CorruptSampleError


@dataclass(frozen=True)
class Augment:
    """Random geometric augmentation of Metric3D: resize ratio range, crop size, flip probability."""

    cstm: str = "label"
    crop_hw: tuple[int, int] = (512, 960)
    ratio_range: tuple[float, float] = (0.9, 1.4)
    flip_prob: float = 0.5


def load_sample(store: Store, row: dict[str, Any], aug: Augment, seed: int, epoch: int, position: int) -> dict:
    """One catalog row -> one transformed training example (numpy), drawing from (seed, epoch, position)."""
    rgb, depth = store.read_arrays(row)
    k_px = (row["fx"], row["fy"], row["cx"], row["cy"])
    rng = augment_rng(seed, epoch, position)
    ratio = float(rng.uniform(*aug.ratio_range))
    crop_uv = (float(rng.random()), float(rng.random()))
    flip = bool(rng.random() < aug.flip_prob)
    plan = plan_transform(rgb.shape[:2], k_px, aug.cstm, ratio, aug.crop_hw, crop_uv, flip)
    rgb, depth, valid, k = apply(rgb, depth, plan, sparse=row["valid_frac"] < SPARSE_VALID_FRAC)
    return {
        "rgb": rgb,  # HxWx3: batches are stacked channels-last and viewed as Bx3xHxW (no per-sample copy)
        "depth_c": depth[None],
        "valid": valid[None],
        "k_px_c": np.asarray(k, np.float32),
        "f_px": np.float32(mean_focal_px(k_px)),
        "sample_id": row["sample_id"],
        "dataset": row["dataset"],
    }


# Candidates tried for one position before the loader gives up: even with 10 % of the samples corrupt, 32 failures
# in a row happen with probability 1e-32; more means the store itself is broken.
MAX_CANDIDATES = 32


class _Loader:
    """Loads the sample at a global position; a corrupt one (CorruptSampleError) is recorded and replaced by the
    stand-in sampling.replacement_position draws, so every worker count picks the same. Ids found bad are kept,
    so meeting one again costs no read (and changes nothing: it would fail again)."""

    def __init__(self, store: Store, aug: Augment, seed: int, epoch: int, plan: Callable[[], Plan]) -> None:
        self.store, self.aug, self.seed, self.epoch, self.plan = store, aug, seed, epoch, plan
        self.bad: dict[str, str] = {}

    def load(self, row: dict[str, Any], position: int) -> tuple[dict, list[tuple[str, str]]]:
        """The example for `position` and the (sample id, reason) of each candidate that failed before it."""
        failed: list[tuple[str, str]] = []
        for attempt in range(MAX_CANDIDATES):
            if attempt:
                plan = self.plan()
                stand_in = replacement_position(self.seed, self.epoch, position, attempt, len(plan.order.rows))
                row = rows_at(plan.rows, plan.order.rows[[stand_in]])[0]
            sample_id = row["sample_id"]
            if sample_id not in self.bad:
                try:
                    return load_sample(self.store, row, self.aug, self.seed, self.epoch, position), failed
                except CorruptSampleError as exc:
                    self.bad[sample_id] = str(exc)
            failed.append((sample_id, self.bad[sample_id]))
        raise CorruptSampleError(
            f"epoch {self.epoch} position {position}: {MAX_CANDIDATES} candidate samples in a row failed to load "
            f"(first: {failed[0][1]}); check the store with Store.audit(checksums=True)"
        )


class TooManyBadSamples(CorruptSampleError):
    """A run met more corrupt samples than its max_bad_samples."""


def check_bad_samples(bad: dict[str, str], limit: int) -> None:
    """Raise TooManyBadSamples, one line naming every bad sample id, when there are more than `limit`."""
    if len(bad) > limit:
        raise TooManyBadSamples(
            f"{len(bad)} corrupt samples, more than max_bad_samples={limit}: {', '.join(sorted(bad))} (reasons in "
            "the run's bad_samples.json artifact; re-ingest them, or --set max_bad_samples=N to train past them)"
        )


_ARRAY_FIELDS = ("rgb", "depth_c", "valid", "k_px_c", "f_px")


def _tensors(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Stacked numpy fields -> tensors; rgb BxHxWx3 becomes a Bx3xHxW view (channels-last memory)."""
    out = {k: torch.from_numpy(arrays[k]) for k in _ARRAY_FIELDS}
    out["rgb"] = out["rgb"].permute(0, 3, 1, 2)
    return out


def _stack(examples: list[dict]) -> dict[str, Any]:
    """Per-sample fields -> batch fields: arrays stacked, ids and dataset names as lists."""
    out: dict[str, Any] = {k: np.stack([e[k] for e in examples]) for k in _ARRAY_FIELDS}
    out["sample_id"] = [e["sample_id"] for e in examples]
    out["dataset"] = [e["dataset"] for e in examples]
    return out


def collate(examples: list[dict], bad_samples: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Examples -> one batch of tensors, with the corrupt samples met while loading them."""
    batch = _stack(examples)
    return {**batch, **_tensors(batch), "bad_samples": list(bad_samples or [])}


def training_rows(store: Store, split: str = "train", datasets: list[str] | None = None) -> pa.Table:
    """The rows training draws from, in the catalog version's fixed order (row_key)."""
    table = store.catalog(columns=READ_COLUMNS, types=READ_TYPES)
    mask = pc.equal(table["split"], split)
    if datasets:
        mask = pc.and_(mask, pc.is_in(table["dataset"], pa.array(datasets)))
    table = table.filter(mask)
    if table.num_rows == 0:
        raise ValueError(f"{store.url} has no {split} rows" + (f" in datasets {datasets}" if datasets else ""))
    return table


def catalog_digest(table: pa.Table) -> str:
    """A short digest of exactly which samples (ids and bytes) a run drew from, whatever their chunking."""
    h = hashlib.blake2b(digest_size=8)
    for chunk in table["sample_id"].chunks:
        h.update("".join(f"{sample_id}\n" for sample_id in chunk.to_pylist()).encode())
    for chunk in table["checksum"].chunks:  # fixed 16 bytes each: the raw buffer is the values, in order
        h.update(chunk.buffers()[1].to_pybytes()[chunk.offset * 16 : (chunk.offset + len(chunk)) * 16])
    return h.hexdigest()


@dataclass(frozen=True)
class Plan:
    """Everything both paths need for an epoch: the training rows, their order and the number of steps."""

    rows: pa.Table
    order: EpochOrder
    steps: int


def plan_epoch(
    store: Store, mix: dict[str, float] | None, seed: int, epoch: int, batch_size: int, split: str = "train"
) -> Plan:
    rows = training_rows(store, split, sorted(mix) if mix else None)
    order = epoch_order(rows, seed, epoch, mix)
    steps = steps_per_epoch(order, batch_size)
    if steps == 0:
        raise ValueError(f"an epoch of {len(order.rows)} samples holds no global batch of {batch_size}")
    return Plan(rows, order, steps)


def _rank_rows(plan: Plan, batch_size: int, rank: int, world_size: int, start_step: int) -> tuple[np.ndarray, pa.Table]:
    positions = (
        np.concatenate([rank_positions(s, batch_size, rank, world_size) for s in range(start_step, plan.steps)])
        if start_step < plan.steps
        else np.zeros(0, np.int64)
    )
    return positions, plan.rows.take(pa.array(plan.order.rows[positions]))


def training_batches(
    store: Store | str,
    mix: dict[str, float] | None = None,
    seed: int = 0,
    epoch: int = 0,
    batch_size: int = 8,
    rank: int = 0,
    world_size: int = 1,
    start_step: int = 0,
    cstm: str = "label",
    crop_hw: tuple[int, int] = (512, 960),
    split: str = "train",
    ratio_range: tuple[float, float] = (0.9, 1.4),
) -> Iterator[dict[str, Any]]:
    """In-process path (no Ray): this rank's batches of one epoch, from global step `start_step`."""
    store = as_store(store)
    aug = Augment(check_mode(cstm), tuple(crop_hw), tuple(ratio_range))
    plan = plan_epoch(store, mix, seed, epoch, batch_size, split)
    loader = _Loader(store, aug, seed, epoch, lambda: plan)
    for step in range(start_step, plan.steps):
        positions = rank_positions(step, batch_size, rank, world_size)
        rows = rows_at(plan.rows, plan.order.rows[positions])
        loaded = [loader.load(r, int(p)) for r, p in zip(rows, positions)]
        yield collate([example for example, _ in loaded], [b for _, bad in loaded for b in bad])


class _LoadBatch:
    """Ray Data map_batches worker: keeps its store (and open shard arrays) across batches."""

    def __init__(
        self,
        store_url: str,
        store_version: int,
        storage_options: dict,
        aug: Augment,
        seed: int,
        epoch: int,
        mix: dict[str, float] | None,
        batch_size: int,
        split: str,
    ) -> None:
        from store import open_store

        self.store = open_store(store_url, storage_options, version=store_version)  # the version planned on
        self.plan_args = (mix, seed, epoch, batch_size, split)
        self._plan: Plan | None = None
        self.loader = _Loader(self.store, aug, seed, epoch, self.plan)

    def plan(self) -> Plan:
        """The epoch's plan, made only when a stand-in is needed: most actors never read the whole catalog."""
        if self._plan is None:
            self._plan = plan_epoch(self.store, *self.plan_args)
        return self._plan

    def __call__(self, batch: pa.Table) -> dict[str, np.ndarray]:
        loaded = [self.loader.load(r, r["position"]) for r in batch.to_pylist()]
        out = _stack([example for example, _ in loaded])
        return {
            **out,
            "sample_id": np.array(out["sample_id"], object),
            "dataset": np.array(out["dataset"], object),
            # A column holds one value per sample: each one's failed candidates, as JSON.
            "bad_samples": np.array([json.dumps(bad) for _, bad in loaded], object),
        }


def training_dataset(
    store: Store | str,
    mix: dict[str, float] | None = None,
    seed: int = 0,
    epoch: int = 0,
    batch_size: int = 8,
    rank: int = 0,
    world_size: int = 1,
    start_step: int = 0,
    cstm: str = "label",
    crop_hw: tuple[int, int] = (512, 960),
    split: str = "train",
    ratio_range: tuple[float, float] = (0.9, 1.4),
    num_cpus: float = 1.0,
    concurrency: int = 1,
):
    """Ray Data path: a ray.data.Dataset of this rank's batches (one block per batch, order preserved).

    Iterate it with `iter_torch(ds, batch_size // world_size)` to get the same dicts as training_batches."""
    import ray.data

    store = as_store(store)
    aug = Augment(check_mode(cstm), tuple(crop_hw), tuple(ratio_range))
    plan = plan_epoch(store, mix, seed, epoch, batch_size, split)
    per = batch_size // world_size
    positions, rows = _rank_rows(plan, batch_size, rank, world_size, start_step)
    rows = rows.append_column("position", pa.array(positions))
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    blocks = [rows.slice(i, per) for i in range(0, rows.num_rows, per)] or [rows]
    return ray.data.from_arrow(blocks).map_batches(
        _LoadBatch,
        fn_constructor_kwargs={
            "store_url": store.url,
            "store_version": store.version,
            "storage_options": store.storage_options,
            "aug": aug,
            "seed": seed,
            "epoch": epoch,
            "mix": mix,
            "batch_size": batch_size,
            "split": split,
        },
        batch_size=per,
        batch_format="pyarrow",
        num_cpus=num_cpus,
        compute=ray.data.ActorPoolStrategy(size=concurrency),
    )


def iter_torch(ds, batch_size: int) -> Iterator[dict[str, Any]]:
    """Batches of a training_dataset as the same dicts of tensors the in-process path yields."""
    for b in ds.iter_batches(batch_size=batch_size, batch_format="numpy"):
        # Ray hands out read-only buffers; torch wants writable ones.
        out: dict[str, Any] = _tensors({k: np.array(b[k], copy=True) for k in _ARRAY_FIELDS})
        out["sample_id"] = [str(s) for s in b["sample_id"]]
        out["dataset"] = [str(s) for s in b["dataset"]]
        out["bad_samples"] = [(sid, reason) for text in b["bad_samples"] for sid, reason in json.loads(text)]
        yield out
