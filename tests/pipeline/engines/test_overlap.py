"""The streaming write pass reads ahead and writes behind on worker threads, in order, and skips
input columns that only a drop stage names."""

from __future__ import annotations

import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from privprep.pipeline.engines.engine import unread_columns
from privprep.pipeline.engines.overlap import WriteBehind, prefetch
from privprep.transforms import Drop, Mask, Pseudonymize


def test_prefetch_keeps_order_and_raises_the_producers_error() -> None:
    assert list(prefetch(iter(range(100)), depth=3)) == list(range(100))

    def failing():
        yield 1
        raise ValueError("broken batch")

    got = []
    with pytest.raises(ValueError, match="broken batch"):
        for item in prefetch(failing()):
            got.append(item)
    assert got == [1]


def test_prefetch_stops_its_worker_when_the_consumer_stops() -> None:
    before = threading.active_count()
    items = prefetch(iter(range(10_000)), depth=2)
    assert next(items) == 0
    items.close()
    assert threading.active_count() == before


def test_write_behind_writes_in_order_and_raises_the_writers_error() -> None:
    seen: list[int] = []
    writer = WriteBehind(seen.append, depth=2)
    for i in range(50):
        writer.write(i)
    writer.join()
    assert seen == list(range(50))

    def write(item: int) -> None:
        if item == 3:
            raise OSError("disk full")

    failing = WriteBehind(write, depth=1)
    with pytest.raises(OSError, match="disk full"):
        for i in range(100):
            failing.write(i)
        failing.join()


def test_abort_stops_a_writer_waiting_on_an_empty_queue() -> None:
    """A stage that fails before anything is queued (the writer idle on an empty queue) must not hang the run."""
    seen: list[int] = []
    writer = WriteBehind(seen.append, depth=2)
    writer.write(1)
    done = threading.Event()

    def abort() -> None:
        writer.abort()
        done.set()

    threading.Thread(target=abort, daemon=True).start()
    assert done.wait(timeout=30), "WriteBehind.abort() hung"
    assert seen in ([], [1])


def test_columns_only_a_drop_names_are_not_read() -> None:
    key = b"k" * 32
    stages = [Pseudonymize(columns=["id"], key=key), Drop(columns=["id", "name"]), Mask(columns=["phone"])]
    assert unread_columns(stages) == {"name"}  # 'id' is read by pseudonymize first
    assert unread_columns([Drop(columns=["a"]), Drop(columns=["b"])]) == {"a", "b"}
    # a stage over every column (columns=None) may read anything: stop looking
    assert unread_columns([Pseudonymize(key=key), Drop(columns=["name"])]) == set()


def test_a_run_writes_the_same_rows_when_dropped_columns_are_not_read(workspace, cli) -> None:  # type: ignore[no-untyped-def]
    config = workspace.config()  # pseudonymize [patient_id] + drop [name]
    assert cli("run", str(config), "--quiet").code == 0
    out = pq.read_table(workspace.out / "data")
    source = pq.read_table(workspace.input)
    assert out.column_names == [c for c in source.column_names if c != "name"]
    assert out.column("zip").equals(source.column("zip")) and out.num_rows == source.num_rows
    assert pa.compute.all(pa.compute.starts_with(out.column("patient_id").drop_null(), "p1_")).as_py()
