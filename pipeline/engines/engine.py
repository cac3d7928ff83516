"""What an engine does for the runner: the two data passes. Everything else (deciding, releasing,
spending, sinks, reports, committing the run directory) stays in :mod:`runner`, whichever engine runs.

An engine gets the plan's stage objects and calls only their public interface (``transform``,
``observe``, ``merge``); no stage knows which engine runs it. Each pass returns what it measured
(:class:`PassResult`, :class:`WriteResult`); the runner adds the figures up.

* :class:`StreamingEngine` (default): one process, the input read a piece at a time in order.
* :class:`~privprep.pipeline.engines.dask_engine.DaskEngine`: pieces are Dask partitions; see that module.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import pyarrow as pa

from privprep.transforms.base import MapStage, ObservingStage, ReleaseStage, RowStage, SinkStage, Stage, Transforming
from privprep.transforms.drop import Drop

from ..files.output_files import OutputFiles
from .overlap import WriteBehind, prefetch
from .plan import Plan
from .progress import Progress


@dataclass
class Observer:
    """A global or release stage in pass 1: the map stages before it that touch its columns run first."""

    index: int
    stage: ObservingStage
    prefix: list[MapStage]
    columns: list[str]

    def feed(self, table: Any) -> None:
        view = table.select(self.columns)
        for map_stage in self.prefix:
            view = map_stage.transform(view)
        self.stage.observe(view)


@dataclass
class PassResult:
    """What a data pass measured: the seconds each stage took in it, by the stage's index in the plan."""

    seconds: dict[int, float] = field(default_factory=dict)

    def _add_to(self, seconds: dict[int, float] | None) -> None:
        """For callers of the old signature, which passed a ``seconds`` dict to be added to."""
        if seconds is not None:
            for index, spent in self.seconds.items():
                seconds[index] = seconds.get(index, 0.0) + spent


@dataclass
class WriteResult(PassResult):
    """What the write pass produced: rows read and written, the parts, and each row stage's rows and seconds."""

    rows_in: int = 0
    rows_out: int = 0
    files: list[Path] = field(default_factory=list)
    rows_in_by_stage: dict[int, int] = field(default_factory=dict)
    rows_out_by_stage: dict[int, int] = field(default_factory=dict)


@dataclass
class StageTally:
    """Rows in, rows out and seconds of each row stage (by its index in the plan), over the batches
    :meth:`run` has taken through them."""

    rows_in: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    rows_out: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    seconds: dict[int, float] = field(default_factory=lambda: defaultdict(float))

    def run(self, table: pa.Table, stages: Sequence[tuple[int, Transforming]]) -> pa.Table:
        """``table`` through ``stages`` (index, stage) in order, counted."""
        for index, stage in stages:
            t0 = time.perf_counter()
            self.rows_in[index] += table.num_rows
            table = stage.transform(table)
            self.rows_out[index] += table.num_rows
            self.seconds[index] += time.perf_counter() - t0
        return table


class Engine(Protocol):
    """The two data passes over a plan's input; each returns what it measured."""

    name: str

    def observe(self, plan: Plan, observers: list[Observer], columns: list[str], progress: Progress,
                seconds: dict[int, float] | None = None) -> PassResult:
        """Pass 1: every observer's stage has observed the whole input (projected to ``columns``).
        (``seconds``, when given, is added to as well: the signature of earlier versions.)"""

    def write(self, plan: Plan, data_dir: Path, outputs: OutputFiles, progress: Progress,
              seconds: dict[int, float] | None = None) -> WriteResult:
        """Pass 2: map and global stages applied in order, Parquet parts written under ``data_dir``."""

    def describe(self) -> dict[str, Any]:
        """The report's ``engine`` entry."""


def unread_columns(stages: list[Stage]) -> set[str]:
    """Input columns the write pass need not read: removed by a ``drop`` stage before any stage reads them.

    Only privprep's own stages, which touch just the columns they name, are looked through; at a
    plug-in stage or one that works on every column, the search stops."""
    used: set[str] = set()
    unread: set[str] = set()
    for stage in stages:
        if isinstance(stage, SinkStage):
            break
        if type(stage) is Drop:
            unread |= {c for c in stage.input_columns() if c not in used}
            continue
        if not type(stage).__module__.startswith("privprep.transforms") or not stage.input_columns():
            break
        used |= set(stage.input_columns())
    return unread


