"""Balanced deterministic sampling on catalog rows: shares, elasticity, resume."""

import numpy as np
import pyarrow as pa
import pytest

from pipelines.sampling import augment_rng, epoch_order, rank_positions, resolve_mix, steps_per_epoch


def _catalog(sizes: dict[str, int]) -> pa.Table:
    names = [d for d, n in sizes.items() for _ in range(n)]
    return pa.table({"dataset": names, "sample_id": [f"{d}/{i}" for i, d in enumerate(names)]})


def test_equal_shares_whatever_the_sizes():
    cat = _catalog({"big": 900, "small": 30, "mid": 170})
    order = epoch_order(cat, seed=1, epoch=0)
    assert len(order.rows) == 1100
    assert order.counts == {"big": 367, "mid": 367, "small": 366}
    drawn = np.array(cat["dataset"].to_pylist())[order.rows]
    assert {d: int((drawn == d).sum()) for d in order.counts} == order.counts
    # The small dataset repeats whole permutations: each of its rows appears 12 or 13 times.
    small_rows = order.rows[drawn == "small"]
    assert set(np.bincount(small_rows)[small_rows].tolist()) <= {12, 13}


def test_weights_and_epoch_size():
    cat = _catalog({"a": 50, "b": 50})
    order = epoch_order(cat, seed=0, epoch=0, mix={"a": 3.0, "b": 1.0}, epoch_size=40)
    assert order.counts == {"a": 30, "b": 10} and order.lineage()["weights"] == {"a": 3.0, "b": 1.0}


def test_order_is_a_function_of_seed_and_epoch():
    cat = _catalog({"a": 100, "b": 40})
    a = epoch_order(cat, 7, 3).rows
    assert np.array_equal(a, epoch_order(cat, 7, 3).rows)
    assert not np.array_equal(a, epoch_order(cat, 7, 4).rows)
    assert not np.array_equal(a, epoch_order(cat, 8, 3).rows)


@pytest.mark.parametrize("world", [1, 2, 4])
def test_union_of_ranks_is_the_global_batch(world):
    for step in (0, 5):
        ranks = [rank_positions(step, 8, r, world) for r in range(world)]
        assert np.array_equal(np.concatenate(ranks), np.arange(step * 8, step * 8 + 8))


def test_bad_mix_and_world_fail_loudly():
    with pytest.raises(KeyError, match="available"):
        resolve_mix(["a", "b"], {"c": 1.0})
    with pytest.raises(ValueError, match="divisible"):
        rank_positions(0, 6, 0, 4)
    with pytest.raises(ValueError, match="> 0"):
        resolve_mix(["a"], {"a": 0.0})


def test_augment_draws_depend_on_position_only():
    assert augment_rng(1, 2, 33).random() == augment_rng(1, 2, 33).random()
    assert augment_rng(1, 2, 33).random() != augment_rng(1, 2, 34).random()


def test_steps_drop_only_the_incomplete_last_batch():
    order = epoch_order(_catalog({"a": 21}), 0, 0)
    assert steps_per_epoch(order, 4) == 5
