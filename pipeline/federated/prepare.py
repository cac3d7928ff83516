"""``privprep federate prepare``: what a real site runs before its SuperNode joins a federation.

It runs the config's stages before ``train`` on the site's own input (the config's ``input``), spending
any DP statistics from the site's own ledger (the config's ``budget.ledger``), after checking that the
site's budget also covers the training's ``target_epsilon``. The run directory gets a ``site.json``
that the ClientApp reads (``--node-config "site-dir='<run directory>'"``).
"""

from __future__ import annotations

import os
from pathlib import Path

from privprep.schemas.errors import ConfigError

from ..budget.ledger import resolve_ledger_path
from ..configs.config import load_config
from ..engines.progress import Progress
from ..engines.runner import RunResult
from ..files.rundir import check_output
from ..files.storage import require_local
from .site import train_entry
from .sites import check_site_budget, sanitize_site


def prepare(config: str | os.PathLike[str], *, output: str | None = None, name: str = "site", overwrite: bool = False,
            progress: Progress | None = None) -> RunResult:
    """Sanitize this site's data for federated training; returns the site's run."""
    loaded = load_config(config, output=output)
    train_entry(loaded)
    budget = loaded.config.budget
    if budget is None or budget.ledger is None:
        raise ConfigError("budget: federated training needs budget.epsilon and budget.ledger (this site's own ledger)")
    require_local(loaded.output, "privprep federate prepare")
    check_output(Path(loaded.output), overwrite=overwrite)
    ledger = resolve_ledger_path(budget.ledger, loaded.base_dir).resolve()  # absolute: the site run resolves it alike
    check_site_budget(loaded, input=loaded.input, ledger=ledger, name=name)
    result, _ = sanitize_site(loaded, name=name, index=0, input=loaded.input, output=Path(loaded.output), ledger=ledger,
                              overwrite=overwrite, progress=progress)
    return result


__all__ = ["prepare"]
