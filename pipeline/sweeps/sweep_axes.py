"""The settings of one sweep (:mod:`.sweep`): the single first pass, the k axis (a run directory and a
linkage attack per k) and the ε axis (DP errors against exact values, training accuracy, early stop)."""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from privprep.schemas.config import stage_path
from privprep.schemas.errors import PrivacyError
from privprep.transforms import registry
from privprep.transforms.base import Stage, StageContext

from ..engines.engine import Observer, StreamingEngine, observers
from ..engines.plan import Plan
from ..engines.progress import Progress
from ..engines.runner import _stage_entry
from ..files.rundir import RunDirectory
from ..reports.report import build_report, privprep_version, write_report
from ..risk.attack import KEYED, generalize_auxiliary
from ..risk.linkage import link, linked_rows
from .sweep_dp import exact_values, release_errors, summarize

ATTACK_KEYS = ("auxiliary_records", "linked", "unlinked", "linked_uniquely", "reidentified_correctly", "reidentification_rate",
               "expected_reidentification_rate")
SCRATCH_NOTE = ("DP releases and training in this sweep spent from a scratch ledger (scratch-ledger.json here), "
                "never from the dataset's ledger, which the sweep did not read or write")
EXACT_NOTE = ("DP errors are measured against the exact values of the statistics: a local tuning figure shown only in "
              "the sweep; do not publish sweep.json or sweep.html, and release only a fresh run at the chosen setting")


