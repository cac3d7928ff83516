"""k_anonymity with its tuple counts spilled to disk and the search run in buckets: the same levels,
report and output as with everything in memory, for every criterion, and no files left behind."""

from __future__ import annotations

import copy
import gc
import math
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from privprep.schemas.errors import PrivacyError
from privprep.transforms import KAnonymity
from privprep.transforms.anonymity.criteria import Criteria, LDiversityCriterion
from privprep.transforms.anonymity.external import ChunkedEvaluator
from privprep.transforms.anonymity.store import TupleStore
from privprep.transforms.anonymity.tuples import TupleCounter
from privprep.transforms.hierarchies import build_hierarchy
from tests.conftest import TEST_DATA

ADULT = TEST_DATA / "adult"
QIS = ["sex", "age", "race", "marital-status", "education", "native-country", "workclass", "occupation", "salary-class"]


def run(stage: KAnonymity, table: pa.Table, batch: int = 4096) -> pa.Table:
    for start in range(0, table.num_rows, batch):
        stage.observe(table.slice(start, batch))
    stage.decide()
    return stage.transform(table)


def same_outcome(a: KAnonymity, b: KAnonymity) -> None:
    ra, rb = a.report(), b.report()
    sa, sb = ra.pop("search"), rb.pop("search")
    assert ra == rb
    for key in ("nodes_total", "nodes_checked", "strategy", "rows", "distinct_tuples"):
        assert sa[key] == sb[key], key


def test_store_chunks_round_trip_and_files_go_on_close(tmp_path: Path) -> None:
    store = TupleStore(["a", "b"], chunk_tuples=3, directory=tmp_path)
    codes = np.array([[0, 1], [70000, 2], [5, 3], [1, 1], [2, 2]], dtype=np.int32)
    store.append(codes, np.array([1, 2, 300, 1, 1]))
    chunks = list(store.chunks())
    assert [len(c) for _, c in chunks] == [3, 2]
    assert np.concatenate([cols[0] for cols, _ in chunks]).tolist() == [0, 70000, 5, 1, 2]
    assert np.concatenate([c for _, c in chunks]).tolist() == [1, 2, 300, 1, 1]
    assert store.rows == 305 and store.stored == 5
    assert store.column_counts(1, minlength=5).tolist() == [0, 2, 3, 300, 0]
    assert len(list(tmp_path.iterdir())) == 1
    store.close()
    assert list(tmp_path.iterdir()) == []


def test_adult_in_buckets_equals_in_memory(tmp_path: Path) -> None:
    frame = pd.read_csv(ADULT / "adult.csv.gz", sep=";", dtype=str, keep_default_na=False)
    table = pa.Table.from_pandas(frame[QIS], preserve_index=False)
    hierarchies = {q: {"csv": str(ADULT / f"adult_hierarchy_{q}.csv")} for q in QIS}
    memory = KAnonymity(k=5, quasi_identifiers=QIS, hierarchies=hierarchies, suppression_limit=0.04, memory_tuples=None)
    spilled = KAnonymity(k=5, quasi_identifiers=QIS, hierarchies=hierarchies, suppression_limit=0.04, memory_tuples=6000, spill_dir=str(tmp_path))
    expected = run(memory, table)
    out = run(spilled, table)
    # ARX's optimum on Adult (k=5, 4 %), as the in-memory search finds it
    assert tuple(spilled.levels_[q] for q in QIS) == (1, 0, 1, 1, 3, 2, 2, 0, 1)
    assert out.equals(expected)
    same_outcome(spilled, memory)
    assert list(tmp_path.iterdir()) == []  # the spill directory went with decide()


