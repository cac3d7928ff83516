"""Contribution bounding: exact bounds, uniform sampling (against the binomial), order independence,
spilling and merging."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from privprep.transforms.dp.bounding import ContributionStore, bound, hash_values


def _bound_all(store: ContributionStore, **kw):
    out = [bound(*b, **kw) for b in store.buckets()]
    part = np.concatenate([b.part for b in out])
    value = np.concatenate([b.value for b in out])
    weight = np.concatenate([b.weight for b in out])
    order = np.lexsort((value, part))
    return part[order], value[order], weight[order], sum(b.dropped for b in out)


def _people(n_people: int, rows_each: int, n_parts: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    unit = np.repeat(np.arange(n_people), rows_each)
    part = rng.integers(0, n_parts, unit.size).astype(np.uint64)
    value = rng.integers(0, 50, unit.size).astype(np.float64)
    return hash_values(pa.array(unit)), part, value


def test_every_person_keeps_at_most_the_bounds() -> None:
    unit, part, value = _people(300, 40, 6)
    store = ContributionStore()
    store.add(unit, part, value)
    for b in store.buckets():
        kept = bound(*b, seed=1, max_partitions=2, max_rows=3)
        assert kept.weight.sum() + kept.dropped == b[3].sum()
    # per person: recompute from the kept tuples (which carry no unit), via one person at a time
    for person in range(5):
        store = ContributionStore()
        rows = slice(person * 40, (person + 1) * 40)
        store.add(unit[rows], part[rows], value[rows])
        p, _, w, dropped = _bound_all(store, seed=1, max_partitions=2, max_rows=3)
        have = np.bincount(part[rows].astype(int), minlength=6)
        kept = {int(q): int(w[p == q].sum()) for q in set(p.tolist())}
        assert len(kept) == 2 and all(n == min(3, have[q]) for q, n in kept.items())
        assert dropped == 40 - sum(kept.values())


def test_order_batches_and_merges_do_not_change_the_result() -> None:
    unit, part, value = _people(2000, 7, 5, seed=3)
    one = ContributionStore()
    one.add(unit, part, value)
    order = np.random.default_rng(9).permutation(unit.size)
    a, b = ContributionStore(memory_rows=1024), ContributionStore(memory_rows=1024)  # both spill to disk
    for chunk in np.array_split(order, 13)[:7]:
        a.add(unit[chunk], part[chunk], value[chunk])
    for chunk in np.array_split(order, 13)[7:]:
        b.add(unit[chunk], part[chunk], value[chunk])
    assert a.spilled_tuples > 0 and b.spilled_tuples > 0
    a.merge(b)
    expected = _bound_all(one, seed=5, max_partitions=2, max_rows=2)
    got = _bound_all(a, seed=5, max_partitions=2, max_rows=2)
    for x, y in zip(expected[:3], got[:3]):
        np.testing.assert_array_equal(x, y)
    assert expected[3] == got[3] > 0
    a.close(), b.close(), one.close()


def test_partitions_are_sampled_uniformly() -> None:
    """One person in 5 partitions keeps 2: each partition is kept with probability 2/5 over seeds."""
    unit = hash_values(pa.array(["ann"] * 5))
    part = np.arange(5, dtype=np.uint64)
    store = ContributionStore()
    store.add(unit, part)
    runs = 2000
    kept = np.zeros(5)
    for seed in range(runs):
        (b,) = [bound(*t, seed=seed, max_partitions=2, max_rows=1) for t in store.buckets()]
        kept[b.part.astype(int)] += 1
    expected, sd = runs * 0.4, np.sqrt(runs * 0.4 * 0.6)
    assert np.all(np.abs(kept - expected) < 4 * sd), kept


def test_rows_are_sampled_uniformly_counting_equal_values() -> None:
    """Rows with values [1, 1, 1, 1, 2], one kept: value 1 with probability 4/5 (not 1/2: equal
    values are distinct rows)."""
    store = ContributionStore()
    store.add(hash_values(pa.array(["bob"] * 5)), np.zeros(5, dtype=np.uint64), np.array([1.0, 1, 1, 1, 2]))
    runs = 2000
    ones = 0
    for seed in range(runs):
        (b,) = [bound(*t, seed=seed, max_partitions=1, max_rows=1) for t in store.buckets()]
        assert b.weight.sum() == 1
        ones += int(b.value[0] == 1.0)
    assert abs(ones - runs * 0.8) < 4 * np.sqrt(runs * 0.8 * 0.2), ones


def test_hash_is_the_same_for_a_value_in_any_batch_and_type_layout() -> None:
    a = hash_values(pa.array(["x", "y", None, "x"]))
    b = hash_values(pa.array(["y", "x"]).dictionary_encode())
    assert a[0] == a[3] == b[1] and a[1] == b[0] and a[2] != a[0]
    ints = hash_values(pa.array([1, 2, 3], pa.int64()))
    assert ints[0] == hash_values(pa.chunked_array([[7], [1]]))[1]


def test_a_spilled_store_travels_pickled_with_its_tuples() -> None:
    import pickle

    unit, part, value = _people(1500, 3, 4, seed=8)
    store = ContributionStore(memory_rows=1024)
    for chunk in np.array_split(np.arange(unit.size), 5):
        store.add(unit[chunk], part[chunk], value[chunk])
    assert store.spilled_tuples > 0
    copy = pickle.loads(pickle.dumps(store))
    assert copy._dir is None
    for a, b in zip(_bound_all(store, seed=2, max_partitions=1, max_rows=1), _bound_all(copy, seed=2, max_partitions=1, max_rows=1)):
        np.testing.assert_array_equal(a, b)
    store.close()
