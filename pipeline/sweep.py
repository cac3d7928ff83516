"""``privprep sweep CONFIG --k 2,5,10,20 --epsilon 0.1,0.5,1,3``: what each setting of privacy costs.

One read of the input (pass 1) feeds every setting's stages at once: a ``k_anonymity`` stage per k
and a ``dp_stats`` stage per ε observe the same batches. Then, from the strongest privacy to the
weakest:

* per k (largest first): the search decides, the run is written as a run directory
  (``runs/k-<k>/``: the map and k_anonymity stages, no DP stage), and a linkage attack is run against
  it with the run's own input as the auxiliary table and the row index as the truth. Figures:
  information loss, suppressed rows, re-identification rates (:mod:`.attack`).
* per ε (smallest first): every ``dp_stats`` stage releases with that ε and each value's error is
  measured against the exact value (:mod:`.sweep_dp`; only in the sweep, a local tuning tool), and
  a ``train`` stage trains with ``target_epsilon`` = ε on the output at the config's k. With
  ``--target-accuracy`` / ``--max-error`` the sweep stops at the first ε that meets them: the cheapest.

DP releases and training spend from a *scratch* ledger (``scratch-ledger.json`` in the sweep
directory), never the dataset's ledger named in the config, which the sweep neither reads nor
writes. The sweep directory is written under a temporary name and renamed into place at the end.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from privprep.schemas.config import stage_path
from privprep.schemas.errors import OutputError, PrivacyError, UsageError
from privprep.transforms import registry
from privprep.transforms.base import Stage, StageContext

from .attack import KEYED, generalize_auxiliary
from .config import LoadedConfig, load_config
from .engine import Observer, StreamingEngine, observers
from .fsutil import write_text_atomic
from .linkage import link, linked_rows
from .plan import Plan, build_plan
from .progress import Progress
from .report import build_report, privprep_version, write_report
from .io import InputSource
from .rundir import RunDirectory, check_no_overlap
from .runner import _stage_entry
from .sweep_dp import exact_values, release_errors, summarize

log = logging.getLogger(__name__)
DEFAULT_K = (2, 5, 10, 20)
DEFAULT_EPSILON = (0.1, 0.5, 1.0, 3.0)
MARKER = "sweep.json"
SCRATCH_NOTE = ("DP releases and training in this sweep spent from a scratch ledger (scratch-ledger.json here), "
                "never from the dataset's ledger, which the sweep did not read or write")
EXACT_NOTE = ("DP errors are measured against the exact values of the statistics: a local tuning figure shown only in "
              "the sweep; do not publish sweep.json or sweep.html, and release only a fresh run at the chosen setting")


@dataclasses.dataclass
class SweepResult:
    """A finished sweep: its directory and ``sweep.json``'s document."""

    out: Path
    document: dict[str, Any]

    def summary(self) -> str:
        doc = self.document
        cheapest = doc.get("cheapest")
        best = "" if not doc["criteria"] else (
            f"; cheapest setting meeting the criteria: epsilon {cheapest['epsilon']:g}" if cheapest else "; no setting met the criteria")
        return (f"{self.out}/sweep.html: {len(doc['k'])} k setting(s), {len(doc['epsilon'])} epsilon setting(s){best}; "
                "DP spent from a scratch ledger, the dataset's ledger is untouched")


