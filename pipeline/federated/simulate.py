"""``privprep federate simulate``: one input split into N sites, each sanitized at its site, then FedAvg with
DP-SGD at every site on Flower's Simulation Engine, all written into one run directory.

A run goes: load and check the config (it needs a ``train`` stage and a budget) → read the input and
split it into disjoint site datasets (:mod:`.split`) → check **every** site's ledger for the site's DP
statistics and training before anything runs → sanitize each site's rows with the config's stages
before ``train``, into ``sites/site-<i>/`` → train (:mod:`.engine`, :mod:`.app`) → write ``model/``,
``report.json`` and ``report.html`` → rename the run directory into place.

Each site has its own ledger beside the configured one (``ledgers/x.json`` → ``ledgers/x.site-0.json``):
in a real federation every holder keeps its own account, and a site's dataset is its own rows.
The raw site splits live in a temporary folder that is removed at the end; they are never in the output.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from privprep.schemas.errors import ConfigError, DataError, FederationError, UsageError
from privprep.transforms.federated.settings import FederatedSettings

from ..budget.ledger import resolve_ledger_path
from ..configs.config import load_config
from ..engines.plan import build_plan
from ..engines.progress import Progress
from ..files.io import InputSource
from ..files.rundir import RunDirectory, check_output
from ..files.storage import require_local
from ..reports.report import REPORT_VERSION, privprep_version, write_report
from .site import site_ledger_path, train_entry
from .split import PARTITIONS, assign_sites

log = logging.getLogger(__name__)


@dataclass
class FederatedResult:
    """A finished simulation: its run directory and report."""

    run_dir: Path
    report: dict[str, Any]


def default_local_epochs(epochs: int, rounds: int) -> int:
    """Local epochs per round when not given: the ``train`` stage's epochs spread over the rounds (at least 1)."""
    return max(1, round(epochs / rounds))


