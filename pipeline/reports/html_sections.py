"""The sections of ``report.html``: the summary, then one per stage (see :mod:`.html_report`)."""

from __future__ import annotations

import math
from typing import Any, Callable

from . import plots as P
from .html_parts import DP_TABLE_ROWS, KIND_TEXT, cards, code, esc, grid, names, num, pct, raw, table

COMMON = {"name", "kind", "seconds", "rows_in", "rows_out"}
PROTECTION = {"pseudonymize": "pseudonymized", "tokenize": "tokenized", "encrypt": "encrypted", "mask": "masked", "drop": "dropped"}
#: A stage section's body from its report entry: (html, the entry keys it showed).
Render = Callable[[Any, int, dict[str, Any]], tuple[str, set[str]]]
#: Stage name -> its section renderer (each registered where it is defined); others get :func:`_columns`.
SECTIONS: dict[str, Render] = {}


def renders(name: str) -> Callable[[Render], Render]:
    """Decorator: the section of stage ``name`` in ``report.html``."""

    def add(render: Render) -> Render:
        SECTIONS[name] = render
        return render

    return add


# -- summary ------------------------------------------------------------------------------------------------


def summary_section(page: Any) -> str:
    doc = page.doc
    stages = doc["stages"]
    rows_in, rows_out = doc["input"]["rows"], doc["output"]["rows"]
    suppressed = sum(s.get("suppressed_rows") or 0 for s in stages if s["name"] == "k_anonymity" and not s.get("plugin"))
    removed = doc["output"].get("rows_removed")
    removed = rows_in - rows_out if removed is None else removed
    status = f"<span class='badge ok'>{esc(doc['status'])}</span>"
    kpis = cards([
        ("Status", status, f"{len(stages)} stage(s)"),
        ("Rows in", num(rows_in), f"{num(doc['input'].get('files'))} file(s)" if doc["input"].get("files") else ""),
        ("Rows out", num(rows_out), f"{num(len(doc['output'].get('files') or []))} file(s)"),
        ("Rows suppressed", num(suppressed if suppressed else removed), pct(removed / rows_in) + " of the input" if rows_in else ""),
        ("Time", f"{doc['timings']['total_seconds']:.2f} s", ""),
    ])
    guarantees = "".join(f"<li class='none'>{g[1:]}</li>" if g.startswith("!") else f"<li>{g}</li>" for g in _guarantees(doc)) or (
        "<li class='none'>No formal privacy guarantee: no k_anonymity, DP statistics or DP training stage ran.</li>"
    )
    body = (
        f"{kpis}<h3>Privacy guarantees achieved</h3><ul class='guarantees'>{guarantees}</ul>"
        f"<h3>Privacy budget</h3>{_budget(page)}<h3>Run</h3>{_run(page)}"
    )
    return f"<section id='summary'><h2>Summary</h2>{body}</section>"