def parse_values(text: str | None, flag: str, kind: Callable[[str], Any]) -> list[Any] | None:
    """``"2,5,10"`` -> ``[2, 5, 10]``; a value that is not a positive number is a usage error.

    >>> parse_values("2, 5,10", "--k", int), parse_values(None, "--k", int)
    ([2, 5, 10], None)
    """
    if text is None:
        return None
    try:
        values = [kind(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"{flag} takes comma-separated {kind.__name__} values, e.g. {flag} 2,5,10") from None
    if not values or any(not (v > 0 and np.isfinite(v)) for v in values):
        raise UsageError(f"{flag} values must be positive numbers")
    return list(dict.fromkeys(values))


def run_sweep(
    config: str | Path,
    *,
    k: list[int] | None = None,
    epsilon: list[float] | None = None,
    out: str | Path | None = None,
    target_accuracy: float | None = None,
    max_error: float | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> SweepResult:
    """Run the sweep of ``config`` and write ``sweep.json`` and ``sweep.html`` into ``out``."""
    progress = progress or Progress(quiet=True)
    started = time.perf_counter()
    loaded = load_config(config)
    names = [entry.tag for entry in loaded.config.stages]
    ks, epsilons = _settings(names, k, epsilon, target_accuracy, max_error)
    target = Path(out) if out is not None else loaded.output.parent / f"{loaded.output.name}-sweep"
    _check_output(target, overwrite)
    check_no_overlap(target, InputSource.open(loaded.input, delimiter=loaded.config.io.csv_delimiter).files)
    work = target.parent / f".{target.name}.privprep-tmp-{secrets.token_hex(4)}"
    work.mkdir(parents=True)
    try:
        plan = build_plan(_scratch(loaded, work, epsilons))
        document = _Sweep(plan, work, progress).run(ks, epsilons, target_accuracy, max_error)
        document["seconds"] = round(time.perf_counter() - started, 3)
        write_text_atomic(work / MARKER, json.dumps(document, indent=2) + "\n")
        from .html_sweep import write_sweep_html

        write_sweep_html(work, document)
        (work / "scratch-ledger.json.lock").unlink(missing_ok=True)
        _commit(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return SweepResult(out=target, document=document)


def _settings(names: list[str], k: list[int] | None, epsilon: list[float] | None, target_accuracy: float | None,
              max_error: float | None) -> tuple[list[int], list[float]]:
    dp = [n for n in names if n in ("dp_stats", "train")]
    if k is not None and "k_anonymity" not in names:  # an axis the config lacks is left out, and said so
        log.warning("--k: the config has no k_anonymity stage; the sweep has no k settings")
        k = []
    if epsilon is not None and not dp:
        log.warning("--epsilon: the config has no dp_stats or train stage; the sweep has no epsilon settings")
        epsilon = []
    if not (k if k is not None else "k_anonymity" in names) and not (epsilon if epsilon is not None else dp):
        raise UsageError("nothing to sweep: the config has no k_anonymity, dp_stats or train stage")
    if target_accuracy is not None and "train" not in names:
        raise UsageError("--target-accuracy needs a train stage in the config")
    if max_error is not None and "dp_stats" not in names:
        raise UsageError("--max-error needs a dp_stats stage in the config")
    if target_accuracy is not None and not 0 < target_accuracy <= 1:
        raise UsageError("--target-accuracy must lie in (0, 1]")
    if max_error is not None and not max_error > 0:
        raise UsageError("--max-error must be a positive relative error")
    ks = sorted(k if k is not None else (DEFAULT_K if "k_anonymity" in names else ()), reverse=True)  # strongest first
    epsilons = sorted(epsilon if epsilon is not None else (DEFAULT_EPSILON if dp else ()))
    return [int(v) for v in ks], [float(v) for v in epsilons]


def _scratch(loaded: LoadedConfig, work: Path, epsilons: list[float]) -> LoadedConfig:
    """The config with its budget pointed at a scratch ledger big enough for every setting."""
    cfg = loaded.config
    updates: dict[str, Any] = {}
    if cfg.budget is not None:
        dp_stages = sum(1 for e in cfg.stages if e.tag in ("dp_stats", "train"))
        planned = sum(getattr(e.params, "epsilon", None) or getattr(e.params, "target_epsilon", 0) for e in cfg.stages
                      if e.tag in ("dp_stats", "train"))
        total = max(sum(epsilons) * dp_stages, planned) * 1.01 + 1.0
        delta = min(max(cfg.budget.delta, 1e-9) * (len(epsilons) + 1), 0.5)
        updates["budget"] = cfg.budget.model_copy(update={
            "epsilon": total, "delta": delta, "ledger": str(work / "scratch-ledger.json"), "composition": "basic",
            "slack": 0.0, "allow_input_change": False})
    return dataclasses.replace(loaded, config=cfg.model_copy(update=updates), output=work / "runs" / "base")


def _check_output(target: Path, overwrite: bool) -> None:
    if not target.exists():
        return
    if not target.is_dir():
        raise OutputError(f"--out '{target}' exists and is not a directory; choose another")
    if not overwrite:
        raise OutputError(f"sweep directory '{target}' already exists; pass --overwrite to replace it once this sweep succeeds")
    if not (target / MARKER).is_file() and any(target.iterdir()):
        raise OutputError(f"'{target}' is not empty and holds no privprep sweep (no {MARKER}); refusing to replace it")


def _commit(work: Path, target: Path) -> None:
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.privprep-old-{secrets.token_hex(4)}"
        os.replace(target, old)
    os.replace(work, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class _Sweep:
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
        stages = [stage if i == self.k_index and stage is not None else s for i, s in enumerate(plan.stages)
                  if s.kind in ("map", "global")]
        name = f"k-{k}" if k is not None else "base"
        loaded = dataclasses.replace(plan.loaded, output=self.work / "runs" / name)
        run_plan = dataclasses.replace(plan, loaded=loaded, stages=stages, ledger=None, spends=[])
        from .output_files import OutputFiles

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
        from .attack import read_released, read_run_report

        on = self.attack_on()
        if not on:
            return None
        if not hasattr(self, "_aux"):
            self._aux = pa.concat_tables(list(self.plan.source.batches(on)))
        report = read_run_report(run_dir)
        released = read_released(run_dir, on)
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
        return {key: result[key] for key in ("auxiliary_records", "linked", "unlinked", "linked_uniquely", "reidentified_correctly",
                                             "reidentification_rate", "expected_reidentification_rate") if key in result}

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


__all__ = ["SweepResult", "parse_values", "run_sweep"]