def simulate(
    config: str | os.PathLike[str],
    *,
    sites: int,
    partition: str = "iid",
    rounds: int = 5,
    local_epochs: int | None = None,
    alpha: float = 0.5,
    seed: int | None = None,
    output: str | None = None,
    overwrite: bool = False,
    client_epsilon: float | None = None,
    client_delta: float = 1e-5,
    client_clip: float = 1.0,
    progress: Progress | None = None,
) -> FederatedResult:
    """Simulate a federation of ``sites`` holders of the config's input (see the module docstring)."""
    progress = progress or Progress(quiet=True)
    started = time.perf_counter()
    _check_flags(sites=sites, partition=partition, rounds=rounds, local_epochs=local_epochs, alpha=alpha,
                 client_epsilon=client_epsilon, client_delta=client_delta, client_clip=client_clip)
    loaded = load_config(config, output=output)
    _, params = train_entry(loaded)
    budget = loaded.config.budget
    if budget is None or budget.ledger is None:
        raise ConfigError("budget: federated training needs budget.epsilon and budget.ledger (each site gets its own ledger)")
    from .engine import require_federated_extra

    require_federated_extra()
    require_local(loaded.output, "privprep federate simulate")
    check_output(Path(loaded.output), overwrite=overwrite)
    # The whole pipeline checked against the input, as a run checks it; every site spends from its own ledger.
    source = build_plan(loaded, with_ledger=False, log_warnings=False).source
    if source.rows is not None:
        _check_rows(source.rows, sites)
    if params.model not in (None, "cnn"):
        raise ConfigError(f"train.model: federated training trains model cnn only, not {params.model}")
    seed = seed if seed is not None else params.seed
    ledger = resolve_ledger_path(budget.ledger, loaded.base_dir).resolve()  # absolute: every site's run resolves it alike
    timings: dict[str, float] = {}
    work = Path(tempfile.mkdtemp(prefix="privprep-sites-"))
    try:
        t0 = time.perf_counter()
        with progress.step("splitting the input"):
            rows, inputs = _split(source, work, sites=sites, partition=partition, label=params.label, alpha=alpha, seed=seed,
                                  batch_rows=loaded.config.io.batch_rows)
        settings = federated_settings(params, rounds=rounds, local_epochs=local_epochs, seed=seed,
                                      site_rows=round(rows / sites * (1 - params.holdout)))
        timings["split_seconds"] = time.perf_counter() - t0
        names = [f"site-{i}" for i in range(sites)]
        ledgers = [site_ledger_path(ledger, name) for name in names]
        from .sites import check_site_budget, sanitize_site, site_summary

        for name, site_input, site_ledger in zip(names, inputs, ledgers):
            check_site_budget(loaded, input=str(site_input), ledger=site_ledger, name=name)
        with RunDirectory(loaded.output, overwrite=overwrite) as run_dir:
            t0 = time.perf_counter()
            runs, specs = [], []
            for index, (name, site_input, site_ledger) in enumerate(zip(names, inputs, ledgers)):
                with progress.step(f"{name}: sanitizing"):
                    result, spec = sanitize_site(loaded, name=name, index=index, input=str(site_input),
                                                 output=run_dir.path / "sites" / name, ledger=site_ledger)
                runs.append(result)
                specs.append(spec)
            timings["sanitize_seconds"] = time.perf_counter() - t0
            shutil.rmtree(work, ignore_errors=True)  # raw site rows are no longer needed
            t0 = time.perf_counter()
            plan, outcome = _train(specs, settings, params, loaded, client_epsilon, client_delta, client_clip, progress)
            timings["train_seconds"] = time.perf_counter() - t0
            report = _report(loaded, source, rows, runs, specs, plan, outcome, timings, started,
                             partition=partition, alpha=alpha, run_path=run_dir.path)
            from .results import write_model

            card = {k: v for k, v in report["stages"][0].items() if k not in ("name", "seconds", "rows_in", "rows_out", "model_dir")}
            write_model(run_dir.path / "model", plan, outcome, {**card, "kind": "federated"})
            write_report(run_dir.path, report)
            target = run_dir.commit()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("federated run of %d sites written to %s", sites, target)
    return FederatedResult(run_dir=target, report=report)


def federated_settings(params: Any, *, rounds: int, local_epochs: int | None, seed: int | None, site_rows: int) -> FederatedSettings:
    """Each site's DP-SGD settings: the ``train`` stage's, with what it leaves out chosen for ``site_rows`` training
    rows per site (:func:`~privprep.transforms.train.settings.choose_settings`, the rules of the ``train`` stage)."""
    from privprep.transforms.train.settings import CHOSEN, choose_settings

    values, why = choose_settings(rows=max(site_rows, 1), target_epsilon=params.target_epsilon, model="cnn",
                                  given={k: getattr(params, k) for k in CHOSEN})
    if local_epochs is None:
        why = {**why, "local_epochs": f"the train stage's epochs ({values['epochs']}) spread over {rounds} round(s)"}
    return FederatedSettings(
        rounds=rounds, local_epochs=local_epochs or default_local_epochs(values["epochs"], rounds),
        target_epsilon=params.target_epsilon, accountant=params.accountant, seed=seed, model="cnn",
        reasons={**why, "rows": f"chosen for {site_rows:,} training rows per site"} if why else None, **values,
    )


def _check_flags(*, sites: int, partition: str, rounds: int, local_epochs: int | None, alpha: float,
                 client_epsilon: float | None, client_delta: float, client_clip: float) -> None:
    if sites < 2:
        raise UsageError(f"--sites must be at least 2 (a federation of one site is centralized training), not {sites}")
    if partition not in PARTITIONS:
        raise UsageError(f"--partition must be one of {', '.join(PARTITIONS)}, not '{partition}'")
    if rounds < 1:
        raise UsageError(f"--rounds must be at least 1, not {rounds}")
    if local_epochs is not None and local_epochs < 1:
        raise UsageError(f"--local-epochs must be at least 1, not {local_epochs}")
    if not alpha > 0:
        raise UsageError(f"--alpha must be > 0, not {alpha:g}")
    if client_epsilon is not None and not (client_epsilon > 0 and np.isfinite(client_epsilon)):
        raise UsageError(f"--client-epsilon must be a finite number > 0, not {client_epsilon:g}")
    if not 0 < client_delta < 1 or not client_clip > 0:
        raise UsageError("--client-delta must be in (0, 1) and --client-clip > 0")