def _guarantees(doc: dict[str, Any]) -> list[str]:
    out = []
    protected: dict[str, list[str]] = {}
    for s in doc["stages"]:
        name = s["name"]
        if s.get("plugin"):
            out.append(f"Stage {code(name)} is a plug-in ({code(s['plugin'])}): privprep does not vouch for what it guarantees.")
        elif name == "decrypt":
            out.append(f"!<b>Protection removed</b>: {names(s.get('columns') or [])} decrypted for a key holder "
                       "(authorized reversal); this output holds their original values.")
        elif name in PROTECTION:
            protected.setdefault(PROTECTION[name], []).extend(s.get("columns") or [])
        elif name == "k_anonymity":
            achieved = s.get("achieved_k")
            out.append(
                f"<b>k-anonymity</b>: every released row shares its quasi-identifiers ({names(s['quasi_identifiers'])}) "
                f"with at least <b>{num(achieved)}</b> rows (required k = {num(s['k'])}); "
                f"highest re-identification risk {pct(s['risk_after']['prosecutor_max'])} "
                f"(input: {pct(s['risk_before']['prosecutor_max'])})."
            )
            criteria = s.get("criteria") or {}
            for column, c in (criteria.get("l_diversity") or {}).items():
                out.append(f"<b>l-diversity</b>: {esc(c.get('variant', 'distinct'))} {num(c.get('l'))}-diversity of {code(column)} in every class.")
            for column, t in (criteria.get("t_closeness") or {}).items():
                out.append(f"<b>t-closeness</b>: {code(column)} within t = {num(t)} of its overall distribution in every class.")
        elif name == "dp_stats":
            eps = stage_epsilon(s)
            out.append(f"<b>ε-differential privacy</b>: {num(len(s['releases']))} value(s) released with ε = {num(eps)} "
                       f"(δ = {num(s.get('delta') or 0)}), neighbouring datasets: {esc(s.get('neighbouring', 'add or remove one row'))}.")
        elif name == "federated_train":
            from .html_federated import guarantee

            out.append(guarantee(s))
        elif name == "train":
            out.append(f"<b>(ε, δ)-differential privacy</b> of the trained model: ε = {num(s['epsilon'])}, "
                       f"δ = {num(s['delta'])} ({esc(s['accountant'])} accountant, DP-SGD).")
    parts = [f"{esc(verb)} {names(list(dict.fromkeys(columns)))}" for verb, columns in protected.items() if columns]
    if parts:
        out.append("<b>Columns protected</b>: " + "; ".join(parts) + ".")
    return out


def _query_epsilon(releases: list[dict[str, Any]]) -> float:
    per_query: dict[Any, float] = {}
    for r in releases:
        if isinstance(r.get("epsilon"), (int, float)):
            per_query[(r.get("query"), r.get("column"), r.get("stat"))] = r["epsilon"]
    return math.fsum(per_query.values())


def stage_epsilon(s: dict[str, Any]) -> float:
    """What a DP stage of this run spent (0 when its entry does not say)."""
    if isinstance(s.get("epsilon"), (int, float)):
        return float(s["epsilon"])
    return _query_epsilon(s.get("releases") or []) if isinstance(s.get("releases"), list) else 0.0


def _spends(s: dict[str, Any]) -> bool:
    """Whether a stage entry is a DP stage's: releases and sinks (DP training) spend budget."""
    return s["kind"] in ("release", "sink")


def budget_segments(doc: dict[str, Any]) -> list[tuple[str, float]]:
    """Spends for the budget bar: earlier runs, then each DP stage of this run."""
    this_run = [(f"{i + 1}. {s['name']}", stage_epsilon(s)) for i, s in enumerate(doc["stages"]) if _spends(s)]
    spent = doc["budget"]["spent_epsilon"] if doc.get("budget") else 0.0
    earlier = max(spent - math.fsum(e for _, e in this_run), 0.0)
    return [("earlier runs", earlier), *this_run]


def _budget(page: Any) -> str:
    doc = page.doc
    b = doc.get("budget")
    if doc.get("kind") == "federated":
        from .html_federated import budgets

        return budgets(doc)
    if not b:
        if any(_spends(s) for s in doc["stages"]):
            return "<p class='muted'>This report holds no budget section.</p>"
        return "<p class='muted'>No DP stage ran: no privacy budget was spent.</p>"
    segments = budget_segments(doc)
    rows = [
        ("Budget of this dataset", f"ε {num(b['epsilon'])}" + (f", δ {num(b['delta'])}" if b.get("delta") else "")),
        ("Spent this run", f"ε {num(math.fsum(e for label, e in segments if label != 'earlier runs'))}"),
        ("Spent in total", f"ε {num(b['spent_epsilon'])}" + (f", δ {num(b['spent_delta'])}" if b.get("spent_delta") else "")
         + (f" in {num(b['releases'])} release(s)" if b.get("releases") is not None else "")),
        ("Remaining", f"<b>ε {num(b['remaining_epsilon'])}</b>"),
        ("Composition", esc(b.get("composition") or "basic")),
    ]
    if b.get("ledger"):
        rows.append(("Ledger", code(b["ledger"])))
    note = "" if (b.get("composition") or "basic") == "basic" else " Under advanced composition the parts need not add up to the total."
    fig = page.figure("budget", P.budget(b["epsilon"], segments, b["remaining_epsilon"]) if page.plots else None,
                      "Privacy budget: spent by earlier runs and by each stage of this run, and what remains." + note)
    return f"<div class='split'>{table(rows)}</div>{fig}"