def mixed_table(rows: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    zips = np.array([f"{z:05d}" for z in rng.integers(10000, 10600, rows)])
    ages = rng.integers(18, 90, rows)
    dx = rng.choice(["flu", "cold", "asthma", "diabetes", "none"], rows, p=[0.4, 0.2, 0.15, 0.15, 0.1])
    income = rng.integers(0, 40, rows) * 1000
    zips[rng.random(rows) < 0.01] = None
    return pa.table({"zip": pa.array(zips.tolist()), "age": ages, "dx": dx, "income": income})


@pytest.mark.parametrize(
    "criteria",
    [
        {"l_diversity": {"dx": 3}},
        {"l_diversity": {"dx": {"l": 2.5, "variant": "entropy"}}},
        {"l_diversity": {"dx": {"l": 2, "variant": "recursive", "c": 3}}},
        {"t_closeness": {"income": 0.2}},
        {"t_closeness": {"dx": 0.25}, "l_diversity": {"income": 2}},
    ],
    ids=["distinct", "entropy", "recursive", "t-ordered", "t-categorical+l"],
)
def test_every_criterion_in_buckets_equals_in_memory(criteria: dict, tmp_path: Path) -> None:
    table = mixed_table(6000, seed=3)
    params = dict(k=4, quasi_identifiers=["zip", "age"], hierarchies={"zip": {"mask": {}}, "age": {"interval": {"widths": [5, 10, 20, 40]}}}, suppression_limit=0.03, **criteria)
    memory = KAnonymity(**params, memory_tuples=None)
    spilled = KAnonymity(**params, memory_tuples=700, spill_dir=str(tmp_path))
    expected = run(memory, table, batch=500)
    assert run(spilled, table, batch=500).equals(expected)
    same_outcome(spilled, memory)


def test_spilled_counters_travel_and_merge_like_one_pass(tmp_path: Path) -> None:
    """A partitioned engine pickles each copy's counts to combine them; spilled counts travel in memory."""
    table = mixed_table(5000, seed=8)
    params = dict(k=3, quasi_identifiers=["zip", "age"], hierarchies={"zip": {"mask": {}}, "age": {"interval": {"widths": [5, 10]}}}, suppression_limit=0.05, l_diversity={"dx": 2})
    whole = KAnonymity(**params, memory_tuples=None)
    expected = run(whole, table)
    fresh = KAnonymity(**params, memory_tuples=400, spill_dir=str(tmp_path))
    parts = []
    for start, stop in [(0, 1800), (1800, 1801), (1801, 5000)]:
        part = copy.deepcopy(fresh)
        for at in range(start, stop, 300):
            part.observe(table.slice(at, min(300, stop - at)))
        parts.append(pickle.loads(pickle.dumps(part)))  # the chunks travel and land in a store of their own
    parts[1].merge(parts[2])
    fresh.merge(parts[0])
    fresh.merge(parts[1])
    fresh.decide()
    assert fresh.transform(table).equals(expected)
    same_outcome(fresh, whole)
    del part, parts
    gc.collect()
    assert list(tmp_path.iterdir()) == []  # merged stores are closed, dropped ones removed


def test_counter_spills_past_its_budget(tmp_path: Path) -> None:
    counter = TupleCounter(["x"], spill_tuples=100, spill_dir=str(tmp_path))
    for start in range(0, 1000, 50):
        counter.observe(pa.table({"x": list(range(start, start + 50))}))
    assert len(list(tmp_path.iterdir())) == 1
    store = counter.result()
    assert isinstance(store, TupleStore) and store.rows == 1000 and store.stored == 1000
    store.close()
    small = TupleCounter(["x"], spill_tuples=100, spill_dir=str(tmp_path))
    small.observe(pa.table({"x": [1, 1, 2]}))
    assert not isinstance(small.result(), TupleStore)


def test_unreachable_in_buckets_names_the_criterion(tmp_path: Path) -> None:
    table = pa.table({"zip": [f"{i:05d}" for i in range(300)], "dx": ["a"] * 300})
    stage = KAnonymity(k=2, quasi_identifiers=["zip"], hierarchies={"zip": {"mask": {}}}, l_diversity={"dx": 2}, memory_tuples=50, spill_dir=str(tmp_path))
    with pytest.raises(PrivacyError, match=r"l_diversity\[dx\]"):
        run(stage, table, batch=64)
    assert list(tmp_path.iterdir()) == []


def test_memory_tuples_must_be_positive() -> None:
    from privprep.schemas.errors import ConfigError

    with pytest.raises(ConfigError, match="memory_tuples"):
        KAnonymity(k=2, quasi_identifiers=["zip"], hierarchies={"zip": {"mask": {}}}, memory_tuples=0)


def test_spill_files_hold_no_cell_values(tmp_path: Path) -> None:
    marker = "QZXV-unique-marker"
    table = pa.table({"name": [f"{marker}-{i}" for i in range(400)]})
    counter = TupleCounter(["name"], spill_tuples=100, spill_dir=str(tmp_path))
    for start in range(0, 400, 50):
        counter.observe(table.slice(start, 50))
    (directory,) = tmp_path.iterdir()
    blobs = b"".join(p.read_bytes() for p in directory.iterdir())
    assert blobs and marker.encode() not in blobs
    assert oct(os.stat(directory).st_mode & 0o777) == "0o700"
    counter.result().close()


def test_an_unwritable_spill_directory_is_a_one_line_output_error(tmp_path: Path) -> None:
    from privprep.schemas.errors import OutputError

    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    counter = TupleCounter(["x"], spill_tuples=10, spill_dir=str(not_a_directory))
    with pytest.raises(OutputError, match=r"cannot write its temporary tuple counts under .*TMPDIR") as info:
        for start in range(0, 100, 10):
            counter.observe(pa.table({"x": list(range(start, start + 10))}))
    assert "\n" not in str(info.value)


def test_threads_do_not_change_any_node_and_early_rejection_leaves_no_files(tmp_path: Path) -> None:
    """Keys, splits and buckets run on a thread pool in order: every node comes out the same whatever
    the thread count, and a node rejected early waits for the bucket still loading before its files go."""
    table = mixed_table(6000, seed=5)
    counter = TupleCounter(["zip", "age", "dx"], spill_tuples=400, spill_dir=str(tmp_path))
    for start in range(0, table.num_rows, 500):
        counter.observe(table.slice(start, 500))
    store = counter.result()
    assert isinstance(store, TupleStore)
    hierarchies = {
        "zip": build_hierarchy({"mask": {}}, "zip", store.dictionaries[store.index("zip")]),
        "age": build_hierarchy({"interval": {"widths": [5, 10, 20, 40]}}, "age", store.dictionaries[store.index("age")]),
    }
    criteria = Criteria(k=4, suppression_limit=0.03, l_diversity=(LDiversityCriterion("dx", 3),))
    one = ChunkedEvaluator(store, hierarchies, criteria, bucket_tuples=300, threads=1)
    three = ChunkedEvaluator(store, hierarchies, criteria, bucket_tuples=300, threads=3)
    assert one.buckets > 4 and three.buckets == math.ceil(store.stored * 3 / 300)
    nodes = [(z, a) for z in range(one.heights[0] + 1) for a in range(one.heights[1] + 1)]
    for node in nodes:
        a, b = one.evaluate(node), three.evaluate(node)
        assert (a.suppressed_rows, a.n_classes, a.valid, a.monotone_valid, a.failed) == \
            (b.suppressed_rows, b.n_classes, b.valid, b.monotone_valid, b.failed)
        oa, ob = np.argsort(a.class_keys), np.argsort(b.class_keys)  # more threads: more, smaller buckets
        assert np.array_equal(a.class_keys[oa], b.class_keys[ob]) and np.array_equal(a.sizes[oa], b.sizes[ob])
        assert np.array_equal(a.violating[oa], b.violating[ob])
        assert one.is_valid(node) == three.is_valid(node)  # the early-rejecting path
    assert [p.name for p in store.directory.iterdir() if p.name.startswith("bucket-")] == []
    profile_one, profile_three = one.bottom_profile(), three.bottom_profile()
    assert all(np.array_equal(x, y) for x, y in zip(profile_one[:2], profile_three[:2]))
    assert profile_one[2] == profile_three[2] > 0
    store.close()
