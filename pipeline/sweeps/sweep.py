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
from pathlib import Path
from typing import Any, Callable

import numpy as np

from privprep.schemas.errors import OutputError, UsageError

from ..configs.config import LoadedConfig, load_config
from ..engines.plan import build_plan
from ..engines.progress import Progress
from ..files.fsutil import write_text_atomic
from ..files.io import InputSource
from ..files.rundir import check_no_overlap
from ..files.storage import require_local
from .sweep_axes import Sweep

log = logging.getLogger(__name__)
DEFAULT_K = (2, 5, 10, 20)
DEFAULT_EPSILON = (0.1, 0.5, 1.0, 3.0)
MARKER = "sweep.json"


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
    require_local(loaded.output, "privprep sweep")
    names = [entry.tag for entry in loaded.config.stages]
    ks, epsilons = _settings(names, k, epsilon, target_accuracy, max_error)
    target = Path(out) if out is not None else loaded.output.parent / f"{loaded.output.name}-sweep"
    _check_output(target, overwrite)
    check_no_overlap(target, InputSource.open(loaded.input, delimiter=loaded.config.io.csv_delimiter).files)
    work = target.parent / f".{target.name}.privprep-tmp-{secrets.token_hex(4)}"
    work.mkdir(parents=True)
    try:
        plan = build_plan(_scratch(loaded, work, epsilons))
        document = Sweep(plan, work, progress).run(ks, epsilons, target_accuracy, max_error)
        document["seconds"] = round(time.perf_counter() - started, 3)
        write_text_atomic(work / MARKER, json.dumps(document, indent=2) + "\n")
        from ..reports.html_sweep import write_sweep_html

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


__all__ = ["SweepResult", "parse_values", "run_sweep"]
