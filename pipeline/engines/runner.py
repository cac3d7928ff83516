"""The runner: at most two passes over the input, stages in config order, on an engine.

The engine (:mod:`engine`: streaming by default, or Dask) performs the two data passes; deciding,
releasing, spending, sinks, the report and the atomic commit happen here, the same for both.
Pass 1 (only when a global or release stage is configured) reads just the columns those stages
need: release stages observe the input as declared, a global stage observes it after the map
stages before it that touch its columns. Then global stages decide and release stages release.
Pass 2 reads every column, applies map and global stages batch by batch and writes Parquet parts
into a temporary run directory, which is renamed into place when everything succeeded.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from privprep.schemas.config import stage_path
from privprep.schemas.errors import BudgetError
from privprep.transforms.base import GlobalStage, SinkStage, Stage

from ..budget.ledger import LedgerScope
from .engine import Engine, PassResult, StreamingEngine, WriteResult, observers
from ..files.fsutil import write_text_atomic
from ..files.output_files import OutputFiles
from ..files.runtarget import run_target
from .plan import Plan
from .progress import Progress
from ..reports.report import build_report, write_report

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a finished run produced."""

    run_dir: Path  # a storage.ObjectPath for an object store output
    report: dict[str, Any]


@dataclass
class _Record:
    """What a run has measured so far: pass timings, and per stage (by index) its seconds, what it
    added to its report entry (releases, a model card) and the ledger scopes of its spends."""

    timings: dict[str, float] = field(default_factory=dict)
    seconds: dict[int, float] = field(default_factory=lambda: defaultdict(float))
    extra: dict[int, dict[str, Any]] = field(default_factory=dict)
    scopes: list[LedgerScope] = field(default_factory=list)

    def add(self, result: PassResult) -> None:
        for index, spent in result.seconds.items():
            self.seconds[index] += spent

    def spent_epsilon(self) -> float:
        return sum(e["epsilon"] for scope in self.scopes for e in scope.recorded)


def execute(
    plan: Plan, *, overwrite: bool = False, progress: Progress | None = None, engine: Engine | None = None
) -> RunResult:
    """Run ``plan`` on ``engine`` (default: streaming) and commit its run directory; nothing is left
    behind on failure."""
    progress = progress or Progress(quiet=True)
    engine = engine or StreamingEngine()
    outputs = OutputFiles.for_plan(plan)  # output encryption keys resolved before anything is written
    started = time.perf_counter()
    record = _Record()
    if plan.ledger is not None:
        plan.ledger.check(plan.spends)  # again: another run may have spent since the plan was made

    with run_target(plan.loaded.output, overwrite=overwrite) as run_dir:  # local rename or object store manifest
        if plan.observing:
            t0 = time.perf_counter()
            record.add(engine.observe(plan, *observers(plan), progress))
            record.timings["observe_seconds"] = time.perf_counter() - t0
            for index, stage in plan.observing:
                t1 = time.perf_counter()
                if isinstance(stage, GlobalStage):
                    with progress.step(f"{stage_path(index, stage.name)}: deciding"):
                        stage.decide()
                else:
                    scope = _scope(plan, index, stage, record)
                    with progress.step(f"{stage_path(index, stage.name)}: releasing"):
                        record.extra[index] = {"releases": stage.release(scope)}
                    _settle(plan, scope)
                record.seconds[index] += time.perf_counter() - t1

        t0 = time.perf_counter()
        written = engine.write(plan, run_dir.path / "data", outputs, progress)
        record.add(written)
        record.timings["write_seconds"] = time.perf_counter() - t0

        for index, sink in plan.sinks:
            t1 = time.perf_counter()
            scope = _scope(plan, index, sink, record)
            with progress.step(f"{stage_path(index, sink.name)}: running"):
                record.extra[index] = sink.consume(run_dir.path / "data", run_dir.path, scope)
            _settle(plan, scope)
            record.seconds[index] += time.perf_counter() - t1

        record.timings["total_seconds"] = time.perf_counter() - started
        report = build_report(
            plan=plan,
            status="success",
            rows_in=written.rows_in,
            rows_out=written.rows_out,
            output_files=written.files,
            stage_entries=_stage_entries(plan, written, record),
            timings=record.timings,
        )
        report["engine"] = engine.describe()
        outputs.update_report(report)
        if plan.ledger is not None:
            report["budget"] = {**plan.ledger.summary(), "spent_this_run": record.spent_epsilon()}
            plan.ledger.write_copy(run_dir.path / "ledger.json")
        if plan.releases:
            _write_stats(run_dir.path, plan, record.extra)
        write_report(run_dir.path, report)
        target = run_dir.commit()
    removed = report["output"]["rows_removed"]
    log.info("wrote %s rows (%s removed) to %s in %.2f s", f"{written.rows_out:,}", f"{removed:,}", target,
             record.timings["total_seconds"],
             extra={"event": "run_done", "run_dir": str(target), "rows": written.rows_out, "rows_removed": removed})
    return RunResult(run_dir=target, report=report)


def _scope(plan: Plan, index: int, stage: Stage, record: _Record) -> LedgerScope:
    """The account a DP stage spends from: the dataset's ledger, under the stage's config path."""
    if plan.ledger is None:  # check_references requires a budget; stay closed regardless
        raise BudgetError(f"{stage_path(index, stage.name)}: a '{stage.name}' stage needs budget.epsilon and budget.ledger")
    scope = plan.ledger.scope(stage=stage_path(index, stage.name), kind=stage.name)
    record.scopes.append(scope)
    return scope


def _settle(plan: Plan, scope: LedgerScope) -> None:
    for planned in plan.spends:
        if planned.stage == scope.stage:
            scope.settle(planned)


STAT_KEYS = ("column", "stat", "by", "group", "bin", "quantile", "value", "error_95")


def _write_stats(run_dir: Path, plan: Plan, extra: dict[int, dict[str, Any]]) -> None:
    """``stats.json``: only the released values (and their 95% error bounds), for downstream use."""
    values = [
        {"stage": stage_path(index, stage.name), **{k: entry[k] for k in STAT_KEYS if k in entry}}
        for index, stage in plan.releases
        for entry in (extra.get(index) or {}).get("releases", [])
    ]
    document = {"config_sha256": plan.loaded.sha256, "differentially_private": True, "values": values}
    write_text_atomic(run_dir / "stats.json", json.dumps(document, indent=2) + "\n")


def _stage_entries(plan: Plan, written: WriteResult, record: _Record) -> list[dict[str, Any]]:
    """Every stage's entry of ``report.json``; a stage not in the write pass saw every input row."""
    rows_in = written.rows_in
    return [
        _stage_entry(stage, written.rows_in_by_stage.get(i, rows_in), written.rows_out_by_stage.get(i, rows_in),
                     record.seconds[i], record.extra.get(i), sink_rows=written.rows_out)
        for i, stage in enumerate(plan.stages)
    ]


def _stage_entry(
    stage: Stage, rows_in: int, rows_out: int, seconds: float, extra: dict[str, Any] | None, *, sink_rows: int
) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": stage.name, "kind": stage.kind}
    if isinstance(stage, SinkStage):  # consumes the written output
        rows_in = rows_out = sink_rows
    entry.update(rows_in=rows_in, rows_out=rows_out)  # a release stage observes every input row and changes none
    if not type(stage).__module__.startswith("privprep."):  # a plug-in: the report schema checks its common fields only
        entry["plugin"] = f"{type(stage).__module__}.{type(stage).__qualname__}"
    entry["seconds"] = round(seconds, 4)
    entry.update(stage.report())
    if extra:
        entry.update(extra)
    return entry
