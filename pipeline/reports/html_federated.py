"""The parts of ``report.html`` that only a federated run has: its guarantee, the sites' budgets, and the
``federated_train`` section (per site and per round)."""

from __future__ import annotations

from typing import Any

from .html_parts import cards, code, esc, grid, num, pct, table


def guarantee(s: dict[str, Any]) -> str:
    sites = s.get("sites") or []
    return (f"<b>(ε, δ)-differential privacy per site</b> (unit: {esc(s['privacy_unit'])}): every site's updates over all "
            f"{num(s['rounds'])} rounds spend at most ε = {num(s['epsilon'])}, δ = {num(s['delta'])} of its own budget "
            f"({esc(s['accountant'])} accountant, DP-SGD at each of {num(len(sites))} sites). Not hidden: "
            + "; ".join(esc(n) for n in s.get("not_hidden") or []) + ".")


def budgets(doc: dict[str, Any]) -> str:
    rows = []
    for site in doc.get("sites") or []:
        b = site.get("budget") or {}
        rows.append([code(site["site"]), num(b.get("epsilon")), num(b.get("spent_epsilon")), f"<b>{num(b.get('remaining_epsilon'))}</b>",
                     code(site.get("ledger") or "–")])
    note = "<p class='muted'>Each site spends from its own ledger; its training spend is recorded before its first update leaves.</p>"
    return note + grid(["Site", "Budget ε", "Spent ε", "Remaining ε", "Ledger"], rows)


def section(page: Any, index: int, s: dict[str, Any]) -> tuple[str, set[str]]:
    kpis = cards([("Global accuracy", pct(s.get("accuracy")), "all sites' held-out rows"),
                  ("Largest site ε", num(s.get("epsilon")), f"δ {num(s.get('delta'))}"),
                  ("Rounds", num(s["rounds"]), f"{num(len(s['sites']))} sites")])
    sites = grid(["Site", "ε (cumulative)", "δ", "Rounds", "Training rows", "Held-out rows", "Accuracy", "σ", "q", "Steps"], [
        [code(p["site"]), num(p.get("epsilon")), num(p.get("delta")), num(p.get("rounds")), num(p.get("train_rows")),
         num(p.get("holdout_rows")), pct(p.get("accuracy")), num(p.get("noise_multiplier")), num(p.get("sample_rate")),
         num(p.get("steps"))] for p in s["sites"]])
    rounds = grid(["Round", "Global accuracy", "Largest site ε so far"],
                  [[num(h["round"]), pct(h.get("accuracy")), num(h.get("epsilon"))] for h in s.get("history") or []])
    facts = [("Unit of the guarantee", esc(s["privacy_unit"])), ("Not hidden", "; ".join(esc(n) for n in s["not_hidden"]))]
    if s.get("client_dp"):
        facts.append(("Client-level DP (server)", esc(", ".join(f"{k} {v}" for k, v in s["client_dp"].items()))))
    used = {"accuracy", "epsilon", "delta", "rounds", "sites", "history", "privacy_unit", "not_hidden", "client_dp"}
    return f"{kpis}<h3>Sites</h3>{sites}<h3>Rounds</h3>{rounds}{table(facts)}", used


__all__ = ["budgets", "guarantee", "section"]
