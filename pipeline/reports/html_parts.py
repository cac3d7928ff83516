"""The small HTML builders every page section uses: escaping, numbers for people, tables, cards.

A leaf module (it imports no other part of the report), so the page (:mod:`.html_report`) and its
sections (:mod:`.html_sections`, :mod:`.html_federated`, :mod:`.html_attack`, :mod:`.html_sweep`)
import it without importing each other in a circle.

>>> num(12345.678), num(0.000123456), pct(0.25), esc("<b>")
('12,346', '0.0001235', '25.0%', '&lt;b&gt;')
>>> table([("k", code("x<"))])
"<table class='kv'><tbody><tr><th scope='row'>k</th><td><code>x&lt;</code></td></tr></tbody></table>"
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

PLOTS_HINT = "pip install 'privprep[report]'"
DP_TABLE_ROWS = 200
KIND_TEXT = {"map": "row by row", "global": "two passes", "release": "DP release", "sink": "consumes the output"}


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def num(value: Any) -> str:
    """A number for people: thousands separators, a few significant digits."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        return f"{int(value):,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4g}"
    return esc(value)


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def table(rows: list[tuple[str, str]], cls: str = "kv") -> str:
    """A two-column table; the cells are already HTML."""
    body = "".join(f"<tr><th scope='row'>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table class='{cls}'><tbody>{body}</tbody></table>"


def grid(header: list[str], rows: list[list[str]], cls: str = "grid") -> str:
    head = "".join(f"<th scope='col'>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table class='{cls}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def code(value: Any) -> str:
    return f"<code>{esc(value)}</code>"


def names(values: list[Any]) -> str:
    return ", ".join(code(v) for v in values) or "–"


def cards(items: list[tuple[str, str, str]]) -> str:
    """KPI cards: (label, value html, note html)."""
    inner = "".join(
        f"<div class='card'><div class='label'>{label}</div><div class='value'>{value}</div><div class='note'>{note}</div></div>"
        for label, value, note in items
    )
    return f"<div class='cards'>{inner}</div>"


def raw(value: Any) -> str:
    """Any JSON value as compact, escaped text (for keys a stage adds that the page does not know)."""
    if isinstance(value, (dict, list)):
        return f"<code class='json'>{esc(json.dumps(value, ensure_ascii=False, default=str))}</code>"
    return num(value) if isinstance(value, (int, float)) else esc(value)


__all__ = ["DP_TABLE_ROWS", "KIND_TEXT", "PLOTS_HINT", "cards", "code", "esc", "grid", "names", "num", "pct", "raw", "table"]
