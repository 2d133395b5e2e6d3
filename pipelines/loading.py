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

import functools
import hashlib
import json
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from pipelines.cstm import check_mode, plan_transform, splat_points, warp_depth_map, warp_rgb
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
from schemas.sample import SPARSE_VALID_FRAC
from store import Store, as_store
from store.codecs import DepthGrid, DepthPoints, points_of
from store.store import READ_COLUMNS, READ_TYPES, CorruptSampleError


@dataclass(frozen=True)
class Augment:
    """Random geometric augmentation of Metric3D: resize ratio range, crop size, flip probability."""

    cstm: str = "label"
    crop_hw: tuple[int, int] = (512, 960)
    ratio_range: tuple[float, float] = (0.9, 1.4)
    flip_prob: float = 0.5


@dataclass
class Slots:
    """One batch's output arrays, zero-filled (zero = padding / invalid), written in place sample by sample:
    rgb uint8 BxHxWx3, depth_c float32 Bx1xHxW, k_px_c float32 Bx4, f_px float32 B."""

    rgb: np.ndarray
    depth_c: np.ndarray
    k_px_c: np.ndarray
    f_px: np.ndarray

    @classmethod
    def zeros(cls, n: int, crop_hw: tuple[int, int]) -> Slots:
        h, w = crop_hw
        return cls(
            np.zeros((n, h, w, 3), np.uint8),
            np.zeros((n, 1, h, w), np.float32),
            np.zeros((n, 4), np.float32),
            np.zeros(n, np.float32),
        )


def transform_into(
    slots: Slots, i: int, rgb: np.ndarray, depth: DepthPoints | DepthGrid, row: dict[str, Any], aug: Augment, rng
) -> None:
    """Draw a sample's augmentation from `rng` and write its transformed arrays into slot i."""
    k_px = (row["fx"], row["fy"], row["cx"], row["cy"])
    ratio = float(rng.uniform(*aug.ratio_range))
    crop_uv = (float(rng.random()), float(rng.random()))
    flip = bool(rng.random() < aug.flip_prob)
    plan = plan_transform(rgb.shape[:2], k_px, aug.cstm, ratio, aug.crop_hw, crop_uv, flip)
    warp_rgb(rgb, plan, out=slots.rgb[i])
    out_depth = slots.depth_c[i, 0]
    if isinstance(depth, DepthGrid) and row["valid_frac"] < SPARSE_VALID_FRAC:
        depth = points_of(depth.values, depth.scale)  # a sparse map stored as a map (older stores)
    if isinstance(depth, DepthPoints):
        splat_points(depth.index, depth.depth_m(), depth.hw, plan, out=out_depth)
    else:
        warp_depth_map(depth.values, plan, depth.scale, out=out_depth)
    slots.k_px_c[i] = plan.k_px
    slots.f_px[i] = mean_focal_px(k_px)


