"""The attack section of ``report.html``: the ``attack`` entry that ``privprep attack --record`` adds
to ``report.json`` (counts and rates only)."""

from __future__ import annotations

from typing import Any

from .html_parts import cards, code, esc, names, num, pct, table


def attack_section(page: Any) -> str:
    a = page.doc.get("attack")
    if not a:
        return ""
    n = a["auxiliary_records"]
    correct = a.get("reidentified_correctly")
    bound = a.get("bound")
    kpis = cards([
        ("Auxiliary records", num(n), f"joined on {num(len(a['on']))} quasi-identifier(s)"),
        ("Linked", num(a["linked"]), pct(a["linked"] / n) + " of them" if n else ""),
        ("Linked uniquely", num(a["linked_uniquely"]), pct(a["linked_uniquely"] / n) if n else ""),
        ("Re-identification rate", pct(a["reidentification_rate"]),
         f"{num(correct)} correct" if correct is not None else "expected (no truth column)"),
        ("Expected rate", pct(a["expected_reidentification_rate"]), f"bound 1/k {pct(bound)}" if bound is not None else ""),
    ])
    rows = [("Auxiliary table", code(a.get("auxiliary") or "–")), ("Joined on", names(a["on"]))]
    if a.get("truth"):
        rows.append(("Truth column", code(a["truth"])))
    disclosure = a.get("attribute_disclosure")
    if disclosure:
        rows.append(("Attribute disclosure", f"{pct(disclosure['rate'])} of linked records learn {code(disclosure['column'])} "
                                            f"({num(disclosure['disclosed'])})"))
    verdict = ""
    if bound is not None:
        ok = a["reidentification_rate"] <= bound + 1e-12 and a["expected_reidentification_rate"] <= bound + 1e-12
        verdict = (f"<p><span class='badge {'ok' if ok else 'warn'}'>{'within' if ok else 'above'} 1/k</span> "
                   f"The attack re-identified at most {esc(pct(max(a['reidentification_rate'], a['expected_reidentification_rate'])))} "
                   f"of the auxiliary records; k-anonymity bounds it by {esc(pct(bound))}.</p>")
    how = ("The raw auxiliary values were matched against the released classes (Mondrian boxes): a number inside a "
           "released range, a value whose ancestor in the run's hierarchy is the released label; a record in several "
           "boxes links to their union." if a.get("algorithm") == "mondrian" else
           "The auxiliary values were generalized through the run's own hierarchies at its chosen levels and joined "
           "against the released rows; suppressed rows are absent, so their records do not link.")
    body = f"{kpis}{verdict}{table(rows)}<p class='note'>{how}</p>"
    return f"<section class='stage' id='attack'><h2>Linkage attack</h2>{body}</section>"