def _run(page: Any) -> str:
    doc = page.doc
    timings = ", ".join(f"{esc(k.replace('_seconds', ''))} {v:.3g} s" for k, v in doc["timings"].items() if isinstance(v, (int, float)))
    rows = [
        ("Config", code(doc.get("config_path") or "–") + f" <span class='muted'>sha256 {esc(doc.get('config_sha256') or '–')}</span>"),
        ("Input", code(doc["input"].get("path") or "–") + (f" ({esc(doc['input']['format'])})" if doc["input"].get("format") else "")),
        ("Output columns", names(doc["output"].get("columns") or [])),
        ("Output files", names(doc["output"].get("files") or [])),
        ("Keys used (ids)", names(doc["keys_used"])),
        ("Timings", timings),
    ]
    if doc["output"].get("encryption"):
        rows.append(("Output encryption", raw(doc["output"]["encryption"])))
    warnings = "".join(f"<li>{esc(w)}</li>" for w in doc.get("warnings") or [])
    fig = page.figure("timings", P.timings([(f"{i + 1}. {s['name']}", s["seconds"]) for i, s in enumerate(doc["stages"])])
                      if page.plots else None, "Seconds spent in each stage.")
    return table(rows) + (f"<div class='warn'><b>Warnings</b><ul>{warnings}</ul></div>" if warnings else "") + fig


# -- stages -------------------------------------------------------------------------------------------------


def stage_section(page: Any, index: int, s: dict[str, Any]) -> str:
    head = (
        f"<h2><span class='step'>{index + 1}</span>{esc(s['name'])} <span class='badge'>{esc(s['kind'])}</span>"
        f"<span class='kind'>{esc(KIND_TEXT.get(s['kind'], ''))}</span></h2>"
    )
    facts = [("Rows in", num(s.get("rows_in"))), ("Rows out", num(s.get("rows_out"))), ("Seconds", f"{s['seconds']:.3g}")]
    common = "<div class='facts'>" + "".join(f"<span><b>{k}</b> {v}</span>" for k, v in facts) + "</div>"
    render = SECTIONS.get(s["name"], _columns)
    body, used = (_columns if s.get("plugin") else render)(page, index, s)
    extra = {k: v for k, v in s.items() if k not in COMMON | used and v not in (None, {}, [])}
    more = ""
    if extra:
        more = f"<details><summary>More figures from report.json</summary>{table([(esc(k), raw(v)) for k, v in extra.items()])}</details>"
    return f"<section class='stage' id='stage-{index + 1}'>{head}{common}{body}{more}</section>"


def _columns(page: Any, index: int, s: dict[str, Any]) -> tuple[str, set[str]]:
    rows = []
    labels = {"columns": "Columns", "domain": "Domain", "key": "Key id", "recipient": "Recipient key id", "format": "Format",
              "keep_first": "Keep first", "keep_last": "Keep last", "levels": "Levels", "omitted_columns": "Omitted columns",
              "plugin": "Plug-in class"}
    for key, label in labels.items():
        if s.get(key) in (None, [], {}):
            continue
        value = s[key]
        rows.append((label, names(value) if isinstance(value, list) else (code(value) if isinstance(value, str) else raw(value))))
    return (table(rows) if rows else ""), set(labels)


