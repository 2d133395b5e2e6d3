"""Ingest: list items on the driver, cut them into shards, load + validate + write each shard in a Ray task.

Shards are cut from the full, sorted item list with a fixed size, and a shard's name is a digest of its
sample ids, so a re-run finds the same shards and skips those already committed.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from tqdm import tqdm

from ingest.base import Item
from ingest.registry import get_adapter
from ingest.source import Source, SourceError
from schemas.sample import SampleError
from store import open_store
from store.layout import check_dataset_name
from store.writer import Rejected, write_shard

DEFAULT_SHARD_SIZE = 64


@dataclass(frozen=True)
class ShardSpec:
    dataset: str
    name: str
    items: tuple[Item, ...]


@dataclass(frozen=True)
class ShardResult:
    dataset: str
    name: str
    ingested: int
    rejected: tuple[tuple[str, str], ...]  # (file, reason)


@dataclass
class Summary:
    ingested: int = 0
    already_present: int = 0
    quarantined: int = 0
    reasons: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        rate = self.ingested / self.seconds if self.seconds > 0 else 0.0
        out = [
            f"ingested {self.ingested}, already present {self.already_present}, "
            f"quarantined {self.quarantined} ({self.seconds:.1f} s, {rate:.1f} samples/s)"
        ]
        out += [f"  quarantined x{n}: {reason}" for reason, n in self.reasons.most_common(5)]
        return out


def plan_shards(items: list[Item], shard_size: int) -> list[ShardSpec]:
    by_dataset: dict[str, list[Item]] = {}
    for item in items:
        by_dataset.setdefault(item.dataset, []).append(item)
    shards = []
    for dataset, group in by_dataset.items():
        check_dataset_name(dataset)
        for i in range(0, len(group), shard_size):
            chunk = tuple(group[i : i + shard_size])
            digest = hashlib.blake2b("\n".join(it.sample_id for it in chunk).encode(), digest_size=6).hexdigest()
            shards.append(ShardSpec(dataset, f"{chunk[0].split}-{i // shard_size:06d}-{digest}", chunk))
    return shards


def _mark_duplicates(items: list[Item]) -> list[Item]:
    """A second item with an id already seen (an index listing a frame twice) is quarantined, not dropped."""
    seen: set[str] = set()
    out = []
    for item in items:
        if item.sample_id in seen:
            item = replace(item, extra={**item.extra, "duplicate": True})
        seen.add(item.sample_id)
        out.append(item)
    return out


def run_shard(
    adapter_name: str, src: Source, store_url: str, storage_options: dict[str, Any], spec: ShardSpec, rgb_codec: str
) -> ShardResult:
    """Load, validate and commit one shard. Every input either becomes a sample or a quarantine row."""
    adapter = get_adapter(adapter_name)
    store = open_store(store_url, storage_options)
    samples, rejected = [], []
    for item in spec.items:
        if item.extra.get("duplicate"):
            reason = "duplicate: an earlier item has the same sample id (the index lists this frame twice)"
            rejected.append(Rejected(item.key, item.sample_id, src.uri(item.main_file), reason, item.split))
            continue
        try:
            samples.append(adapter.load(src, item))
            continue
        except SourceError as exc:
            file, reason = src.uri(exc.file) if not exc.file.startswith("..") else exc.file, exc.reason
        except SampleError as exc:
            file, reason = src.uri(item.main_file), str(exc)
        except Exception as exc:  # noqa: BLE001 - an input must never take the run down: quarantine it
            file, reason = src.uri(item.main_file), f"{type(exc).__name__}: {exc}"
        rejected.append(Rejected(item.key, item.sample_id, file, reason, item.split))
    write_shard(store, spec.dataset, spec.name, samples, rejected, rgb_codec=rgb_codec)
    return ShardResult(spec.dataset, spec.name, len(samples), tuple((r.file, r.reason) for r in rejected))


def ingest(
    adapter_name: str,
    src_url: str,
    store_url: str,
    split: str | None = None,
    name: str | None = None,
    limit: int | None = None,
    workers: int = 2,
    shard_size: int = DEFAULT_SHARD_SIZE,
    rgb_codec: str = "auto",
    storage_options: dict[str, Any] | None = None,
    progress: bool = True,
) -> Summary:
    """Ingest a dataset's native files into a store. `workers=0` runs in this process (no Ray)."""
    adapter = get_adapter(adapter_name)
    options = dict(storage_options or {})
    src = Source(src_url, options)
    src.check_readable()
    store = open_store(store_url, options, create=True)
    t0 = time.perf_counter()
    items = sorted(adapter.items(src, split, name or adapter.info.name), key=lambda it: (it.dataset, it.sample_id))
    if limit is not None:
        items = items[:limit]
    items = _mark_duplicates(items)

    summary = Summary()
    todo = []
    present_ids: set[str] | None = None
    committed: dict[str, set[str]] = {}  # one listing per dataset, not one per shard
    for spec in plan_shards(items, shard_size):
        if spec.dataset not in committed:
            committed[spec.dataset] = store.committed_shards(spec.dataset)
        if spec.name in committed[spec.dataset]:
            summary.already_present += len(spec.items)
            continue
        if present_ids is None:
            present_ids = set(store.catalog(columns=["sample_id"])["sample_id"].to_pylist())
            present_ids |= set(store.quarantine()["sample_id"].to_pylist())
        fresh = tuple(it for it in spec.items if it.sample_id not in present_ids)
        summary.already_present += len(spec.items) - len(fresh)
        if fresh:
            todo.append(ShardSpec(spec.dataset, spec.name, fresh))

    bar = tqdm(total=sum(len(s.items) for s in todo), unit="sample", disable=not progress, desc="ingest")
    args = (adapter_name, src, store_url, options)
    for result in _execute(todo, args, rgb_codec, workers):
        summary.ingested += result.ingested
        summary.quarantined += len(result.rejected)
        summary.reasons.update(reason for _, reason in result.rejected)
        bar.update(result.ingested + len(result.rejected))
        bar.set_postfix(quarantined=summary.quarantined)
    bar.close()
    summary.seconds = time.perf_counter() - t0
    return summary


def _execute(todo: list[ShardSpec], args: tuple, rgb_codec: str, workers: int):
    if workers <= 0 or not todo:
        for spec in todo:
            yield run_shard(*args, spec, rgb_codec)
        return
    import ray

    from infra.ray_runtime import init_ray

    init_ray(workers)
    task = ray.remote(num_cpus=1, max_retries=2)(run_shard)
    # Bounded in-flight tasks: the driver holds only a few shards' worth of results at a time.
    pending: list = []
    queue = iter(todo)
    while True:
        while len(pending) < 2 * workers and (spec := next(queue, None)) is not None:
            pending.append(task.remote(*args, spec, rgb_codec))
        if not pending:
            return
        done, pending = ray.wait(pending, num_returns=1)
        yield ray.get(done[0])
