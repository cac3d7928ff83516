"""``sweep.html``: one self-contained page built only from ``sweep.json`` (inline CSS, plots as
inline SVG, no script, font or image from anywhere). Counts, rates, levels and errors only.

>>> page = render({"kind": "sweep", "privprep_version": "0", "config_path": "p.yaml", "config_sha256": "ab" * 32,
...     "input": {"rows": 10}, "ledger": {"note": "scratch"}, "criteria": {}, "cheapest": None, "k": [], "epsilon": []},
...     plots=False)
>>> page.startswith("<!DOCTYPE html>"), "<script" in page, "id='sweep-k'" in page
(True, False, True)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import plots as P
from ..files.fsutil import write_text_atomic
from .html_parts import PLOTS_HINT, cards, code, esc, grid, num, pct
from .html_style import CSS


def write_sweep_html(directory: Path, document: dict[str, Any]) -> Path:
    """Write ``sweep.html`` into ``directory`` atomically."""
    path = Path(directory) / "sweep.html"
    write_text_atomic(path, render(document))
    return path


def render(doc: dict[str, Any], *, plots: bool | None = None) -> str:
    plots = P.available() if plots is None else plots
    figures: list[str] = []

    def figure(name: str, draw: Any, rows: list[dict[str, Any]], caption: str) -> str:
        if not plots:
            return ""
        svg = draw(rows)
        if svg is None:
            return ""
        figures.append(name)
        return f"<figure class='plot' id='plot-{name}' data-plot='{name}'>{svg}<figcaption>{caption}</figcaption></figure>"

    from .plots_sweep import epsilon_utility, k_attack, k_utility

    k_rows, eps_rows = doc["k"], doc["epsilon"]
    k_body = _k_table(k_rows) + figure("sweep-k-utility", k_utility, k_rows, "Information loss and suppressed rows by k.") + figure(
        "sweep-k-attack", k_attack, k_rows, "Re-identification by a linkage attack that knows every input record's raw "
        "quasi-identifiers, against the 1/k bound.")
    eps_body = _eps_table(eps_rows) + figure("sweep-epsilon", epsilon_utility, eps_rows,
                                             "Error of the DP statistics against their exact values, and training accuracy, by ε.")
    hint = "" if plots else (f"<div class='notice'>Plots are not included: matplotlib is not installed ({code(PLOTS_HINT)}).</div>")
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
        f"<title>privprep sweep · {esc(doc['config_sha256'][:12])}</title><style>{CSS}</style></head><body>"
        "<header><div class='wrap'><div class='brand'>privprep</div><h1>privprep privacy-utility sweep</h1>"
        f"<p class='sub'>{esc(doc['config_path'])} · privprep {esc(doc['privprep_version'])} · config sha256 "
        f"<code>{esc(doc['config_sha256'][:16])}</code></p><nav><a href='#summary'>Summary</a><a href='#sweep-k'>k</a>"
        "<a href='#sweep-epsilon'>ε</a></nav></div></header>"
        f"<main class='wrap'>{hint}{_summary(doc)}"
        f"<section id='sweep-k'><h2>k: information loss, suppression and re-identification</h2>{k_body}</section>"
        f"<section id='sweep-epsilon'><h2>ε: DP error and training accuracy</h2>{eps_body}</section></main>"
        "<footer class='wrap'>Built from <code>sweep.json</code> only; this page loads nothing from the network. A local "
        "tuning tool: the DP errors are measured against exact values, so do not publish this page.</footer></body></html>\n"
    )


def _summary(doc: dict[str, Any]) -> str:
    cheapest, criteria = doc.get("cheapest"), doc.get("criteria") or {}
    if criteria:
        wanted = ", ".join(f"{esc(k.replace('_', ' '))} {num(v)}" for k, v in criteria.items())
        best = (f"ε {num(cheapest['epsilon'])}" if cheapest else "none met them")
    else:
        wanted, best = "none given", "–"
    items = [
        ("Input rows", num((doc.get("input") or {}).get("rows")), ""),
        ("k settings", num(len(doc["k"])), ", ".join(str(r["k"]) for r in doc["k"])),
        ("ε settings", num(len([r for r in doc["epsilon"] if r.get("status") == "ok"])), ", ".join(f"{r['epsilon']:g}" for r in doc["epsilon"])),
        ("Cheapest setting", best, f"criteria: {wanted}"),
    ]
    notes = [doc["ledger"]["note"], doc.get("order") or ""]
    raw = (doc.get("attack") or {}).get("raw_input")
    if raw:
        notes.insert(0, f"The same linkage attack on the input released unchanged re-identifies "
                        f"{pct(raw['reidentification_rate'])} of the records ({num(raw['reidentified_correctly'])}); "
                        "the k settings below bound it by 1/k.")
    if doc.get("exact_values_note"):
        notes.append(doc["exact_values_note"])
    items_html = "".join(f"<li>{esc(n)}</li>" for n in notes if n)
    return f"<section id='summary'><h2>Summary</h2>{cards(items)}<ul class='guarantees'>{items_html}</ul></section>"


def _k_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>No k settings (the config has no k_anonymity stage).</p>"
    body = []
    for r in rows:
        if r.get("status") != "ok":
            body.append([num(r["k"]), "<span class='badge warn'>unreachable</span>", "–", "–", "–", "–", "–"])
            continue
        a = r.get("attack") or {}
        body.append([num(r["k"]), num(r["achieved_k"]), num(r["information_loss"]), num(r["suppressed_rows"]),
                     num(r["equivalence_classes"]), pct(a.get("reidentification_rate")), pct(a.get("expected_reidentification_rate"))])
    return grid(["k", "achieved k", "information loss", "suppressed rows", "classes", "re-identified", "expected rate"], body)


def _eps_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>No ε settings (the config has no dp_stats or train stage).</p>"
    body = []
    for r in rows:
        if r.get("status") != "ok":
            body.append([num(r["epsilon"]), f"<span class='badge'>{esc(r['status'])}</span>", "–", "–", "–"])
            continue
        dp, train = r.get("dp_stats") or {}, r.get("train") or {}
        met = {True: "<span class='badge ok'>yes</span>", False: "no"}.get(r.get("meets_criteria"), "–")
        body.append([num(r["epsilon"]), num(dp.get("max_relative_error")), num(dp.get("mean_relative_error")),
                     pct(train.get("accuracy")), met])
    return grid(["ε", "largest relative error", "mean relative error", "training accuracy", "meets criteria"], body)


__all__ = ["render", "write_sweep_html"]