def _check_rows(rows: int, sites: int) -> None:
    if rows < 2 * sites:
        raise UsageError(f"--sites {sites} is more than the input's {rows} row(s) allow: every site needs at least "
                         "2 rows (one to train on, one to hold out)")


def _split(source: InputSource, work: Path, *, sites: int, partition: str, label: str, alpha: float, seed: int | None,
           batch_rows: int) -> tuple[int, list[Path]]:
    """Write each site's rows (in input order) to ``work/site-<i>/input.parquet``, batch by batch: only
    the site of each row (and for ``label-skew`` the label column) is held whole. Returns the input's rows."""
    labels = None
    if partition == "label-skew":
        parts = [t.column(label) for t in source.batches([label], batch_rows=batch_rows)]
        column = pa.chunked_array([c for part in parts for c in part.chunks], type=parts[0].type if parts else None)
        if column.null_count:
            raise DataError(f"--partition label-skew splits by the label column '{label}', which has {column.null_count} "
                            "missing label(s)")
        labels = column.to_numpy(zero_copy_only=False)
        rows = len(labels)
    elif source.rows is not None:
        rows = source.rows
    else:  # CSV: counted in a first pass over one column
        rows = sum(t.num_rows for t in source.batches(source.schema.names[:1], batch_rows=batch_rows))
    _check_rows(rows, sites)
    site_of = assign_sites(rows, sites=sites, partition=partition, labels=labels, alpha=alpha, seed=seed)
    paths = []
    for index in range(sites):
        folder = work / f"site-{index}"
        folder.mkdir()
        paths.append(folder / "input.parquet")
    writers: list[pq.ParquetWriter] = []
    try:
        start = 0
        for table in source.batches(batch_rows=batch_rows):
            if not writers:
                writers = [pq.ParquetWriter(path, table.schema) for path in paths]
            codes = site_of[start:start + table.num_rows]
            start += table.num_rows
            for index, writer in enumerate(writers):
                taken = np.flatnonzero(codes == index)
                if len(taken):
                    writer.write_table(table.take(pa.array(taken)))
    finally:
        for writer in writers:
            writer.close()
    return rows, paths


def _train(specs: list[Any], settings: FederatedSettings, params: Any, loaded: Any, client_epsilon: float | None,
           client_delta: float, client_clip: float, progress: Progress) -> tuple[Any, Any]:
    from privprep.transforms.train.data import examples_from_table, read_columns

    from .app import ClientDp, ServerPlan
    from .engine import simulate_flower

    first = specs[0]
    probe = examples_from_table(read_columns(Path(first.data_dir), [first.image, first.label]).slice(0, 1), image=first.image,
                                label=first.label, classes=first.classes, image_shape=first.image_shape,
                                pixel_range=tuple(first.pixel_range) if first.pixel_range else None)
    shape = tuple(int(v) for v in probe.images.shape[1:])
    client_dp = ClientDp(client_epsilon, client_delta, client_clip) if client_epsilon else None
    plan = ServerPlan(settings=settings, shape=shape, classes=len(first.classes), sites=len(specs), client_dp=client_dp)  # type: ignore[arg-type]
    with progress.step(f"training: {settings.rounds} round(s) of FedAvg over {len(specs)} sites"):
        outcome = simulate_flower(specs, plan, verbose=log.isEnabledFor(logging.DEBUG))
    _check_outcome(outcome, specs, settings.rounds)
    return plan, outcome