def load_sample(store: Store, row: dict[str, Any], aug: Augment, seed: int, epoch: int, position: int) -> dict:
    """One catalog row -> one transformed training example (numpy), drawing from (seed, epoch, position)."""
    slots = Slots.zeros(1, aug.crop_hw)
    rgb, depth = store.read_stored(row)
    transform_into(slots, 0, rgb, depth, row, aug, augment_rng(seed, epoch, position))
    return {
        "rgb": slots.rgb[0],
        "depth_c": slots.depth_c[0],
        "valid": slots.depth_c[0] > 0,
        "k_px_c": slots.k_px_c[0],
        "f_px": slots.f_px[0],
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

    def load(self, row: dict[str, Any], position: int, slots: Slots, i: int) -> tuple[str, str, list[tuple[str, str]]]:
        """Write the example for `position` into slot i; return its sample id, dataset and the (sample id,
        reason) of each candidate that failed before it."""
        failed: list[tuple[str, str]] = []
        for attempt in range(MAX_CANDIDATES):
            if attempt:
                plan = self.plan()
                stand_in = replacement_position(self.seed, self.epoch, position, attempt, len(plan.order.rows))
                row = rows_at(plan.rows, plan.order.rows[[stand_in]])[0]
            sample_id = row["sample_id"]
            if sample_id not in self.bad:
                try:
                    rgb, depth = self.store.read_stored(row)
                except CorruptSampleError as exc:
                    self.bad[sample_id] = str(exc)
                else:
                    rng = augment_rng(self.seed, self.epoch, position)
                    transform_into(slots, i, rgb, depth, row, self.aug, rng)
                    return sample_id, row["dataset"], failed
            failed.append((sample_id, self.bad[sample_id]))
        raise CorruptSampleError(
            f"epoch {self.epoch} position {position}: {MAX_CANDIDATES} candidate samples in a row failed to load "
            f"(first: {failed[0][1]}); check the store with Store.audit(checksums=True)"
        )

    def batch(self, rows: list[dict[str, Any]], positions: np.ndarray) -> dict[str, Any]:
        """The numpy batch for these rows at these global positions: arrays, ids, datasets, and per sample
        the candidates that failed before it. No `valid`: it is depth_c > 0, made where the batch is used."""
        slots = Slots.zeros(len(rows), self.aug.crop_hw)
        loaded = [self.load(row, int(p), slots, i) for i, (row, p) in enumerate(zip(rows, positions))]
        return {
            "rgb": slots.rgb,
            "depth_c": slots.depth_c,
            "k_px_c": slots.k_px_c,
            "f_px": slots.f_px,
            "sample_id": [sample_id for sample_id, _, _ in loaded],
            "dataset": [dataset for _, dataset, _ in loaded],
            "failed": [failed for _, _, failed in loaded],
        }


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
        batch = loader.batch(rows, positions)
        failed = batch.pop("failed")
        batch["valid"] = batch["depth_c"] > 0
        yield {**batch, **_tensors(batch), "bad_samples": [b for bad in failed for b in bad]}


@functools.lru_cache(maxsize=2)
def _worker_store(store_url: str, store_version: int, storage_options: str) -> Store:
    """The store at the planned version, opened once per Ray worker process (reused by every task it runs)."""
    from store import open_store

    return open_store(store_url, json.loads(storage_options), version=store_version)


@functools.lru_cache(maxsize=2)
def _worker_loader(
    store_url: str, store_version: int, storage_options: str, aug: Augment, seed: int, epoch: int, plan_args: str
) -> _Loader:
    """One epoch's loader in a Ray worker process: its bad-sample memory lasts the epoch, and the plan (the
    whole catalog) is made only when a stand-in is needed, which most workers never do."""
    store = _worker_store(store_url, store_version, storage_options)
    mix, batch_size, split = json.loads(plan_args)
    return _Loader(
        store, aug, seed, epoch, functools.cache(lambda: plan_epoch(store, mix, seed, epoch, batch_size, split))
    )


def _load_block(batch: pa.Table, context: dict[str, Any]) -> dict[str, np.ndarray]:
    """Ray Data map_batches task: rows (a few batches' worth) -> their arrays, in row order."""
    loader = _worker_loader(**context)
    rows = batch.to_pylist()
    out = loader.batch(rows, np.array([r["position"] for r in rows]))  # no valid mask through the object store
    return {
        **out,
        "sample_id": np.array(out["sample_id"], object),
        "dataset": np.array(out["dataset"], object),
        # A column holds one value per sample: each one's failed candidates, as JSON.
        "failed": np.array([json.dumps(bad) for bad in out["failed"]], object),
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
    batches_per_task: int = 4,
):
    """Ray Data path: a ray.data.Dataset of this rank's samples in batch order (order preserved), loaded by
    `concurrency` tasks at a time of `num_cpus` each, `batches_per_task` batches per task (Ray's cost per task and
    per block is paid once for them).

    Iterate it with `iter_torch(ds, batch_size // world_size)` to get the same dicts as training_batches."""
    import ray.data

    store = as_store(store)
    aug = Augment(check_mode(cstm), tuple(crop_hw), tuple(ratio_range))
    plan = plan_epoch(store, mix, seed, epoch, batch_size, split)
    per = batch_size // world_size
    positions, rows = _rank_rows(plan, batch_size, rank, world_size, start_step)
    rows = rows.append_column("position", pa.array(positions))
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    rows_per_task = per * batches_per_task
    blocks = [rows.slice(i, rows_per_task) for i in range(0, rows.num_rows, rows_per_task)] or [rows]
    context = {
        "store_url": store.url,
        "store_version": store.version,
        "storage_options": json.dumps(store.storage_options, sort_keys=True),
        "aug": aug,
        "seed": seed,
        "epoch": epoch,
        "plan_args": json.dumps([mix, batch_size, split]),
    }
    # Tasks, not actors: Ray keeps its worker processes between tasks and epochs, so imports and the store's
    # opening are paid once per process instead of by a new actor pool every epoch.
    return ray.data.from_arrow(blocks).map_batches(
        _load_block,
        fn_kwargs={"context": context},
        batch_size=rows_per_task,
        batch_format="pyarrow",
        num_cpus=num_cpus,
        concurrency=concurrency,
    )


def iter_torch(ds, batch_size: int) -> Iterator[dict[str, Any]]:
    """Batches of a training_dataset as the same dicts of tensors the in-process path yields. The arrays are
    views of Ray's object store, not copies (a copy costs as much CPU as the transforms that made them):
    read-only, as training uses them; copy a tensor before writing into it."""
    for b in ds.iter_batches(batch_size=batch_size, batch_format="numpy"):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "The given NumPy array is not writable", UserWarning)
            out: dict[str, Any] = _tensors({**b, "valid": b["depth_c"] > 0})
        out["sample_id"] = [str(s) for s in b["sample_id"]]
        out["dataset"] = [str(s) for s in b["dataset"]]
        out["bad_samples"] = [(sid, reason) for text in b["failed"] for sid, reason in json.loads(text)]
        yield out