@renders("k_anonymity")
def _k_anonymity(page: Any, index: int, s: dict[str, Any]) -> tuple[str, set[str]]:
    search = s["search"]
    rows_total = search.get("rows") or s.get("rows_in")
    limit = s.get("suppression_limit")
    kpis = cards([
        ("k required / achieved", f"{num(s['k'])} / {num(s['achieved_k'])}", ""),
        ("Equivalence classes", num(s["equivalence_classes"]), "kept"),
        ("Suppressed rows", num(s["suppressed_rows"]), (pct(s["suppressed_rows"] / rows_total) if rows_total else "")
         + (f", limit {pct(limit)}" if limit is not None else "")),
        ("Information loss", num(s["information_loss"]["value"]), esc(s["information_loss"]["metric"])),
        ("Highest risk", pct(s["risk_after"]["prosecutor_max"]), f"input {pct(s['risk_before']['prosecutor_max'])}"),
    ])
    heights, level_names = s.get("heights") or {}, s.get("level_names") or {}
    recoding = s.get("recoding") or {}
    levels = grid(["Quasi-identifier", "Chosen level", "Hierarchy height", "Level"], [
        [code(q), num(s["levels"].get(q)), num(heights.get(q)), esc(level_names.get(q, ""))] if q in s["levels"] else
        [code(q), "per class", num(heights.get(q)), esc({"interval": "[lo, hi] range per class", "hierarchy": "hierarchy label per class"}
                                                        .get(recoding.get(q, ""), ""))]
        for q in s["quasi_identifiers"]
    ])
    measures = s.get("measures") or {}
    utility = table([("Algorithm", esc(s.get("algorithm") or "full_domain")), ("GCP", num(measures.get("gcp"))),
                     ("Discernibility", num(measures.get("discernibility"))), ("C_AVG", num(measures.get("c_avg"))),
                     *((f"NCP {code(q)}", num(v)) for q, v in (measures.get("ncp") or {}).items())]) if measures else ""
    risk_rows = [[label, pct(s["risk_before"][m]), pct(s["risk_after"][m])] for m, label in
                 (("prosecutor_max", "highest record risk"), ("prosecutor_avg", "average record risk"),
                  ("sample_uniques", "rows unique in the data"))]
    search_rows = [("Nodes checked", f"{num(search['nodes_checked'])} of {num(search['nodes_total'])}"),
                   ("Seconds", f"{search['seconds']:.3g}"), ("Strategy", esc(search.get("strategy") or "–"))]
    if search.get("heuristic"):
        search_rows.append(("Heuristic", "<span class='badge warn'>time-bounded heuristic: not proven optimal</span>"))
    if search.get("distinct_tuples") is not None:
        search_rows.append(("Distinct QI tuples", f"{num(search['distinct_tuples'])} from {num(search.get('rows'))} rows"))
    plots = page.plots
    sizes = page.figure("class-sizes", P.class_sizes(s.get("class_sizes_before"), s.get("class_sizes_after"), s["k"]) if plots else None,
                        "Equivalence classes by size in the input and in the released data (log scale); "
                        "classes smaller than k are suppressed.")
    general = page.figure("generalization", P.generalization(s["levels"], heights, level_names, s["suppressed_rows"], rows_total, limit)
                          if plots else None, "Level chosen for each quasi-identifier (of its hierarchy's height), and the rows "
                          "suppressed against the suppression limit.")
    risk = page.figure("risk", P.risk(s["risk_before"], s["risk_after"]) if plots else None,
                       "Prosecutor re-identification risk in the input and in the released data.")
    lattice = page.figure("search", P.search(search) if plots else None,
                          "The lattice search: nodes checked of all generalizations, on the distinct quasi-identifier tuples.")
    body = (
        f"{kpis}{sizes}<h3>Generalization</h3>{levels}{general}<h3>Re-identification risk</h3>"
        f"<div class='pair'>{grid(['Measure', 'Input', 'Released'], risk_rows)}{risk}</div>"
        f"<h3>Lattice search</h3>{table(search_rows)}{lattice}"
        + (f"<h3>Utility</h3>{utility}" if utility else "")
    )
    used = {"k", "achieved_k", "quasi_identifiers", "levels", "level_names", "heights", "suppressed_rows", "equivalence_classes",
            "information_loss", "risk_before", "risk_after", "search", "suppression_limit", "class_sizes_before",
            "class_sizes_after", "criteria", "algorithm", "measures", "recoding"}
    return body, used


