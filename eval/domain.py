"""Zero-shot or in-domain, and why: a benchmark split against what a model's training saw.

A benchmark is zero-shot for a model only if (1) the model's lineage names its training datasets and the
benchmark's dataset is not one of them, (2) no training dataset shares a source with it (the adapters'
`AdapterInfo.shares`, read both ways: sunrgbd holds the NYUv2 frames, so training on sunrgbd makes `nyu`
in-domain and the reverse), and (3) no scene id, nor frame id of a scene-less row, of the benchmark rows occurs in
the training rows (split `train` of the training datasets) of the catalog version the model trained on
(`Loaded.store_uri` / `store_version`; when those are unknown or unreachable, the benchmark store's own rows of
those datasets, and the reason says so). Every verdict carries a one-line reason for the report.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from eval.models import Loaded
from store import Store, StoreError, open_store

_EXAMPLES = 3  # overlapping ids named in a reason


@dataclass(frozen=True)
class Domain:
    """zero_shot: True, False or None (the model's training datasets are unknown); reason: says which and why."""

    zero_shot: bool | None
    reason: str


def shared_sources(adapter_a: str, adapter_b: str) -> list[str]:
    """What two adapters' sources have in common, as either one's AdapterInfo.shares declares it (empty: nothing)."""
    from ingest.registry import all_adapters  # every adapter module: imported when a report needs it, not at --help

    adapters = all_adapters()
    found = []
    for mine, other in ((adapter_a, adapter_b), (adapter_b, adapter_a)):
        if mine in adapters:
            found += [what for name, what in adapters[mine].info.shares if name == other and what not in found]
    return found


@functools.lru_cache(maxsize=8)
def _train_rows(url: str, version: int, datasets: tuple[str, ...], storage_json: str) -> pa.Table:
    # A catalog version never changes, so its rows are cached per (store, version, datasets, storage options).
    store = open_store(url, json.loads(storage_json), version=version)
    cat = store.catalog(columns=["dataset", "split", "adapter", "scene", "frame"])
    cat = pa.table({name: cat[name].cast(pa.string()) for name in cat.column_names})
    keep = pc.and_(pc.equal(cat["split"], "train"), pc.is_in(cat["dataset"], pa.array(datasets, pa.string())))
    return cat.filter(keep)


def _training_catalog(model: Loaded, store: Store) -> tuple[pa.Table, str]:
    """The training rows of the model's datasets, and where they were read from (for the reason)."""
    datasets = tuple(sorted(model.train_datasets or ()))
    if model.store_uri is not None and model.store_version is not None:
        try:
            rows = _train_rows(model.store_uri, model.store_version, datasets, "{}")
            return rows, f"{model.store_uri}@v{model.store_version}"
        except (StoreError, OSError) as exc:
            note = f"the training catalog {model.store_uri}@v{model.store_version} is unreadable: {exc}"
    else:
        note = "the training catalog is not recorded"
    rows = _train_rows(store.url, store.version, datasets, json.dumps(store.storage_options, sort_keys=True))
    return rows, f"{store.url}@v{store.version}, the scored store: {note}"


def _overlap(train: pa.Table, bench_ids: set[str], column: str, scene_less: bool) -> dict[str, list[str]]:
    """Per training dataset, the sorted ids of `column` it shares with bench_ids (only rows without a scene when
    scene_less: a frame id means nothing across scenes)."""
    if not bench_ids:
        return {}
    rows = train.filter(pc.equal(train["scene"], "")) if scene_less else train
    hits = rows.filter(pc.is_in(rows[column], pa.array(sorted(bench_ids), pa.string())))
    out: dict[str, set[str]] = {}
    for dataset, value in zip(hits["dataset"].to_pylist(), hits[column].to_pylist()):
        out.setdefault(dataset, set()).add(value)
    return {d: sorted(v) for d, v in sorted(out.items())}


def _ids(found: list[str]) -> str:
    more = ", ..." if len(found) > _EXAMPLES else ""
    return ", ".join(found[:_EXAMPLES]) + more


def domain_of(model: Loaded, dataset: str, rows: list[dict[str, Any]], store: Store) -> Domain:
    """The verdict for benchmark `dataset` (its scored catalog rows `rows`, read from `store`) and `model`."""
    if model.train_datasets is None:
        return Domain(None, "unknown lineage: the model records no training datasets")
    reasons = [f"trained on {dataset}"] if dataset in model.train_datasets else []
    train, source = _training_catalog(model, store)
    adapter_of = dict(zip(train["dataset"].to_pylist(), train["adapter"].to_pylist()))
    bench_adapter = rows[0]["adapter"] if rows else dataset
    for name in sorted(model.train_datasets - {dataset}):
        for what in shared_sources(adapter_of.get(name, name), bench_adapter):
            reasons.append(f"shares {what} with {name}")
    scenes = {r["scene"] for r in rows if r["scene"]}
    frames = {r["frame"] for r in rows if not r["scene"] and r["frame"]}
    for name, found in _overlap(train, scenes, "scene", False).items():
        reasons.append(f"{len(found)} of its {len(scenes)} scenes overlap with {name} ({_ids(found)})")
    for name, found in _overlap(train, frames, "frame", True).items():
        reasons.append(f"{len(found)} of its {len(frames)} frames overlap with {name} ({_ids(found)})")
    if reasons:
        return Domain(False, "in-domain: " + "; ".join(reasons))
    seen = ", ".join(sorted(model.train_datasets)) or "nothing"
    return Domain(
        True,
        f"zero-shot: trained on {seen}; no shared source, scene or frame ({len(rows)} rows against "
        f"{train.num_rows} training rows of {source})",
    )
