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


__all__ = ["epsilon_utility", "k_attack", "k_utility"]
