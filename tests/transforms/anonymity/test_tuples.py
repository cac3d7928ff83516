from __future__ import annotations

import pyarrow as pa

from privprep.transforms.anonymity.tuples import TupleCounter


def counted(batches: list[pa.Table], columns: list[str]) -> dict[tuple, int]:
    counter = TupleCounter(columns)
    for batch in batches:
        counter.observe(batch)
    t = counter.result()
    return dict(zip(zip(*(t.decoded(c) for c in columns)), t.counts.tolist()))


def test_dictionary_columns_count_as_their_values() -> None:
    # nulls, dictionary entries no row holds, a different dictionary in the second batch
    first = pa.DictionaryArray.from_arrays(pa.array([0, 2, None, 0], pa.int32()), pa.array(["a", "unused", "b"]))
    second = pa.DictionaryArray.from_arrays(pa.array([1, 0, None], pa.int32()), pa.array(["c", "a"]))
    batches = [pa.table({"x": first, "n": [1, 1, 2, 1]}), pa.table({"x": second, "n": [1, 3, 2]})]
    got = counted(batches, ["x", "n"])
    assert got == {("a", 1): 3, ("b", 1): 1, (None, 2): 2, ("c", 3): 1}
    plain = [pa.table({"x": b.column("x").cast(pa.string()), "n": b.column("n")}) for b in batches]
    assert counted(plain, ["x", "n"]) == got
    counter = TupleCounter(["x"])
    counter.observe(batches[0])
    assert counter.result().dictionaries[0].to_pylist() == ["a", "b", None]  # no value of the table is missing or extra


def test_a_dictionary_that_repeats_a_value_counts_the_value_once() -> None:
    repeated = pa.DictionaryArray.from_arrays(pa.array([0, 1, 1], pa.int32()), pa.array(["a", "a"]))
    assert counted([pa.table({"x": repeated})], ["x"]) == {("a",): 3}


def test_chunked_dictionary_columns() -> None:
    chunks = pa.chunked_array([pa.array(["p", "q"]).dictionary_encode(), pa.array(["q", "q", "r"]).dictionary_encode()])
    assert counted([pa.table({"x": chunks})], ["x"]) == {("p",): 1, ("q",): 3, ("r",): 1}