class _Unread:
    """A drop stage whose columns were never read: passes batches through."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage

    def transform(self, table: pa.Table) -> pa.Table:
        return table


def _reading(stage: RowStage, unread: set[str]) -> Transforming:
    """``stage`` as the write pass runs it when ``unread`` columns are not read."""
    if not unread or type(stage) is not Drop or not unread & set(stage.input_columns()):
        return stage
    rest = [c for c in stage.input_columns() if c not in unread]
    return Drop(columns=rest) if rest else _Unread(stage)


def observers(plan: Plan) -> tuple[list[Observer], list[str]]:
    """The observers of pass 1 and the input columns they need (in input order).

    A release stage observes the input as declared; a global stage observes it after the map stages
    before it that touch its columns."""
    found: list[Observer] = []
    needed: set[str] = set()
    for index, stage in plan.observing:
        if isinstance(stage, ReleaseStage):
            found.append(Observer(index, stage, [], stage.input_columns()))
            needed |= set(stage.input_columns())
            continue
        own = set(stage.input_columns())
        prefix = [s for i, s in plan.row_steps if i < index and isinstance(s, MapStage) and own & set(s.input_columns())]
        columns = own.union(*(set(s.input_columns()) for s in prefix))
        found.append(Observer(index, stage, prefix, sorted(columns)))
        needed |= columns
    return found, [name for name in plan.source.schema.names if name in needed]


class StreamingEngine:
    """One process, flat memory: the input is read piece by piece, batch by batch, in order."""

    name = "streaming"

    def observe(self, plan: Plan, observers: list[Observer], columns: list[str], progress: Progress,
                seconds: dict[int, float] | None = None) -> PassResult:
        io = plan.loaded.config.io
        spent: dict[int, float] = defaultdict(float)
        with progress.task("observing", plan.source.rows) as advance:
            for table in plan.source.batches(columns, batch_rows=io.batch_rows, piece_rows=io.partition_rows):
                for observer in observers:
                    t1 = time.perf_counter()
                    observer.feed(table)
                    spent[observer.index] += time.perf_counter() - t1
                advance(table.num_rows)
            table = None  # drop the last batch (there is none for an input of 0 rows)
        pa.default_memory_pool().release_unused()  # the read buffers, before decide() needs memory
        result = PassResult(seconds=dict(spent))
        result._add_to(seconds)
        return result

    def write(self, plan: Plan, data_dir: Path, outputs: OutputFiles, progress: Progress,
              seconds: dict[int, float] | None = None) -> WriteResult:
        io = plan.loaded.config.io
        writer = outputs.open_writer(plan.writer_spec, data_dir)
        rows_in = 0
        unread = unread_columns(plan.stages)
        row_stages = [(i, _reading(s, unread)) for i, s in plan.row_steps]
        tally = StageTally()
        names = [name for name in plan.source.schema.names if name not in unread]
        batches = prefetch(plan.source.batches(names, batch_rows=io.batch_rows, piece_rows=io.partition_rows))
        # parts start in order with the batches that open them when a stage keys per file; else write behind
        behind = None if outputs.per_file else WriteBehind(writer.write)
        try:
            with progress.task("writing", plan.source.rows) as advance:
                for table in outputs.batches(batches, writer):
                    rows_in += table.num_rows
                    out = tally.run(table, row_stages)
                    if behind is None:
                        writer.write(out)
                    else:
                        behind.write(out)
                    advance(table.num_rows)
            if behind is not None:
                behind.join()
        except BaseException:
            if behind is not None:
                behind.abort()
            batches.close()
            raise
        files = writer.close()
        result = WriteResult(seconds=dict(tally.seconds), rows_in=rows_in, rows_out=writer.rows, files=files,
                             rows_in_by_stage=dict(tally.rows_in), rows_out_by_stage=dict(tally.rows_out))
        result._add_to(seconds)
        return result

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


__all__ = ["Engine", "Observer", "PassResult", "StageTally", "StreamingEngine", "WriteResult", "observers", "unread_columns"]
