"""The plots of ``sweep.html``: privacy against utility, one figure per axis of the sweep.

Built like :mod:`.plots` (matplotlib figures rendered to inline SVG, no pyplot), from ``sweep.json``
figures only: k against information loss, suppressed rows and the attack's re-identification rates;
ε against the DP statistics' errors and the training accuracy.
"""

from __future__ import annotations

from typing import Any

from .plots import ACCENT, AFTER, WARN, _figure, _svg, styled

AMBER = "#d97706"


def _ok(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("status") == "ok"]


@styled
def k_utility(rows: list[dict[str, Any]]) -> str | None:
    """Information loss and suppressed rows against k."""
    rows = sorted(_ok(rows), key=lambda r: r["k"])
    if not rows:
        return None
    fig, (left, right) = _figure("sweep-k-utility", 2.9, ncols=2, wspace=0.3)
    ks = [r["k"] for r in rows]
    left.plot(ks, [r["information_loss"] for r in rows], "-o", color=AFTER, markersize=4)
    left.set_title(f"Information loss ({rows[0].get('metric', '')})")
    right.plot(ks, [r["suppressed_rows"] for r in rows], "-o", color=WARN, markersize=4)
    right.set_title("Suppressed rows")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.set_xlabel("k")
        ax.set_ylim(bottom=0)
    return _svg(fig, "sweep-k-utility")


@styled
def k_attack(rows: list[dict[str, Any]]) -> str | None:
    """The linkage attack's re-identification rates against k, with the 1/k bound."""
    rows = sorted([r for r in _ok(rows) if r.get("attack")], key=lambda r: r["k"])
    if not rows:
        return None
    fig, ax = _figure("sweep-k-attack", 2.9, right=0.3)
    ks = [r["k"] for r in rows]
    import numpy as np

    grid = np.geomspace(min(ks), max(ks), 60)
    ax.plot(grid, 1 / grid, ":", color="#64748b", label="bound 1/k")
    ax.plot(ks, [r["attack"]["expected_reidentification_rate"] for r in rows], "-o", color=AFTER, markersize=4,
            label="expected rate (Σ 1/|class|)")
    ax.plot(ks, [r["attack"]["reidentification_rate"] for r in rows], "--s", color=WARN, markersize=4,
            label="correct re-identifications")
    ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("k")
    ax.set_ylabel("share of the input's records")
    ax.set_ylim(bottom=0)
    ax.set_title("Linkage attack with the input as auxiliary table")
    ax.legend(loc="upper right")
    return _svg(fig, "sweep-k-attack")


@styled
def epsilon_utility(rows: list[dict[str, Any]]) -> str | None:
    """DP statistics' relative error and training accuracy against ε."""
    rows = sorted(_ok(rows), key=lambda r: r["epsilon"])
    dp = [r for r in rows if r.get("dp_stats")]
    train = [r for r in rows if (r.get("train") or {}).get("accuracy") is not None]
    if not dp and not train:
        return None
    panels = [p for p in (dp and "dp", train and "train") if p]
    fig, axes = _figure("sweep-epsilon", 2.9, ncols=len(panels), wspace=0.3)
    axes = list(axes) if len(panels) > 1 else [axes]
    for ax, panel in zip(axes, panels):
        if panel == "dp":
            eps = [r["epsilon"] for r in dp]
            ax.plot(eps, [r["dp_stats"]["max_relative_error"] for r in dp], "-o", color=WARN, markersize=4, label="largest")
            ax.plot(eps, [r["dp_stats"]["mean_relative_error"] for r in dp], "--s", color=AFTER, markersize=4, label="mean")
            ax.set_yscale("log")
            ax.set_ylabel("|released − exact| / max(|exact|, 1)")
            ax.set_title("DP statistics: relative error")
            ax.legend(loc="upper right")
        else:
            eps = [r["epsilon"] for r in train]
            ax.plot(eps, [r["train"]["accuracy"] for r in train], "-o", color=ACCENT, markersize=4)
            ax.set_ylim(0, 1.02)
            ax.set_ylabel("held-out accuracy")
            ax.set_title("DP-SGD training: accuracy")
        ax.set_xscale("log")
        ax.set_xticks(eps, [f"{e:g}" for e in eps])
        ax.minorticks_off()
        ax.set_xlabel("ε")
    return _svg(fig, "sweep-epsilon")





