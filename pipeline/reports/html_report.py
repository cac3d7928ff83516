"""``report.html`` (SPEC §4): one self-contained page built only from ``report.json``.

Inline CSS, plots as inline SVG (:mod:`.plots`, when matplotlib is installed), HTML built with the
helpers of :mod:`.html_parts`; no script, font or image from anywhere: the page renders with networking off. Sections: a summary (status, rows,
privacy guarantees achieved, budget spent and left), then one section per stage. Every value shown
comes from the validated report, so the page holds what the report holds: column names, counts,
levels, measures, key ids and DP-released values, never a cell value or key material; every text
is HTML-escaped.

>>> page = render({"report_version": 1, "privprep_version": "0.1.0", "config_sha256": "ab" * 32,
...     "status": "success", "input": {"rows": 3}, "output": {"rows": 3}, "keys_used": [],
...     "timings": {"total_seconds": 0.1}, "stages": []}, plots=False)
>>> page.startswith("<!DOCTYPE html>"), "<script" in page, "<section id='summary'>" in page
(True, False, True)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from privprep.schemas.errors import InputError
from privprep.schemas.report import validate_report

from . import plots as P
from ..files.fsutil import write_text_atomic
from .html_attack import attack_section
from .html_parts import PLOTS_HINT, esc
from .html_parts import DP_TABLE_ROWS, KIND_TEXT, cards, code, grid, names, num, pct, raw, table  # noqa: F401 (their old home)
from .html_sections import stage_section, summary_section
from .html_style import CSS


def write_html(run_dir: Path, report: dict[str, Any]) -> Path:
    """Write ``report.html`` into ``run_dir`` atomically."""
    path = Path(run_dir) / "report.html"
    write_text_atomic(path, render(report))
    return path


def rebuild(run_dir: str | Path) -> Path:
    """``privprep report RUN_DIR``: (re)build ``report.html`` from the run's ``report.json``.
    A run in an object store (``s3://...``) is read through its manifest, and its manifest rewritten."""
    from ..files.runtarget import open_run, update_run
    from ..files.storage import ObjectPath, location

    where = location(run_dir)
    if isinstance(where, ObjectPath):
        with open_run(where) as local:
            rebuild(local)
            update_run(where, local, ["report.html"])
        return where / "report.html"  # type: ignore[return-value]
    source = Path(run_dir) / "report.json"
    if not source.is_file():
        raise InputError(f"'{run_dir}' is not a privprep run directory (no report.json)")
    try:
        document = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InputError(f"'{source}' cannot be read as JSON ({type(exc).__name__})") from None
    try:
        validate_report(document)
    except ValueError as exc:
        raise InputError(f"'{source}': {exc}") from None
    return write_html(Path(run_dir), document)


def render(report: dict[str, Any], *, plots: bool | None = None) -> str:
    """The whole page as text; ``plots=None`` draws them when matplotlib is installed."""
    doc = validate_report(report).model_dump(mode="json")
    page = _Page(doc, P.available() if plots is None else plots)
    return page.text()


class _Page:
    """Builds the sections of one report."""

    def __init__(self, doc: dict[str, Any], plots: bool) -> None:
        self.doc = doc
        self.plots = plots
        self.figures: list[str] = []

    def figure(self, name: str, svg: str | None, caption: str) -> str:
        if not self.plots or svg is None:
            return ""
        self.figures.append(name)
        return f"<figure class='plot' id='plot-{name}' data-plot='{name}'>{svg}<figcaption>{caption}</figcaption></figure>"

    def text(self) -> str:
        doc = self.doc
        summary = summary_section(self)
        stages = [stage_section(self, i, s) for i, s in enumerate(doc["stages"])]
        if doc.get("attack"):
            stages.append(attack_section(self))
        attack_link = "<a href='#attack'>Linkage attack</a>" if doc.get("attack") else ""
        nav = "".join(
            f"<a href='#stage-{i + 1}'>{i + 1}. {esc(s['name'])}</a>" for i, s in enumerate(doc["stages"])
        )
        title = {"decrypt": "privprep decrypt report", "federated": "privprep federated run report"}.get(
            doc.get("kind") or "run", "privprep run report")
        where = doc["output"].get("files") and doc["input"].get("path")
        hint = "" if self.plots else (
            "<div class='notice'>Plots are not included: matplotlib is not installed. Install the report extra with "
            f"<code>{esc(PLOTS_HINT)}</code> and rebuild this page with <code>privprep report RUN_DIR</code>.</div>"
        )
        return (
            "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
            f"<title>{esc(title)} · {esc(doc['config_sha256'] and doc['config_sha256'][:12] or 'run')}</title>"
            f"<style>{CSS}</style></head><body>"
            f"<header><div class='wrap'><div class='brand'>privprep</div><h1>{esc(title)}</h1>"
            f"<p class='sub'>{esc(where or '')} · privprep {esc(doc['privprep_version'])} · "
            f"config sha256 <code>{esc((doc.get('config_sha256') or '–')[:16])}</code></p>"
            f"<nav><a href='#summary'>Summary</a>{nav}{attack_link}</nav></div></header>"
            f"<main class='wrap'>{hint}{summary}{''.join(stages)}</main>"
            "<footer class='wrap'>Built from <code>report.json</code> only; this page loads nothing from the network "
            "(no scripts, fonts or images). It shows column names, counts, levels, measures, key ids and "
            "differentially private values, never a value of the data or key material.</footer>"
            "</body></html>\n"
        )


__all__ = ["rebuild", "render", "write_html"]
