"""The Python entry points of a whole run, as the CLI uses them.

>>> import tempfile, pathlib
>>> from privprep.pipeline.sample import write_sample
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

from .config import load_config
from .plan import Plan, build_plan
from .progress import Progress
from .runner import RunResult, execute


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
) -> RunResult:
    """Run the pipeline of ``config`` and return the run directory and its report."""
    loaded = load_config(config, input=input, output=output)
    from .rundir import check_output

    check_output(Path(loaded.output), overwrite=overwrite)  # fail before reading any data
    return execute(build_plan(loaded), overwrite=overwrite, progress=progress)
