"""Corrupt samples in training: skipped, recorded, replaced by the same stand-in for any number of workers (and on
the Ray Data path); past max_bad_samples the run stops with one line naming them, count and list in MLflow."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pytest
import torch

from pipelines import iter_torch, plan_epoch, training_batches, training_dataset
from pipelines.loading import Augment, TooManyBadSamples, check_bad_samples, load_sample
from pipelines.sampling import replacement_position, rows_at
from store import layout, open_store
from train import run as train_run

pytestmark = pytest.mark.timeout(300)
CROP = (48, 64)
SEED, EPOCH, BATCH = 3, 0, 8  # epoch 0: a training run meets the corrupt sample in its first epoch
ARRAYS = ("rgb", "depth_c", "valid", "k_px_c", "f_px")


@pytest.fixture(scope="module")
def corrupt(tiny_store: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, int]:
    """A copy of the tiny store with one byte flipped in the rgb of the sample at one epoch position (a sample
    met once in the epoch): (store, its id, the position)."""
    url = str(tmp_path_factory.mktemp("corrupt") / "store")
    shutil.copytree(tiny_store, url)
    store = open_store(url)
    plan = plan_epoch(store, None, SEED, EPOCH, BATCH)
    used = list(plan.order.rows[: plan.steps * BATCH])
    position = next(p for p in range(5, len(used)) if used.count(used[p]) == 1)
    row = rows_at(plan.rows, plan.order.rows[[position]])[0]
    shard = Path(layout.array_file(store.root, row["dataset"], row["shard"], "rgb"))
    data = bytearray(shard.read_bytes())
    data[row["rgb_offset"] + row["rgb_bytes"] // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    return url, row["sample_id"], position


def _global_batches(store: str, world: int) -> list[dict]:
    """Every rank's batches of the epoch, concatenated per step in rank order (the global batches)."""
    kw = {"seed": SEED, "epoch": EPOCH, "batch_size": BATCH, "crop_hw": CROP}
    ranks = [list(training_batches(store, rank=r, world_size=world, **kw)) for r in range(world)]
    out = []
    for step in range(len(ranks[0])):
        parts = [ranks[r][step] for r in range(world)]
        batch = {k: torch.cat([p[k] for p in parts]) for k in ARRAYS}
        batch["sample_id"] = [s for p in parts for s in p["sample_id"]]
        batch["bad_samples"] = [b for p in parts for b in p["bad_samples"]]
        out.append(batch)
    return out


def _same(a: dict, b: dict) -> None:
    assert a["sample_id"] == b["sample_id"] and a["bad_samples"] == b["bad_samples"]
    for k in ARRAYS:
        assert torch.equal(a[k], b[k]), k


def test_a_corrupt_sample_is_replaced_by_the_same_stand_in_for_1_2_4_workers(tiny_store, corrupt):
    url, bad_id, position = corrupt
    one = _global_batches(url, 1)
    for world in (2, 4):
        for a, b in zip(one, _global_batches(url, world), strict=True):
            _same(a, b)
    step, slot = divmod(position, BATCH)
    found = [b for batch in one for b in batch["bad_samples"]]
    assert len(found) == 1 and found[0][0] == bad_id and "checksum mismatch" in found[0][1]
    assert one[step]["bad_samples"] == found
    # Every other position holds what the intact store gives; the corrupt one a stand-in drawn by position,
    # with that position's augmentation.
    clean = _global_batches(tiny_store, 1)
    ids = [s for b in one for s in b["sample_id"]]
    clean_ids = [s for b in clean for s in b["sample_id"]]
    assert [i for p, i in enumerate(ids) if p != position] == [i for p, i in enumerate(clean_ids) if p != position]
    assert ids[position] != bad_id
    store = open_store(tiny_store)
    plan = plan_epoch(store, None, SEED, EPOCH, BATCH)
    stand_in = replacement_position(SEED, EPOCH, position, 1, len(plan.order.rows))
    row = rows_at(plan.rows, plan.order.rows[[stand_in]])[0]
    assert ids[position] == row["sample_id"]
    expected = load_sample(store, row, Augment(crop_hw=CROP), SEED, EPOCH, position)
    assert torch.equal(one[step]["depth_c"][slot], torch.from_numpy(expected["depth_c"]))
    for k in ARRAYS:
        keep = [i for i in range(BATCH) if i != slot]
        assert torch.equal(one[step][k][keep], clean[step][k][keep]), k


@pytest.mark.ray
def test_ray_data_path_replaces_it_with_identical_tensors(corrupt, ray_runtime):
    url, bad_id, position = corrupt
    world = 2
    rank = (position % BATCH) // (BATCH // world)
    kw = {"seed": SEED, "epoch": EPOCH, "batch_size": BATCH, "rank": rank, "world_size": world, "crop_hw": CROP}
    local = list(training_batches(url, **kw))
    ray_batches = list(iter_torch(training_dataset(url, **kw), BATCH // world))
    assert len(local) == len(ray_batches) > 0
    for a, b in zip(local, ray_batches, strict=True):
        _same(a, b)
    assert [b[0] for batch in ray_batches for b in batch["bad_samples"]] == [bad_id]


def test_check_bad_samples_names_them_in_one_line():
    check_bad_samples({"a/train/1": "checksum mismatch"}, 1)
    with pytest.raises(TooManyBadSamples, match=r"^2 corrupt samples, more than max_bad_samples=1: a/1, b/2 \("):
        check_bad_samples({"b/2": "checksum mismatch", "a/1": "cannot read its arrays"}, 1)


@pytest.mark.ray
@pytest.mark.slow
def test_max_bad_samples_0_stops_the_run_naming_the_sample(corrupt, ray_runtime, mlflow_sqlite, tmp_path, capsys):
    url, bad_id, position = corrupt
    sets = [f"seed={SEED}", "steps=4", "crop_hw=48,64", "log_every=1", "preview_count=0", "max_bad_samples=0"]
    sets += [f"storage_path={tmp_path / 'ray'}", "experiment=bad-samples", "registered_model=bad-samples"]
    assert train_run.main(["--config", "tiny", "--store", url, *[a for s in sets for a in ("--set", s)]]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]  # Ray/MLflow log too
    assert len(errors) == 1 and errors[0].startswith(
        f"error: 1 corrupt samples, more than max_bad_samples=0: {bad_id} ("
    )
    client = mlflow.MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("bad-samples").experiment_id])
    assert run.info.status == "FAILED" and run.data.metrics["bad_samples"] == 1
    history = client.get_metric_history(run.info.run_id, "bad_samples")
    assert min(m.step for m in history if m.value == 1) == position // BATCH + 1  # the step that met it
    assert max(m.step for m in history) == position // BATCH + 1  # ... and the last: the run stopped there
    (listed,) = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/bad_samples.json")
    assert listed["sample_id"] == bad_id and "checksum mismatch" in listed["reason"]
    assert not client.search_registered_models("name='bad-samples'")