@renders("dp_stats")
def _dp_stats(page: Any, index: int, s: dict[str, Any]) -> tuple[str, set[str]]:
    releases = s["releases"]
    eps = stage_epsilon(s)
    facts = [("Epsilon", f"ε {num(eps)}, δ {num(s.get('delta') or 0)}"), ("Values released", num(len(releases)))]
    for key, label in (("neighbouring", "Neighbouring datasets"), ("composition", "Composition")):
        if s.get(key):
            facts.append((label, esc(s[key])))
    if s.get("seeded"):
        facts.append(("Noise", "<span class='badge warn'>seeded: reproducible, for tests only</span>"))
    facts.extend(_people_facts(s))
    rows = [[num(r.get("query")), code(r["column"]), esc(r["stat"]), _where(r), f"<b>{num(r['value'])}</b>",
             f"± {num(r['error_95'])}", num(r["epsilon"]), esc(r["mechanism"]),
             "–" if r.get("bounds") is None else f"[{num(r['bounds'][0])}, {num(r['bounds'][1])}]", num(r["noise_scale"])]
            for r in releases[:DP_TABLE_ROWS]]
    more = f"<p class='muted'>{num(len(releases) - DP_TABLE_ROWS)} more value(s) in report.json and stats.json.</p>" if len(releases) > DP_TABLE_ROWS else ""
    table_html = grid(["Query", "Column", "Stat", "Group / bin", "Value", "95% error", "ε", "Mechanism", "Bounds", "Noise scale"],
                      rows, cls="grid numeric")
    figs = ""
    if page.plots:
        queries: dict[Any, list[dict[str, Any]]] = {}
        for r in releases:
            by = r.get("by")
            queries.setdefault((r.get("query"), r["column"], r["stat"], ", ".join(by) if isinstance(by, list) else by), []).append(r)
        for n, ((q, column, stat, by), group) in enumerate(queries.items()):
            title = f"{stat} of {column}" + (f" by {by}" if by else "") + f"  (ε {group[0]['epsilon']:.3g})"
            name = f"dp-{index + 1}-{n + 1}"
            figs += page.figure(name, P.dp_query(name, title, group), f"Query {esc(q if q is not None else n)}: released values "
                                "with their 95% error bars.")
        figs = f"<div class='plots2'>{figs}</div>"
    local = _local(s.get("local_not_dp"))
    body = f"{table(facts)}<h3>Released values</h3><div class='scroll'>{table_html}</div>{more}{figs}{local}"
    return body, {"releases", "epsilon", "delta", "neighbouring", "composition", "seeded", "local_not_dp",
                  "privacy_unit", "contribution_bounds", "partition_selection"}


def _people_facts(s: dict[str, Any]) -> list[tuple[str, str]]:
    """The privacy unit, its contribution bounds and the private key selections (counts only)."""
    facts = []
    if s.get("privacy_unit"):
        facts.append(("Privacy unit", f"one person: every row of one {code(s['privacy_unit'])} value"))
    bounds = s.get("contribution_bounds")
    if bounds:
        facts.append(("Contribution bounds", f"at most {num(bounds.get('max_partitions_contributed'))} group(s) per person, "
                                             f"{num(bounds.get('max_contributions_per_partition'))} row(s) per group"))
    for sel in s.get("partition_selection") or []:
        facts.append((f"Keys of {names(sel.get('group_by') or [])}",
                      f"selected privately ({esc(sel.get('mechanism'))}, ε {num(sel.get('epsilon'))}, δ {num(sel.get('delta'))}, "
                      f"threshold {num(sel.get('threshold'))} people): {num(sel.get('keys_released'))} released"))
    return facts


def _where(r: dict[str, Any]) -> str:
    parts = []
    if isinstance(r.get("by"), list):
        parts.append(", ".join(f"{code(b)} = {esc(g)}" for b, g in zip(r["by"], r.get("group") or [])))
    elif r.get("by") is not None:
        parts.append(f"{code(r['by'])} = {esc(r.get('group'))}")
    if r.get("bin") is not None:
        b = r["bin"]
        parts.append(f"[{num(b[0])}, {num(b[1])})" if isinstance(b, list) else esc(b))
    if r.get("quantile") is not None:
        parts.append(f"q {num(r['quantile'])}")
    return ", ".join(parts) or "–"


