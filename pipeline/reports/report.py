"""``report.json`` (SPEC §4): the machine-readable record of a run. It holds column names, counts,
levels, measures and released values only: never a cell value, never key material. It is checked
against :mod:`privprep.schemas.report` before it is written, and ``report.html`` is built from it."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from privprep.schemas.report import validate_report

from ..files.fsutil import write_text_atomic

if TYPE_CHECKING:  # the plan's modules import much; a report only reads it
    from ..engines.plan import Plan

REPORT_VERSION = 1


def privprep_version() -> str:
    """The installed privprep version."""
    try:
        return metadata.version("privprep")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0+unknown"


def build_report(
    *,
    plan: Plan,
    status: str,
    rows_in: int,
    rows_out: int,
    output_files: list[Path],
    stage_entries: list[dict[str, Any]],
    timings: dict[str, float],
) -> dict[str, Any]:
    """Assemble the report of a finished run from its plan and measured figures."""
    loaded = plan.loaded
    return {
        "kind": "run",
        "report_version": REPORT_VERSION,
        "privprep_version": privprep_version(),
        "config_sha256": loaded.sha256,
        "config_path": str(loaded.path),
        "status": status,
        "input": {
            "path": str(loaded.input),
            "format": plan.source.format,
            "files": len(plan.source.files),
            "rows": rows_in,
            "columns": {name: spec.role for name, spec in loaded.config.columns.items()},
        },
        "output": {
            "rows": rows_out,
            "rows_removed": rows_in - rows_out,
            "files": [f"data/{p.name}" for p in output_files],
            "columns": list(plan.output_schema.names),
        },
        "keys_used": list(plan.keys_used),
        "timings": {name: round(value, 4) for name, value in timings.items()},
        "stages": stage_entries,
        "warnings": [*plan.warnings, *(w for entry in stage_entries for w in entry.get("warnings") or [])],
    }


def write_report(run_dir: Path, report: dict[str, Any], *, html: bool = True) -> Path:
    """Check ``report`` against the report schema, then write ``report.json`` and (unless ``html`` is
    false) ``report.html`` into ``run_dir``, each atomically. A report that does not match the schema
    is a bug: nothing is written and the run fails."""
    text = json.dumps(report, indent=2, sort_keys=False, default=str) + "\n"
    document = json.loads(text)  # check exactly what is written
    validate_report(document)
    path = Path(run_dir) / "report.json"
    write_text_atomic(path, text)
    if html:
        from .html_report import write_html

        write_html(Path(run_dir), document)
    return path
