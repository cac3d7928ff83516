"""The Python entry points of a whole run, as the CLI uses them.

>>> import tempfile, pathlib
>>> from privprep.pipeline.files.sample import write_sample
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = write_sample(50, folder / "in")
>>> _ = (folder / "pipeline.yaml").write_text('''
... version: 1
... input: in/
... output: out/
... columns:
...   patient_id: {role: identifier}
...   name: {role: identifier}
...   email: {role: identifier}
...   phone: {role: identifier}
...   national_id: {role: identifier}
...   birth_date: {role: quasi_identifier}
...   zip: {role: quasi_identifier}
...   sex: {role: quasi_identifier}
...   occupation: {role: quasi_identifier}
...   diagnosis: {role: sensitive}
...   income: {role: sensitive, bounds: [0, 500000]}
...   image: {role: insensitive}
...   label: {role: insensitive}
... stages:
...   - drop: {columns: [patient_id, name, email, phone, national_id]}
... ''')
>>> result = run(folder / "pipeline.yaml")
>>> result.report["output"]["rows"], sorted(p.name for p in result.run_dir.iterdir())
(50, ['data', 'report.html', 'report.json'])
"""

from __future__ import annotations

import os
from pathlib import Path

from privprep.schemas.errors import UsageError

from .configs.config import load_config
from .engines.engine import Engine
from .engines.plan import Plan, build_plan
from .engines.progress import Progress
from .engines.runner import RunResult, execute


def plan(config: str | os.PathLike[str], *, input: str | None = None, output: str | None = None) -> Plan:
    """Validate ``config``, its keys and the input's schema without writing anything (``--dry-run``)."""
    return build_plan(load_config(config, input=input, output=output))


def run(
    config: str | os.PathLike[str],
    *,
    input: str | None = None,
    output: str | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    engine: str | Engine = "streaming",
    scheduler: str | None = None,
) -> RunResult:
    """Run the pipeline of ``config`` and return the run directory and its report.

    ``engine`` is ``"streaming"`` (one process, flat memory), ``"dask"`` (``scheduler``: a scheduler
    address, one of Dask's local schedulers, or None for a local cluster) or an engine object such as
    ``DaskEngine(client=client)``; every engine gives the same output."""
    loaded = load_config(config, input=input, output=output)
    from .files.runtarget import check_run_output

    check_run_output(loaded.output, overwrite=overwrite)  # fail before reading any data
    plan = build_plan(loaded)
    if engine == "streaming" or engine is None:
        if scheduler is not None:
            raise UsageError("--scheduler applies only to --engine dask")
        return execute(plan, overwrite=overwrite, progress=progress)
    if engine == "dask":
        from .engines.dask_engine import DaskEngine

        engine = DaskEngine(scheduler=scheduler)
    if isinstance(engine, str):
        raise UsageError(f"--engine must be 'streaming' or 'dask', not '{engine}'")
    with engine:  # type: ignore[attr-defined]
        return execute(plan, overwrite=overwrite, progress=progress, engine=engine)