def _local(local: dict[str, Any] | None) -> str:
    if not local:
        return ""
    rows = [[code(c["column"]), num(c.get("below")), num(c.get("above"))] for c in local.get("clipped") or []]
    parts = [f"<p>{esc(local.get('note') or 'Exact counts, not differentially private.')}</p>"]
    if local.get("rows_observed") is not None:
        parts.append(f"<p>Rows observed: {num(local['rows_observed'])}</p>")
    if rows:
        parts.append(grid(["Column", "Values below the bounds (clipped)", "Values above the bounds (clipped)"], rows))
    for key, label in (("missing", "Missing values"), ("outside_categories", "Values outside the declared categories")):
        if local.get(key):
            parts.append(grid(["Column", label], [[code(c), num(n)] for c, n in local[key].items()]))
    if local.get("bounding"):
        parts.append(grid(["Query", "Rows kept by contribution bounding", "Rows dropped by contribution bounding"],
                          [[num(b["query"]), num(b["rows_kept"]), num(b["rows_dropped"])] for b in local["bounding"]]))
    if local.get("keys"):
        parts.append(grid(["Grouped by", "Keys observed", "Keys suppressed (never shown)"],
                          [[names(k["group_by"]), num(k["keys_observed"]), num(k["keys_suppressed"])] for k in local["keys"]]))
    return ("<details class='local'><summary>Exact local counts: <b>not differentially private</b>, "
            f"for the data owner only</summary>{''.join(parts)}</details>")


@renders("train")
def _train(page: Any, index: int, s: dict[str, Any]) -> tuple[str, set[str]]:
    keys = [("epsilon", "ε"), ("delta", "δ"), ("accountant", "Accountant"), ("noise_multiplier", "Noise multiplier"),
            ("max_grad_norm", "Max gradient norm"), ("sample_rate", "Sample rate"), ("epochs", "Epochs"), ("steps", "Steps"),
            ("train_rows", "Rows trained on"), ("holdout_rows", "Rows held out (never trained on)"),
            ("rows", "Rows read (trained on + held out)")]
    held = s.get("holdout_rows")
    kpis = cards([("Accuracy", pct(s.get("accuracy")), f"on {num(held)} held-out rows" if held is not None else "held-out split"),
                  ("ε spent", num(s["epsilon"]), f"δ {num(s['delta'])}"),
                  ("Epochs", num(s["epochs"]), f"{num(s['steps'])} steps")])
    rows = [(label, raw(s[key])) for key, label in keys if s.get(key) is not None]
    history = s.get("history") or []
    fig = page.figure("training", P.training(history) if page.plots else None, "Held-out accuracy and ε spent, by epoch.")
    if history and not fig:
        fig = grid(["Epoch", "Accuracy", "ε"], [[num(h["epoch"]), pct(h.get("accuracy")), num(h.get("epsilon"))] for h in history])
    return f"{_train_warnings(s)}{kpis}{table(rows)}{_chosen(s)}{fig}", {k for k, _ in keys} | {"accuracy", "history", "warnings",
                                                                                               "chosen_settings"}


def _train_warnings(s: dict[str, Any]) -> str:
    items = "".join(f"<li>{esc(w)}</li>" for w in s.get("warnings") or [])
    return f"<div class='warn'><b>Warnings</b><ul>{items}</ul></div>" if items else ""


def _chosen(s: dict[str, Any]) -> str:
    """The DP-SGD settings: value, whether the config gave it or a default chose it, and why."""
    chosen = s.get("chosen_settings") or {}
    if not chosen:
        return ""
    rows = [[code(k), raw(v.get("value")), esc(v.get("source", "")), esc(v.get("reason") or "")] for k, v in chosen.items()]
    return "<h3>Settings</h3>" + grid(["Setting", "Value", "Set by", "Why"], rows)


@renders("federated_train")
def _federated(page: Any, index: int, s: dict[str, Any]) -> tuple[str, set[str]]:
    from .html_federated import section  # imported on use: html_federated imports this module's helpers

    return section(page, index, s)
