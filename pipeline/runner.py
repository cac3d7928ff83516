"""The streaming runner: at most two passes over the input, stages in config order.

Pass 1 (only when a global or release stage is configured) reads just the columns those stages
need: release stages observe the input as declared, a global stage observes it after the map
stages before it that touch its columns. Then global stages decide and release stages release.
Pass 2 reads every column, applies map and global stages batch by batch and writes Parquet parts
into a temporary run directory, which is renamed into place when everything succeeded.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from privprep.transforms.base import Stage

from .io import PartWriter
from .plan import Plan
from .progress import Progress
from .report import build_report, write_report
from .rundir import RunDirectory

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a finished run produced."""

    run_dir: Path
    report: dict[str, Any]


def execute(plan: Plan, *, overwrite: bool = False, progress: Progress | None = None) -> RunResult:
    """Run ``plan`` and commit its run directory; nothing is left behind on failure."""
    progress = progress or Progress(quiet=True)
    io = plan.loaded.config.io
    started = time.perf_counter()
    timings: dict[str, float] = {}
    seconds: dict[int, float] = defaultdict(float)
    rows_in_by_stage: dict[int, int] = defaultdict(int)
    rows_out_by_stage: dict[int, int] = defaultdict(int)
    extra: dict[int, dict[str, Any]] = {}

    with RunDirectory(plan.loaded.output, overwrite=overwrite) as run_dir:
        if any(s.kind in ("global", "release") for s in plan.stages):
            t0 = time.perf_counter()
            _observe_pass(plan, progress, seconds)
            timings["observe_seconds"] = time.perf_counter() - t0
            for index, stage in enumerate(plan.stages):
                t1 = time.perf_counter()
                if stage.kind == "global":
                    stage.decide()  # type: ignore[attr-defined]
                elif stage.kind == "release":
                    extra[index] = {"releases": stage.release(None)}  # type: ignore[attr-defined]
                seconds[index] += time.perf_counter() - t1

        t0 = time.perf_counter()
        writer = PartWriter(
            run_dir.path / "data", plan.output_schema, rows_per_file=io.rows_per_file, compression=io.compression
        )
        rows_in = 0
        with progress.task("writing", plan.source.rows) as advance:
            for table in plan.source.batches(batch_rows=io.batch_rows):
                batch_rows = table.num_rows
                rows_in += batch_rows
                for index, stage in enumerate(plan.stages):
                    if stage.kind not in ("map", "global"):
                        continue
                    t1 = time.perf_counter()
                    rows_in_by_stage[index] += table.num_rows
                    table = stage.transform(table)  # type: ignore[attr-defined]
                    rows_out_by_stage[index] += table.num_rows
                    seconds[index] += time.perf_counter() - t1
                writer.write(table)
                advance(batch_rows)
        files = writer.close()
        timings["write_seconds"] = time.perf_counter() - t0

        for index, stage in enumerate(plan.stages):
            if stage.kind == "sink":
                t1 = time.perf_counter()
                extra[index] = stage.consume(run_dir.path / "data", run_dir.path, None)  # type: ignore[attr-defined]
                seconds[index] += time.perf_counter() - t1

        timings["total_seconds"] = time.perf_counter() - started
        entries = [
            _stage_entry(stage, rows_in_by_stage.get(i, rows_in), rows_out_by_stage.get(i, rows_in), seconds[i], extra.get(i))
            for i, stage in enumerate(plan.stages)
        ]
        report = build_report(
            plan=plan,
            status="success",
            rows_in=rows_in,
            rows_out=writer.rows,
            output_files=files,
            stage_entries=entries,
            timings=timings,
        )
        write_report(run_dir.path, report)
        target = run_dir.commit()
    log.info("wrote %s rows to %s in %.2f s", f"{writer.rows:,}", target, timings["total_seconds"])
    return RunResult(run_dir=target, report=report)


def _observe_pass(plan: Plan, progress: Progress, seconds: dict[int, float]) -> None:
    """Pass 1: feed ``observe`` of every global and release stage, reading only the columns they need."""
    stages = plan.stages
    observers: list[tuple[int, Stage, list[tuple[int, Stage]], list[str]]] = []
    needed: set[str] = set()
    for index, stage in enumerate(stages):
        if stage.kind == "release":
            observers.append((index, stage, [], stage.input_columns()))
            needed |= set(stage.input_columns())
        elif stage.kind == "global":
            own = set(stage.input_columns())
            prefix = [(i, s) for i, s in enumerate(stages[:index]) if s.kind == "map" and own & set(s.input_columns())]
            columns = own.union(*(set(s.input_columns()) for _, s in prefix))
            observers.append((index, stage, prefix, sorted(columns)))
            needed |= columns
    columns = [name for name in plan.source.schema.names if name in needed]
    with progress.task("observing", plan.source.rows) as advance:
        for table in plan.source.batches(columns, batch_rows=plan.loaded.config.io.batch_rows):
            for index, stage, prefix, cols in observers:
                t1 = time.perf_counter()
                view = table.select(cols)
                for _, map_stage in prefix:
                    view = map_stage.transform(view)  # type: ignore[attr-defined]
                stage.observe(view)  # type: ignore[attr-defined]
                seconds[index] += time.perf_counter() - t1
            advance(table.num_rows)


def _stage_entry(stage: Stage, rows_in: int, rows_out: int, seconds: float, extra: dict[str, Any] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": stage.name, "kind": stage.kind}
    if stage.kind in ("map", "global"):
        entry.update(rows_in=rows_in, rows_out=rows_out)
    entry["seconds"] = round(seconds, 4)
    entry.update(stage.report())
    if extra:
        entry.update(extra)
    return entry
