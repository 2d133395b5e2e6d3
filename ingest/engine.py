"""Ingest: list items on the driver, cut them into shards, load + validate + write each shard's arrays in a
Ray task, and commit the shards' rows on the driver in batched Delta transactions (store.commit).

Shards are cut from the full, sorted item list with a fixed size. A re-run checks item ids against the
catalog and quarantine versions it opens and does only the rest; concurrent runs cannot commit an id twice
(the committer checks ids against the version each commit lands on).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from ingest.base import Item
from ingest.registry import get_adapter
from ingest.source import MAX_FILE_BYTES, MAX_IMAGE_PIXELS, Source, SourceUnavailable
from schemas.sample import SampleError
from store import Store, open_store
from store.commit import COMMIT_ROWS, COMMIT_SECONDS, Committer
from store.layout import check_dataset_name
from store.writer import Rejected, Staged, stage_shard

DEFAULT_SHARD_SIZE = 64


@dataclass(frozen=True)
class ShardSpec:
    dataset: str
    name: str
    items: tuple[Item, ...]


@dataclass(frozen=True)
class ShardResult:
    """A shard whose arrays are written, with its rows still to commit."""

    dataset: str
    name: str
    staged: Staged

    @property
    def items(self) -> int:
        return self.staged.catalog.num_rows + self.staged.quarantine.num_rows


@dataclass
class Summary:
    ingested: int = 0
    already_present: int = 0
    quarantined: int = 0
    reasons: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    commit_seconds: float = 0.0
    version: int | None = None

    def lines(self) -> list[str]:
        rate = self.ingested / self.seconds if self.seconds > 0 else 0.0
        out = [
            f"ingested {self.ingested}, already present {self.already_present}, "
            f"quarantined {self.quarantined} ({self.seconds:.1f} s, {rate:.1f} samples/s); "
            f"catalog version {self.version}"
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
    """Load, validate and write one shard's arrays. Every input becomes a sample or a quarantine row, except
    on a transient storage fault (SourceUnavailable, MemoryError): that stops the run and nothing is recorded."""
    from ingest.source import SourceError

    adapter = get_adapter(adapter_name)
    store = open_store(store_url, storage_options)
    samples, rejected = [], []
    for item in spec.items:
        if item.extra.get("duplicate"):
            reason = "duplicate: an earlier item has the same sample id (the index lists this frame twice)"
            rejected.append(Rejected(item.key, item.sample_id, src.label(item.main_file), reason, item.split))
            continue
        try:
            samples.append(adapter.load(src, item))
            continue
        except (SourceUnavailable, MemoryError):
            raise
        except SourceError as exc:
            file, reason = src.label(exc.file), exc.reason
        except SampleError as exc:
            file, reason = src.label(item.main_file), str(exc)
        except Exception as exc:  # noqa: BLE001 - a bad input must never take the run down: quarantine it
            file, reason = src.label(item.main_file), f"{type(exc).__name__}: {exc}"
        rejected.append(Rejected(item.key, item.sample_id, file, reason, item.split))
    staged = stage_shard(store, spec.dataset, spec.name, samples, rejected, rgb_codec=rgb_codec)
    return ShardResult(spec.dataset, spec.name, staged)


def _present(store: Store, items: list[Item], retry_quarantined: bool) -> list[bool]:
    """Which items need no work: ids in the catalog, or (unless retrying them) in the quarantine."""
    if not items:
        return []
    ids = pa.array([it.sample_id for it in items], pa.string())
    catalog = store.catalog(columns=["dataset", "sample_id"])
    known = catalog["sample_id"]
    if not retry_quarantined:
        known = pa.chunked_array([*known.chunks, *store.quarantine()["sample_id"].chunks], pa.string())
    return pc.is_in(ids, value_set=known.combine_chunks()).to_pylist()


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
    retry_quarantined: bool = False,
    commit_rows: int = COMMIT_ROWS,
    commit_seconds: float = COMMIT_SECONDS,
    create_bucket: bool = False,
    max_image_pixels: int = MAX_IMAGE_PIXELS,
    max_file_bytes: int = MAX_FILE_BYTES,
) -> Summary:
    """Ingest a dataset's native files into a store. `workers=0` runs in this process (no Ray).
    `retry_quarantined`: read only the quarantined items again and commit those that now pass.
    `create_bucket`: make the store's bucket when missing (else that is an error: a typo must not create one).
    An input file over `max_file_bytes` (or expanding beyond it) or an image over `max_image_pixels` is
    quarantined before it is decoded."""
    adapter = get_adapter(adapter_name)
    options = dict(storage_options or {})
    src = Source(src_url, options, max_file_bytes, max_image_pixels)
    src.check_readable()
    store = open_store(store_url, options, create=True, create_bucket=create_bucket)
    t0 = time.perf_counter()
    items = sorted(adapter.items(src, split, name or adapter.info.name), key=lambda it: (it.dataset, it.sample_id))
    if limit is not None:
        items = items[:limit]
    items = _mark_duplicates(items)

    summary = Summary()
    snapshot = store.at_version()  # ids are checked against these versions; the committer catches up from them
    present = _present(snapshot, items, retry_quarantined)
    if retry_quarantined:
        quarantined = set(snapshot.quarantine()["sample_id"].to_pylist())
        present = [p or it.sample_id not in quarantined for it, p in zip(items, present)]
    skip = {it.sample_id for it, p in zip(items, present) if p}
    todo = []
    for spec in plan_shards(items, shard_size):
        fresh = tuple(it for it in spec.items if it.sample_id not in skip)
        summary.already_present += len(spec.items) - len(fresh)
        if fresh:
            todo.append(ShardSpec(spec.dataset, spec.name, fresh))

    operation = "retry_quarantined" if retry_quarantined else "ingest"
    base = (snapshot.version, snapshot.quarantine_version)
    committer = Committer(store, operation, base=base, commit_rows=commit_rows, commit_seconds=commit_seconds)
    bar = tqdm(total=sum(len(s.items) for s in todo), unit="sample", disable=not progress, desc="ingest")
    args = (adapter_name, src, store_url, options)
    try:
        for result in _execute(todo, args, rgb_codec, workers):
            summary.reasons.update(result.staged.quarantine["reason"].to_pylist())
            t_commit = time.perf_counter()
            committer.add(result.staged.catalog, result.staged.quarantine)
            summary.commit_seconds += time.perf_counter() - t_commit
            bar.update(result.items)
            bar.set_postfix(committed=committer.result.committed, quarantined=summary.reasons.total())
    except BaseException:
        bar.close()
        try:  # whole shards staged before the failure are committed: nothing written is lost
            committer.close()
        except Exception:  # noqa: BLE001 - the first error is the one to report
            pass
        raise
    bar.close()
    t_commit = time.perf_counter()
    totals = committer.close()
    summary.commit_seconds += time.perf_counter() - t_commit
    summary.ingested, summary.quarantined = totals.committed, totals.quarantined
    summary.already_present += totals.duplicates
    summary.version = totals.versions[-1] if totals.versions else store.version
    summary.seconds = time.perf_counter() - t0
    return summary


def _execute(todo: list[ShardSpec], args: tuple, rgb_codec: str, workers: int) -> Iterator[ShardResult]:
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
        try:
            result = ray.get(done[0])
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, SourceUnavailable):
                raise exc.cause from None  # one clear line for the CLI, not the remote traceback
            raise
        yield result