@styled
def overview(doc: dict[str, Any]) -> str | None:
    """All of a sweep on one figure (2 x 2 panels), for the docs: loss and suppression, the attack,
    DP error and training accuracy."""
    import numpy as np
    from matplotlib.figure import Figure

    k_rows = sorted(_ok(doc["k"]), key=lambda r: r["k"])
    e_rows = sorted(_ok(doc["epsilon"]), key=lambda r: r["epsilon"])
    if not k_rows or not e_rows:
        return None
    fig = Figure(figsize=(10.4, 6.4))
    fig.set_gid("sweep-overview")
    (loss, attack), (error, accuracy) = fig.subplots(2, 2)
    fig.subplots_adjust(left=0.08, right=0.92, top=0.93, bottom=0.09, wspace=0.32, hspace=0.5)
    ks = [r["k"] for r in k_rows]
    loss.plot(ks, [r["information_loss"] for r in k_rows], "-o", color=AFTER, markersize=4, label="information loss")
    loss.set_ylabel(f"information loss ({k_rows[0].get('metric', '')})", color=AFTER)
    loss.set_ylim(bottom=0)
    twin = loss.twinx()
    twin.plot(ks, [r["suppressed_rows"] for r in k_rows], "--s", color=WARN, markersize=4)
    twin.set_ylabel("suppressed rows", color=WARN)
    twin.set_ylim(bottom=0)
    twin.grid(False)
    twin.spines["right"].set_visible(True)
    loss.set_title("Utility by k")
    with_attack = [r for r in k_rows if r.get("attack")]
    grid = np.geomspace(min(ks), max(ks), 60)
    attack.plot(grid, 1 / grid, ":", color="#64748b", label="bound 1/k")
    attack.plot([r["k"] for r in with_attack], [r["attack"]["expected_reidentification_rate"] for r in with_attack], "-o",
                color=AFTER, markersize=4, label="expected rate")
    attack.plot([r["k"] for r in with_attack], [r["attack"]["reidentification_rate"] for r in with_attack], "--s",
                color=WARN, markersize=4, label="correct re-identifications")
    attack.set_ylim(bottom=0)
    attack.set_ylabel("share of records")
    attack.set_title("Linkage attack (input as auxiliary)")
    attack.legend(loc="upper right")
    for ax in (loss, attack):
        ax.set_xscale("log")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.set_xlabel("k")
    eps = [r["epsilon"] for r in e_rows]
    dp = [r for r in e_rows if r.get("dp_stats")]
    if dp:
        error.plot([r["epsilon"] for r in dp], [r["dp_stats"]["max_relative_error"] for r in dp], "-o", color=WARN, markersize=4, label="largest")
        error.plot([r["epsilon"] for r in dp], [r["dp_stats"]["mean_relative_error"] for r in dp], "--s", color=AFTER, markersize=4, label="mean")
        error.set_yscale("log")
        error.legend(loc="upper right")
    error.set_ylabel("relative error of DP statistics")
    error.set_title("DP statistics by ε")
    trained = [r for r in e_rows if (r.get("train") or {}).get("accuracy") is not None]
    if trained:
        accuracy.plot([r["epsilon"] for r in trained], [r["train"]["accuracy"] for r in trained], "-o", color=ACCENT, markersize=4)
    accuracy.set_ylim(0, 1.02)
    accuracy.set_ylabel("held-out accuracy")
    accuracy.set_title("DP-SGD training by ε")
    for ax in (error, accuracy):
        ax.set_xscale("log")
        ax.set_xticks(eps, [f"{e:g}" for e in eps])
        ax.minorticks_off()
        ax.set_xlabel("ε")
    return _svg(fig, "sweep-overview")
__all__ = ["epsilon_utility", "k_attack", "k_utility", "overview"]