def _check_outcome(outcome: Any, specs: list[Any], rounds: int) -> None:
    """Fail (nothing written) unless every site trained and evaluated in every round."""
    if outcome is None:
        raise FederationError("the federated training failed on the server; rerun with --debug for Flower's log")
    for number in range(1, rounds + 1):
        for phase, metrics in (("trained", outcome.train_metrics.get(number, {})),
                               ("evaluated", outcome.evaluate_metrics.get(number, {}))):
            missing = [spec.name for spec in specs if f"num-examples@{spec.index}" not in metrics]
            if missing:
                raise FederationError(
                    f"{', '.join(missing)} sent no reply in round {number} (not {phase}); nothing was written, but a site "
                    "that started training has recorded its spend in its ledger; rerun with --debug for Flower's log"
                )


def _report(loaded: Any, source: Any, rows_in: int, runs: list[Any], specs: list[Any], plan: Any, outcome: Any,
            timings: dict[str, float], started: float, *, partition: str, alpha: float, run_path: Path) -> dict[str, Any]:
    from ..budget.ledger import Ledger
    from .results import federated_card
    from .sites import site_summary

    _, params = train_entry(loaded)
    card = federated_card(plan, outcome, names=[s.name for s in specs], classes=specs[0].classes,
                          extra={"engine": "flower-simulation", "image": params.image, "label": params.label,
                                 "partition": partition})
    timings["total_seconds"] = time.perf_counter() - started
    rows_out = sum(run.report["output"]["rows"] for run in runs)
    site_lines = []
    for run, spec, fig in zip(runs, specs, card["sites"]):
        line = site_summary(spec.name, run, spec)
        ledger = Ledger(Path(spec.ledger), epsilon=spec.budget["epsilon"], delta=spec.budget["delta"],
                        composition=spec.budget["composition"], slack=spec.budget["slack"], fingerprint=spec.fingerprint,
                        allow_input_change=spec.budget["allow_input_change"])
        line.update(report=f"sites/{spec.name}/report.json", budget=ledger.summary(), epsilon=fig["epsilon"],
                    delta=fig["delta"], accuracy=fig["accuracy"])
        site_lines.append(line)
    entry = {"name": "federated_train", "seconds": round(timings.get("train_seconds", 0.0), 4),
             "rows_in": rows_out, "rows_out": rows_out, **card, "kind": "sink", "model_dir": "model"}
    files = sorted(str(p.relative_to(run_path)) for p in run_path.glob("sites/*/data/*.parquet"))
    keys = list(dict.fromkeys(k for run in runs for k in run.report["keys_used"]))
    return {
        "kind": "federated",
        "report_version": REPORT_VERSION,
        "privprep_version": privprep_version(),
        "config_sha256": loaded.sha256,
        "config_path": str(loaded.path),
        "status": "success",
        "input": {"path": str(loaded.input), "format": source.format, "files": len(source.files), "rows": rows_in,
                  "columns": {name: spec.role for name, spec in loaded.config.columns.items()}},
        "output": {"rows": rows_out, "rows_removed": rows_in - rows_out, "files": files,
                   "columns": list(runs[0].report["output"]["columns"])},
        "keys_used": keys,
        "timings": {name: round(value, 4) for name, value in timings.items()},
        "federation": {"sites": len(specs), "partition": partition, "alpha": alpha if partition == "label-skew" else None,
                       "rounds": plan.settings.rounds, "local_epochs": plan.settings.local_epochs,
                       "engine": "flower-simulation", "seed": plan.settings.seed,
                       "ledgers": "each site spends from its own ledger beside budget.ledger: <name>.site-<i>.json"},
        "sites": site_lines,
        "stages": [entry],
        "warnings": list(dict.fromkeys([*(w for run in runs for w in run.report.get("warnings", [])), *card.get("warnings", [])])),
    }


__all__ = ["FederatedResult", "default_local_epochs", "federated_settings", "simulate"]
