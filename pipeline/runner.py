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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from privprep.schemas.config import stage_path
from privprep.schemas.errors import BudgetError
from privprep.transforms.base import Stage

from .fsutil import write_text_atomic
from .engine import Engine, StreamingEngine, observers
from .ledger import LedgerScope
from .output_files import OutputFiles
from .plan import Plan
from .progress import Progress
from .report import build_report, write_report
from .runtarget import run_target

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a finished run produced."""

    run_dir: Path  # a storage.ObjectPath for an object store output
    report: dict[str, Any]


def execute(
    plan: Plan, *, overwrite: bool = False, progress: Progress | None = None, engine: Engine | None = None
) -> RunResult:
    """Run ``plan`` on ``engine`` (default: streaming) and commit its run directory; nothing is left
    behind on failure."""
    progress = progress or Progress(quiet=True)
    engine = engine or StreamingEngine()
    outputs = OutputFiles.for_plan(plan)  # output encryption keys resolved before anything is written
    started = time.perf_counter()
    timings: dict[str, float] = {}
    seconds: dict[int, float] = defaultdict(float)
    extra: dict[int, dict[str, Any]] = {}
    scopes: list[LedgerScope] = []
    if plan.ledger is not None:
        plan.ledger.check(plan.spends)  # again: another run may have spent since the plan was made

    with run_target(plan.loaded.output, overwrite=overwrite) as run_dir:  # local rename or object store manifest
        if any(s.kind in ("global", "release") for s in plan.stages):
            t0 = time.perf_counter()
            engine.observe(plan, *observers(plan), progress, seconds)
            timings["observe_seconds"] = time.perf_counter() - t0
            for index, stage in enumerate(plan.stages):
                t1 = time.perf_counter()
                if stage.kind == "global":
                    with progress.step(f"{stage_path(index, stage.name)}: deciding"):
                        stage.decide()  # type: ignore[attr-defined]
                elif stage.kind == "release":
                    scope = _scope(plan, index, stage, scopes)
                    with progress.step(f"{stage_path(index, stage.name)}: releasing"):
                        extra[index] = {"releases": stage.release(scope)}  # type: ignore[attr-defined]
                    _settle(plan, scope)
                seconds[index] += time.perf_counter() - t1

        t0 = time.perf_counter()
        written = engine.write(plan, run_dir.path / "data", outputs, progress, seconds)
        timings["write_seconds"] = time.perf_counter() - t0

        for index, stage in enumerate(plan.stages):
            if stage.kind == "sink":
                t1 = time.perf_counter()
                scope = _scope(plan, index, stage, scopes)
                with progress.step(f"{stage_path(index, stage.name)}: running"):
                    extra[index] = stage.consume(run_dir.path / "data", run_dir.path, scope)  # type: ignore[attr-defined]
                _settle(plan, scope)
                seconds[index] += time.perf_counter() - t1

        timings["total_seconds"] = time.perf_counter() - started
        rows_in = written.rows_in
        entries = [
            _stage_entry(stage, written.rows_in_by_stage.get(i, rows_in), written.rows_out_by_stage.get(i, rows_in),
                         seconds[i], extra.get(i), sink_rows=written.rows_out)
            for i, stage in enumerate(plan.stages)
        ]
        report = build_report(
            plan=plan,
            status="success",
            rows_in=rows_in,
            rows_out=written.rows_out,
            output_files=written.files,
            stage_entries=entries,
            timings=timings,
        )
        report["engine"] = engine.describe()
        outputs.update_report(report)
        if plan.ledger is not None:
            report["budget"] = {**plan.ledger.summary(), "spent_this_run": sum(e["epsilon"] for sc in scopes for e in sc.recorded)}
            plan.ledger.write_copy(run_dir.path / "ledger.json")
        if any(stage.kind == "release" for stage in plan.stages):
            _write_stats(run_dir.path, plan, extra)
        write_report(run_dir.path, report)
        target = run_dir.commit()
    removed = report["output"]["rows_removed"]
    log.info("wrote %s rows (%s removed) to %s in %.2f s", f"{written.rows_out:,}", f"{removed:,}", target, timings["total_seconds"],
             extra={"event": "run_done", "run_dir": str(target), "rows": written.rows_out, "rows_removed": removed})
    return RunResult(run_dir=target, report=report)


def _scope(plan: Plan, index: int, stage: Stage, scopes: list[LedgerScope]) -> LedgerScope:
    """The account a DP stage spends from: the dataset's ledger, under the stage's config path."""
    if plan.ledger is None:  # check_references requires a budget; stay closed regardless
        raise BudgetError(f"{stage_path(index, stage.name)}: a '{stage.name}' stage needs budget.epsilon and budget.ledger")
    scope = plan.ledger.scope(stage=stage_path(index, stage.name), kind=stage.name)
    scopes.append(scope)
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
        for index, stage in enumerate(plan.stages)
        if stage.kind == "release"
        for entry in (extra.get(index) or {}).get("releases", [])
    ]
    document = {"config_sha256": plan.loaded.sha256, "differentially_private": True, "values": values}
    write_text_atomic(run_dir / "stats.json", json.dumps(document, indent=2) + "\n")


def _stage_entry(
    stage: Stage, rows_in: int, rows_out: int, seconds: float, extra: dict[str, Any] | None, *, sink_rows: int
) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": stage.name, "kind": stage.kind}
    if stage.kind == "sink":  # consumes the written output
        rows_in = rows_out = sink_rows
    entry.update(rows_in=rows_in, rows_out=rows_out)  # a release stage observes every input row and changes none
    if not type(stage).__module__.startswith("privprep."):  # a plug-in: the report schema checks its common fields only
        entry["plugin"] = f"{type(stage).__module__}.{type(stage).__qualname__}"
    entry["seconds"] = round(seconds, 4)
    entry.update(stage.report())
    if extra:
        entry.update(extra)
    return entry