class Sweep:
    """The settings of one sweep over one plan (stages built, keys resolved, scratch ledger)."""

    def __init__(self, plan: Plan, work: Path, progress: Progress) -> None:
        self.plan, self.work, self.progress = plan, work, progress
        self.engine = StreamingEngine()
        self.k_index = next((i for i, s in enumerate(plan.stages) if s.name == "k_anonymity"), None)
        self.runs: dict[int | None, Path] = {}

    def run(self, ks: list[int], epsilons: list[float], target_accuracy: float | None, max_error: float | None) -> dict[str, Any]:
        plan = self.plan
        k_stages = {k: self._variant(self.k_index, {"k": k}) for k in ks} if self.k_index is not None else {}
        dp_indices = [i for i, s in enumerate(plan.stages) if s.name == "dp_stats"]
        dp_stages = {(i, e): self._variant(i, self._dp_update(i, e)) for i in dp_indices for e in epsilons}
        self._observe(k_stages, dp_stages)
        k_rows = [self._k_setting(k, k_stages[k]) for k in ks]
        criteria = {name: value for name, value in (("target_accuracy", target_accuracy), ("max_error", max_error)) if value is not None}
        eps_rows, cheapest = self._epsilon_settings(epsilons, dp_indices, dp_stages, criteria)
        loaded = plan.loaded
        return {
            "kind": "sweep",
            "privprep_version": privprep_version(),
            "config_path": str(loaded.path),
            "config_sha256": loaded.sha256,
            "input": {"path": str(loaded.input), "rows": plan.source.rows},
            "order": "strongest privacy first: k from largest to smallest, epsilon from smallest to largest",
            "ledger": {"scratch": True, "path": "scratch-ledger.json", "note": SCRATCH_NOTE},
            "exact_values_note": EXACT_NOTE if dp_indices else None,
            "attack": {"auxiliary": "the run's own input", "truth": "row index", "on": self.attack_on(),
                       "raw_input": self._raw_attack() if k_rows else None},
            "criteria": criteria,
            "cheapest": cheapest,
            "settings": [{"axis": "k", "value": r["k"], "status": r["status"]} for r in k_rows]
            + [{"axis": "epsilon", "value": r["epsilon"], "status": r["status"]} for r in eps_rows],
            "k": k_rows,
            "epsilon": eps_rows,
        }

    # -- building the settings' stages -----------------------------------------------------------------

    def _variant(self, index: int, update: dict[str, Any]) -> Stage:
        loaded = self.plan.loaded
        entry = loaded.config.stages[index]
        context = StageContext(columns=dict(loaded.config.columns), resolve_key=None, base_dir=loaded.base_dir,
                               path=stage_path(index, entry.tag))
        return registry.get(entry.tag).from_config(entry.params.model_copy(update=update), context=context)

    def _dp_update(self, index: int, epsilon: float) -> dict[str, Any]:
        params = self.plan.loaded.config.stages[index].params
        scale = epsilon / params.epsilon  # queries with their own epsilon keep their share of the stage's
        queries = [q.model_copy(update={"epsilon": q.epsilon * scale}) if q.epsilon is not None else q for q in params.queries]
        return {"epsilon": epsilon, "queries": queries}

    def _observe(self, k_stages: dict[int, Stage], dp_stages: dict[tuple[int, float], Stage]) -> None:
        """Pass 1, once: every setting's stage observes the same batches."""
        if not k_stages and not dp_stages:
            return
        base, columns = observers(self.plan)
        by_index = {o.index: o for o in base}
        feeds = [Observer(self.k_index, s, by_index[self.k_index].prefix, by_index[self.k_index].columns)  # type: ignore[index]
                 for s in k_stages.values()]
        feeds += [Observer(i, s, [], by_index[i].columns) for (i, _), s in dp_stages.items()]
        self.engine.observe(self.plan, feeds, columns, self.progress, defaultdict(float))

    # -- the k axis --------------------------------------------------------------------------------------

    def _k_setting(self, k: int, stage: Stage) -> dict[str, Any]:
        t0 = time.perf_counter()
        with self.progress.step(f"sweep k={k}: deciding"):
            try:
                stage.decide()  # type: ignore[attr-defined]
            except PrivacyError as exc:
                return {"k": k, "status": "unreachable", "message": str(exc)}
        run_dir = self._write_run(k, stage)
        entry = stage.report()
        row = {
            "k": k, "status": "ok", "run": str(run_dir.relative_to(self.work)), "achieved_k": entry["achieved_k"],
            "levels": entry["levels"], "information_loss": entry["information_loss"]["value"],
            "metric": entry["information_loss"]["metric"], "suppressed_rows": entry["suppressed_rows"],
            "equivalence_classes": entry["equivalence_classes"], "risk_after": entry["risk_after"],
        }
        with self.progress.step(f"sweep k={k}: attacking"):
            row["attack"] = self._attack(run_dir)
        row["seconds"] = round(time.perf_counter() - t0, 4)
        return row

    def _write_run(self, k: int | None, stage: Stage | None) -> Path:
        """A run directory of the map stages and the k_anonymity stage (decided), no DP stage."""
        plan = self.plan
        stages = [stage if i == self.k_index and stage is not None else s for i, s in plan.row_steps]
        name = f"k-{k}" if k is not None else "base"
        loaded = dataclasses.replace(plan.loaded, output=self.work / "runs" / name)
        run_plan = dataclasses.replace(plan, loaded=loaded, stages=stages, ledger=None, spends=[])
        from ..files.output_files import OutputFiles

        outputs = OutputFiles.for_plan(run_plan)
        seconds: dict[int, float] = {i: 0.0 for i in range(len(stages))}
        started = time.perf_counter()
        with RunDirectory(loaded.output) as run_dir:
            written = self.engine.write(run_plan, run_dir.path / "data", outputs, self.progress, seconds)
            entries = [_stage_entry(s, written.rows_in_by_stage.get(i, written.rows_in), written.rows_out_by_stage.get(i, written.rows_in),
                                    seconds[i], None, sink_rows=written.rows_out) for i, s in enumerate(stages)]
            report = build_report(plan=run_plan, status="success", rows_in=written.rows_in, rows_out=written.rows_out,
                                  output_files=written.files, stage_entries=entries,
                                  timings={"total_seconds": time.perf_counter() - started})
            report["engine"] = self.engine.describe()
            report["warnings"] = [*report["warnings"], "a sweep setting (privprep sweep): DP stages were left out of this run"]
            outputs.update_report(report)
            write_report(run_dir.path, report)
            path = run_dir.commit()
        self.runs[k] = path
        return path

    def attack_on(self) -> list[str]:
        """The quasi-identifiers an attacker can join on: none that a stage keyed, encrypted or dropped."""
        if self.k_index is None:
            return []
        qis = self.plan.stages[self.k_index].quasi_identifiers  # type: ignore[attr-defined]
        touched = {c for e in self.plan.loaded.config.stages if e.tag in KEYED for c in (getattr(e.params, "columns", None) or [])}
        return [q for q in qis if q not in touched]

    def _attack(self, run_dir: Path) -> dict[str, Any] | None:
        """The linkage attack with the run's input as auxiliary table, truth the row index."""
        from ..risk.attack import read_released, read_run_report

        on = self.attack_on()
        if not on:
            return None
        if not hasattr(self, "_aux"):
            self._aux = pa.concat_tables(list(self.plan.source.batches(on)))
        report = read_run_report(run_dir)
        released = read_released(run_dir, on)
        stage = next(e for e in report["stages"] if e.get("name") == "k_anonymity" and "levels" in e)
        if stage.get("algorithm") == "mondrian":
            return self._attack_boxes(released, report, on)
        aux = generalize_auxiliary(self._aux, report, self.plan.loaded, on)
        linked = linked_rows(released, aux, on)
        rows = np.arange(aux.num_rows, dtype=np.int64)
        if int(linked.sum()) == released.num_rows and len(on) == len(self.plan.stages[self.k_index].quasi_identifiers):  # type: ignore[arg-type,index]
            # joined on every quasi-identifier: the released rows are exactly the linked input rows, in input order
            result = link(released.append_column("__row__", pa.array(rows[linked])), aux.append_column("__row__", pa.array(rows)),
                          on, truth="__row__")
            result["truth"] = "row index"
        else:  # pragma: no cover - a later stage changed rows: no truth, the expected rate only
            result = link(released, aux, on)
        return {key: result[key] for key in ATTACK_KEYS if key in result}

    def _attack_boxes(self, released: pa.Table, report: dict[str, Any], on: list[str]) -> dict[str, Any]:
        """The attack on a Mondrian run: raw input values matched against the released boxes."""
        from ..risk.attack import box_columns
        from ..risk.linkage_boxes import link_boxes

        columns = box_columns(self._aux, report, self.plan.loaded, on)
        rows = np.arange(self._aux.num_rows, dtype=np.int64)
        if released.num_rows == self._aux.num_rows:  # Mondrian suppresses nothing: the released rows are the input's, in order
            result = link_boxes(released.append_column("__row__", pa.array(rows)), columns, on, truth="__row__",
                                auxiliary_truth=pa.array(rows))
        else:  # pragma: no cover - a later stage changed rows: no truth, the expected rate only
            result = link_boxes(released, columns, on)
        return {key: result[key] for key in ATTACK_KEYS if key in result}

    def _raw_attack(self) -> dict[str, Any] | None:
        """The same attack on the input released unchanged: what the k axis protects against."""
        on = self.attack_on()
        if not on:
            return None
        if not hasattr(self, "_aux"):
            self._aux = pa.concat_tables(list(self.plan.source.batches(on)))
        table = self._aux.append_column("__row__", pa.array(np.arange(self._aux.num_rows, dtype=np.int64)))
        result = link(table, table, on, truth="__row__")
        return {key: result[key] for key in ("linked_uniquely", "reidentified_correctly", "reidentification_rate",
                                             "expected_reidentification_rate")}

    # -- the epsilon axis --------------------------------------------------------------------------------

    def _epsilon_settings(self, epsilons: list[float], dp_indices: list[int], dp_stages: dict[tuple[int, float], Stage],
                          criteria: dict[str, float]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        train_index = next((i for i, s in enumerate(self.plan.stages) if s.name == "train"), None)
        train_data = self._train_data(train_index) if train_index is not None and epsilons else None
        rows: list[dict[str, Any]] = []
        cheapest = None
        for position, eps in enumerate(epsilons):
            t0 = time.perf_counter()
            row: dict[str, Any] = {"epsilon": eps, "status": "ok"}
            errors = []
            for index in dp_indices:
                stage = dp_stages[(index, eps)]
                scope = self.plan.ledger.scope(stage=f"sweep epsilon={eps:g} {stage_path(index, 'dp_stats')}", kind="dp_stats")  # type: ignore[union-attr]
                with self.progress.step(f"sweep epsilon={eps:g}: releasing"):
                    releases = stage.release(scope)  # type: ignore[attr-defined]
                errors += release_errors(releases, exact_values(stage))
            if dp_indices:
                row["dp_stats"] = summarize(errors)
            if train_data is not None:
                row["train"] = self._train(train_index, eps, train_data)  # type: ignore[arg-type]
            row["seconds"] = round(time.perf_counter() - t0, 4)
            rows.append(row)
            if criteria and _meets(row, criteria):
                row["meets_criteria"] = True
                cheapest = {"epsilon": eps, **{name: _figure(row, name) for name in criteria}}
                rows += [{"epsilon": e, "status": "skipped", "reason": "a smaller epsilon met the criteria"} for e in epsilons[position + 1:]]
                break
            if criteria:
                row["meets_criteria"] = False
        return rows, cheapest

    def _train_data(self, index: int) -> pa.Table:
        """The sanitized output at the config's k (a run of the k sweep when it has that k)."""
        k = self.plan.stages[self.k_index].params.k if self.k_index is not None else None  # type: ignore[attr-defined]
        run = self.runs.get(k)
        if run is None:
            run = self._write_run(None, None)
        from privprep.transforms.train.data import read_columns

        return read_columns(run / "data", self.plan.stages[index].input_columns())

    def _train(self, index: int, eps: float, data: pa.Table) -> dict[str, Any]:
        stage = self._variant(index, {"target_epsilon": eps})
        scope = self.plan.ledger.scope(stage=f"sweep epsilon={eps:g} {stage_path(index, 'train')}", kind="train")  # type: ignore[union-attr]
        with self.progress.step(f"sweep epsilon={eps:g}: training"):
            card = stage.fit(data, account=scope).card  # type: ignore[attr-defined]
        return {key: card.get(key) for key in ("accuracy", "epsilon", "delta", "noise_multiplier", "epochs", "steps", "rows")}


def _figure(row: dict[str, Any], criterion: str) -> float | None:
    if criterion == "target_accuracy":
        return (row.get("train") or {}).get("accuracy")
    return (row.get("dp_stats") or {}).get("max_relative_error")


def _meets(row: dict[str, Any], criteria: dict[str, float]) -> bool:
    accuracy, error = _figure(row, "target_accuracy"), _figure(row, "max_error")
    if "target_accuracy" in criteria and (accuracy is None or accuracy < criteria["target_accuracy"]):
        return False
    if "max_error" in criteria and (error is None or error > criteria["max_error"]):
        return False
    return True


__all__ = ["EXACT_NOTE", "SCRATCH_NOTE", "Sweep"]
