"""Sanitizing at each site: the config's stages before ``train`` run on the site's own rows, spending from the
site's own ledger, into the site's own run directory (with its ``site.json`` for training).

Used by ``privprep federate simulate`` for every simulated site, and by ``privprep federate prepare`` at a
real site before its SuperNode joins a federation.
"""

from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path
from typing import Any

from ..budget.ledger import Ledger, input_fingerprint, planned_spends
from ..configs.config import LoadedConfig
from ..engines.plan import build_plan
from ..engines.progress import Progress
from ..engines.runner import RunResult, execute
from ..files.fsutil import write_text_atomic
from ..files.io import InputSource
from .site import SPEC_NAME, SiteSpec, site_spec, train_entry


def site_config(loaded: LoadedConfig, *, input: str, output: Path, ledger: Path) -> LoadedConfig:
    """``loaded`` for one site: its input, its run directory, its ledger, and only the stages before ``train``."""
    config = loaded.config
    ledger = Path(ledger).resolve()  # a relative path would be resolved again against the config's folder
    budget = config.budget.model_copy(update={"ledger": str(ledger)}) if config.budget is not None else None
    stages = [entry for entry in config.stages if entry.params.kind != "sink"]
    return dataclasses.replace(loaded, config=config.model_copy(update={"stages": stages, "budget": budget}),
                               input=input, output=Path(output))


def check_site_budget(loaded: LoadedConfig, *, input: str, ledger: Path, name: str) -> None:
    """Refuse (``BudgetError``) before anything runs when the site's DP statistics and training do not fit its ledger."""
    train_entry(loaded)
    budget = loaded.config.budget
    if budget is None:  # the config check requires a budget with a train stage; stay closed regardless
        from privprep.schemas.errors import ConfigError

        raise ConfigError("budget: federated training needs budget.epsilon and budget.ledger")
    source = InputSource.open(input, delimiter=loaded.config.io.csv_delimiter)
    account = Ledger.from_budget(budget, Path(ledger).resolve(), fingerprint=input_fingerprint(source.files, source.format, source.schema),
                                 context={"run": secrets.token_hex(6), "config_sha256": loaded.sha256, "site": name})
    account.check(planned_spends(loaded.config))


def sanitize_site(loaded: LoadedConfig, *, name: str, index: int, input: str, output: Path, ledger: Path,
                  overwrite: bool = False, progress: Progress | None = None) -> tuple[RunResult, SiteSpec]:
    """Run the sanitization stages on the site's ``input`` into ``output``; write ``site.json`` beside its report."""
    result = execute(build_plan(site_config(loaded, input=input, output=output, ledger=ledger)), overwrite=overwrite,
                     progress=progress)
    spec = site_spec(dataclasses.replace(loaded, input=input), name=name, index=index, run_dir=result.run_dir, ledger=ledger)
    write_text_atomic(result.run_dir / SPEC_NAME, dataclasses.replace(spec, data_dir="data").to_json())  # relative: movable
    return result, spec


def site_summary(name: str, result: RunResult, spec: SiteSpec) -> dict[str, Any]:
    """A site's line in the federated ``report.json``."""
    report = result.report
    return {
        "site": name,
        "input_rows": report["input"]["rows"],
        "rows": report["output"]["rows"],
        "rows_removed": report["output"]["rows_removed"],
        "stages": [stage["name"] for stage in report["stages"]],
        "keys_used": list(report["keys_used"]),
        "ledger": spec.ledger,
    }


__all__ = ["check_site_budget", "sanitize_site", "site_config", "site_summary"]
