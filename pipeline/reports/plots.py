"""The plots of ``report.html``: matplotlib figures rendered to inline SVG text.

matplotlib is optional (the ``report`` extra): :func:`available` says whether plots can be drawn.
Every function takes figures from ``report.json`` only (counts, levels, measures, released values)
and returns one ``<svg>`` element with ids prefixed by its name, so many can share a page. Figures
are built with :class:`matplotlib.figure.Figure` directly (no pyplot, no global figure state).
"""

from __future__ import annotations

import io
import math
import re
from typing import Any, Sequence

BEFORE, AFTER, ACCENT, WARN, MUTED = "#94a3b8", "#2563eb", "#0d9488", "#dc2626", "#e2e8f0"
SERIES = ("#2563eb", "#7c3aed", "#0d9488", "#d97706", "#db2777", "#0891b2", "#65a30d", "#9333ea")
STYLE = {
    "svg.fonttype": "none",  # text stays text: small, crisp, no embedded glyphs
    "font.family": "DejaVu Sans",  # ships with matplotlib; the page adds fallbacks (see _svg)
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.edgecolor": "#94a3b8",
    "axes.labelcolor": "#334155",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e2e8f0",
    "grid.linewidth": 0.6,
    "xtick.color": "#475569",
    "ytick.color": "#475569",
    "legend.frameon": False,
    "legend.fontsize": 8,
    "axes.axisbelow": True,
}
WIDTH = 10.4  # inches: about the page column at 96 px per inch, so 9 pt text shows at about 12 px
HALF = 5.1  # inches: a figure in a two-column grid


def available() -> bool:
    """Whether matplotlib is installed (``pip install 'privprep[report]'``); found, not imported (a run
    whose report has only the timings plot never loads it)."""
    import importlib.util

    try:
        return importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):
        return False


def _figure(name: str, height: float, ncols: int = 1, *, width: float = WIDTH, left: float = 0.75, right: float = 0.2, top: float = 0.4,
            bottom: float = 0.5, wspace: float = 0.35, **kwargs: Any) -> tuple[Any, Any]:
    """A figure with fixed margins in inches (a layout engine would draw every figure twice)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    axes = fig.subplots(1, ncols, **kwargs)
    fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height, wspace=wspace)
    fig.set_gid(name)
    return fig, axes


def _label_width(labels: Sequence[str]) -> float:
    """Inches for y tick labels of these texts at the report's font size."""
    return 0.25 + 0.068 * max((len(str(label)) for label in labels), default=4)


def _svg(fig: Any, name: str) -> str:
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({**STYLE, "svg.hashsalt": f"privprep-{name}"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):]  # no XML declaration or DOCTYPE inside HTML
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    text = re.sub(r'\s(width|height)="[0-9.]+pt"', "", text, count=2)  # scale with the page; viewBox keeps the ratio
    text = text.replace('id="', f'id="{name}-').replace("url(#", f"url(#{name}-").replace('href="#', f'href="#{name}-')
    return text.replace("<svg ", f'<svg role="img" aria-label="{name}" class="plot" ', 1)


def styled(draw: Any) -> Any:
    """Draw under the report style (rcParams apply while artists are created)."""

    def wrapper(*args: Any, **kwargs: Any) -> str | None:
        import matplotlib

        with matplotlib.rc_context(STYLE):
            return draw(*args, **kwargs)

    wrapper.__name__ = draw.__name__
    wrapper.__doc__ = draw.__doc__
    return wrapper


def _fmt(value: float) -> str:
    if value is None:
        return "-"
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


@styled
def class_sizes(before: dict[str, int] | None, after: dict[str, int] | None, k: int) -> str | None:
    """Equivalence classes per size bucket, before and after k-anonymity (log scale)."""
    if not before and not after:
        return None
    labels = list((before or after or {}).keys())
    fig, ax = _figure("class-sizes", 3.0, top=0.4, bottom=0.55)
    x = list(range(len(labels)))
    width = 0.4
    for offset, counts, color, label in ((-width / 2, before, BEFORE, "input"), (width / 2, after, AFTER, "released")):
        if not counts:
            continue
        values = [counts.get(b, 0) for b in labels]
        bars = ax.bar([i + offset for i in x], [v if v > 0 else math.nan for v in values], width, color=color, label=label)
        for bar, v in zip(bars, values):
            if v > 0:
                ax.annotate(_fmt(v), (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom", fontsize=7,
                            xytext=(0, 1), textcoords="offset points", color="#334155")
    below = [i for i, b in enumerate(labels) if _bucket_high(b) < k]
    if below:
        ax.axvspan(-0.5, max(below) + 0.5, color=WARN, alpha=0.06, lw=0)
        ax.text(max(below) + 0.45, 0.97, f"smaller than k = {k}", transform=ax.get_xaxis_transform(), ha="right",
                va="top", color=WARN, fontsize=8)
    _log(ax.yaxis, ax.set_yscale)
    ax.set_ylim(bottom=0.7)
    top = max([v for c in (before, after) if c for v in c.values()] + [1])
    ax.set_ylim(top=top * 3)
    ax.set_xticks(x, labels)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.grid(axis="x", visible=False)
    ax.set_xlabel("class size (rows in the class)")
    ax.set_ylabel("classes (log scale)")
    ax.set_title("Equivalence-class sizes")
    _legend(ax)
    return _svg(fig, "class-sizes")


def _legend(ax: Any) -> None:
    """The legend in the title's row, at the right."""
    ax.legend(loc="lower right", bbox_to_anchor=(1, 1.0), ncols=4, borderaxespad=0.2)


def _log(axis: Any, set_scale: Any) -> None:
    """A log scale with labelled decades only."""
    from matplotlib.ticker import FuncFormatter, NullLocator

    set_scale("log")
    axis.set_minor_locator(NullLocator())  # minor ticks cost more to draw than the rest of the figure
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))  # 1,000 not 10³ (no mathtext)


def _bucket_high(label: str) -> float:
    if label.endswith("+"):
        return math.inf
    return float(label.split("-")[-1])


@styled
def generalization(levels: dict[str, int], heights: dict[str, int] | None, level_names: dict[str, str] | None,
                   suppressed: int, rows: int | None, limit: float | None) -> str | None:
    """Chosen generalization level per quasi-identifier, and the suppressed rows against their limit."""
    if not levels:
        return None
    height = max(2.1, 1.0 + 0.32 * len(levels))
    fig, (left, right) = _figure("generalization", height, ncols=2, left=_label_width(levels), bottom=0.55, wspace=0.12,
                                 gridspec_kw={"width_ratios": [1.7, 1]})
    names = list(levels)[::-1]
    tops = [(heights or {}).get(q, levels[q]) or 1 for q in names]
    left.barh(names, tops, color=MUTED, height=0.55, label="hierarchy height")
    left.barh(names, [levels[q] for q in names], color=AFTER, height=0.55, label="chosen level")
    for i, q in enumerate(names):
        note = (level_names or {}).get(q) or f"level {levels[q]}"
        left.text(tops[i] + 0.08, i, f"{levels[q]} / {tops[i]}  {note}", va="center", fontsize=8, color="#334155")
    left.set_xlim(0, max(tops) * 1.7)
    left.grid(axis="y", visible=False)
    left.set_xlabel("generalization level (0 = original values)")
    left.set_title("Level per quasi-identifier")
    from matplotlib.ticker import MaxNLocator

    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    allowed = math.floor(limit * rows) if (limit is not None and rows) else None
    scale = max(suppressed, allowed or 0, 1)
    right.barh(["suppressed"], [suppressed], color=WARN if suppressed else MUTED, height=0.5)
    if allowed is not None:
        right.axvline(allowed, color="#0f172a", ls="--", lw=1)
        right.text(allowed, 0.42, f" limit {_fmt(allowed)}", fontsize=8, va="bottom", color="#0f172a")
    share = f" ({suppressed / rows:.2%})" if rows else ""
    right.text(0, -0.42, f"{_fmt(suppressed)} rows{share}", fontsize=8, va="top", color="#334155")
    right.set_xlim(0, scale * 1.35)
    right.set_ylim(-0.9, 0.9)
    right.set_yticks([])
    right.grid(axis="y", visible=False)
    right.set_xlabel("rows")
    right.set_title("Suppressed rows")
    return _svg(fig, "generalization")


@styled
def search(search: dict[str, Any]) -> str | None:
    """The lattice search: nodes checked of all nodes, and rows against distinct quasi-identifier tuples."""
    if not search or not search.get("nodes_total"):
        return None
    labels = ["lattice nodes", "nodes checked", "input rows", "distinct QI tuples"]
    width = _label_width(labels)
    fig, (left, right) = _figure("search", 2.0, ncols=2, left=width, wspace=(width + 0.3) / ((WIDTH - 2 * width) / 2), bottom=0.55)
    bars = [("lattice nodes", search["nodes_total"], BEFORE), ("nodes checked", search["nodes_checked"], AFTER)]
    _hbars(left, bars)
    share = search["nodes_checked"] / search["nodes_total"]
    left.set_title(f"Lattice: {share:.1%} of nodes checked, {search.get('seconds', 0):.3g} s")
    if search.get("rows") and search.get("distinct_tuples"):
        _hbars(right, [("input rows", search["rows"], BEFORE), ("distinct QI tuples", search["distinct_tuples"], ACCENT)])
        right.set_title("Rows vs distinct quasi-identifier tuples")
    else:
        right.set_axis_off()
    return _svg(fig, "search")


def _hbars(ax: Any, bars: Sequence[tuple[str, float, str]]) -> None:
    labels = [b[0] for b in bars][::-1]
    values = [b[1] for b in bars][::-1]
    ax.barh(labels, values, color=[b[2] for b in bars][::-1], height=0.55)
    for i, v in enumerate(values):
        ax.text(v, i, f" {_fmt(v)}", va="center", fontsize=8, color="#334155")
    _log(ax.xaxis, ax.set_xscale)
    ax.set_xlim(0.8, max(values + [1]) * 8)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("count (log scale)")


@styled
def risk(before: dict[str, float] | None, after: dict[str, float] | None) -> str | None:
    """Re-identification risk measures before and after (prosecutor model)."""
    if not before and not after:
        return None
    measures = [("prosecutor_max", "highest risk"), ("prosecutor_avg", "average risk"), ("sample_uniques", "unique rows")]
    fig, ax = _figure("risk", 2.6, width=HALF, top=0.4, bottom=0.4, left=0.6)
    x = list(range(len(measures)))
    for offset, values, color, label in ((-0.2, before, BEFORE, "input"), (0.2, after, AFTER, "released")):
        if not values:
            continue
        heights = [values.get(m, 0.0) for m, _ in measures]
        ax.bar([i + offset for i in x], heights, 0.4, color=color, label=label)
        for i, h in enumerate(heights):
            ax.text(i + offset, h + 0.02, f"{h:.1%}", ha="center", va="bottom", fontsize=8, color="#334155")
    ax.set_xticks(x, [label for _, label in measures])
    ax.set_ylim(0, 1.18)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1], ["0%", "25%", "50%", "75%", "100%"])
    ax.grid(axis="x", visible=False)
    ax.set_title("Re-identification risk")
    _legend(ax)
    return _svg(fig, "risk")


@styled
def dp_query(name: str, title: str, releases: list[dict[str, Any]]) -> str | None:
    """The released values of one DP query, each with its 95% error bar."""
    if not releases:
        return None
    stat = releases[0]["stat"]
    groups = list(dict.fromkeys(_label(r.get("group")) for r in releases))
    slots = list(dict.fromkeys(_slot(r) for r in releases))
    by_group = len(slots) == 1 and len(groups) > 1  # one value per group: the groups are the x axis
    ticks = groups if by_group else slots
    series = ["-"] if by_group else groups
    rotate = sum(len(t) + 2 for t in ticks) > 46 or max(len(t) for t in ticks) > 12
    bottom = 0.5 + (min(max(len(t) for t in ticks), 24) * 0.055 if rotate else 0)
    fig, ax = _figure(name, 2.2 + bottom, width=HALF, left=0.85, bottom=bottom)
    width = 0.8 / len(series)
    bars = stat in ("histogram", "count")
    for g, group in enumerate(series):
        rows = releases if by_group else [r for r in releases if _label(r.get("group")) == group]
        xs = [(groups.index(_label(r.get("group"))) if by_group else slots.index(_slot(r))) + (g - (len(series) - 1) / 2) * width
              for r in rows]
        values = [r["value"] for r in rows]
        errors = [r["error_95"] for r in rows]
        color = SERIES[g % len(SERIES)]
        label = f"{releases[0].get('by')} = {group}" if group != "-" else None
        if bars:
            ax.bar(xs, values, width * (0.9 if len(ticks) > 1 else 0.5), color=color, alpha=0.85, label=label)
            ax.errorbar(xs, values, yerr=errors, fmt="none", ecolor="#0f172a", elinewidth=1, capsize=3)
        else:
            ax.errorbar(xs, values, yerr=errors, fmt="o", color=color, ecolor="#0f172a", elinewidth=1, capsize=4,
                        markersize=5, label=label)
        if len(rows) <= 4:
            for x, v, e in zip(xs, values, errors):
                ax.annotate(f"{_fmt(v)} ± {_fmt(e)}", (x, v), xytext=(8, 0), textcoords="offset points",
                            va="center", fontsize=8, color="#334155")
    step = max(1, math.ceil(len(ticks) / 24))
    ax.set_xticks(range(0, len(ticks), step), [ticks[i] for i in range(0, len(ticks), step)],
                  rotation=45 if rotate else 0, ha="right" if rotate else "center", rotation_mode="anchor")
    ax.set_xlim(-0.7, len(ticks) - 0.3 + (0.9 if len(ticks) <= 4 else 0))
    if by_group:
        ax.set_xlabel(str(releases[0].get("by")))
    from matplotlib.ticker import FuncFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.6g}"))
    ax.grid(axis="x", visible=False)
    ax.set_title(title)
    ax.set_ylabel("value ± 95% error")
    if len(series) > 1:
        ax.legend(loc="upper left", bbox_to_anchor=(1, 1), fontsize=7)
    return _svg(fig, name)


def _label(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        return f"[{_fmt(value[0])}, {_fmt(value[1])})"
    return ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _slot(release: dict[str, Any]) -> str:
    if release.get("bin") is not None:
        return _label(release["bin"])
    if release.get("quantile") is not None:
        return f"q{release['quantile']:g}"
    return release["stat"]


@styled
def budget(total: float, segments: list[tuple[str, float]], remaining: float) -> str | None:
    """The dataset's privacy budget as one bar: spent (by earlier runs and by each stage of this run) and remaining."""
    if not total:
        return None
    fig, ax = _figure("budget", 1.95, left=0.25, right=0.25, top=0.3, bottom=0.95)
    left = 0.0
    colors = [BEFORE] + list(SERIES)
    drawn = [(label, value) for label, value in segments if value > 0]
    for i, (label, value) in enumerate(drawn):
        color = BEFORE if label == "earlier runs" else colors[1 + i % len(SERIES)]
        ax.barh([0], [value], left=left, color=color, height=0.6, label=f"{label}: ε {value:.3g}", edgecolor="white")
        if value / max(total, 1e-12) > 0.07:
            ax.text(left + value / 2, 0, f"{value:.3g}", ha="center", va="center", fontsize=8, color="white")
        left += value
    if remaining > 0:
        ax.barh([0], [remaining], left=left, color="#f1f5f9", height=0.6, edgecolor="#94a3b8", hatch="//",
                label=f"remaining: ε {remaining:.3g}")
        ax.text(left + remaining / 2, 0, f"{remaining:.3g} left", ha="center", va="center", fontsize=8, color="#334155")
    ax.axvline(total, color="#0f172a", lw=1.2)
    ax.text(total, 0.38, f"budget ε {total:g}", ha="right", va="bottom", fontsize=8, color="#0f172a")
    ax.set_xlim(0, max(total, left + remaining) * 1.01)
    ax.set_ylim(-0.5, 0.75)
    ax.set_yticks([])
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("ε")
    fig.legend(loc="lower center", bbox_to_anchor=(0.5, 0.0), ncols=min(4, len(drawn) + 1))
    return _svg(fig, "budget")


@styled
def training(history: list[dict[str, Any]]) -> str | None:
    """Held-out accuracy and ε spent by epoch."""
    points = [h for h in history or [] if h.get("accuracy") is not None or h.get("epsilon") is not None]
    if not points:
        return None
    fig, ax = _figure("training", 2.8, right=0.75)
    epochs = [h["epoch"] for h in points]
    accuracy = [(h["epoch"], h["accuracy"]) for h in points if h.get("accuracy") is not None]
    epsilon = [(h["epoch"], h["epsilon"]) for h in points if h.get("epsilon") is not None]
    lines = []
    if accuracy:
        lines += ax.plot(*zip(*accuracy), "-o", color=AFTER, markersize=4, label="accuracy (held-out)")
        ax.set_ylabel("accuracy", color=AFTER)
        ax.set_ylim(0, 1.05)
    if epsilon:
        twin = ax.twinx() if accuracy else ax
        lines += twin.plot(*zip(*epsilon), "--s", color="#d97706", markersize=3.5, label="ε spent")
        twin.set_ylabel("ε spent", color="#d97706")
        twin.set_ylim(bottom=0)
        twin.grid(False)
        if twin is not ax:
            twin.spines["right"].set_visible(True)
    ax.set_xlabel("epoch")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(min(epochs) - 0.3, max(epochs) + 0.3)
    ax.set_title("Training curve")
    ax.legend(lines, [line.get_label() for line in lines], loc="lower right", bbox_to_anchor=(1, 1.0), ncols=2)
    return _svg(fig, "training")


def timings(stages: list[tuple[str, float]]) -> str | None:
    """Seconds per stage, as a plain SVG bar chart: every run's page has it, and drawing it without
    matplotlib keeps a run without statistical stages from loading matplotlib (~0.5 s)."""
    if not stages:
        return None
    import html

    px = 96  # pixels per inch, as the page lays out the other figures
    label_w = _label_width([label for label, _ in stages]) * px
    bar_h, gap, top, bottom, right = 16, 9, 30, 34, 70
    width = WIDTH * px
    height = top + bottom + len(stages) * (bar_h + gap)
    scale = max([s for _, s in stages] + [1e-3]) * 1.25
    plot_w = width - label_w - right
    font = 'font-family="DejaVu Sans, Arial, sans-serif"'
    parts = [
        f'<svg role="img" aria-label="timings" class="plot" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}">',
        f'<g id="timings-figure"><text x="{label_w:.1f}" y="18" {font} font-size="13" font-weight="bold" fill="#0f172a">Time per stage</text>',
    ]
    for i, (label, seconds) in enumerate(stages):
        y = top + i * (bar_h + gap)
        w = max(seconds, 0.0) / scale * plot_w
        parts.append(
            f'<text x="{label_w - 6:.1f}" y="{y + bar_h * 0.75:.1f}" text-anchor="end" {font} font-size="12" fill="#475569">{html.escape(label)}</text>'
            f'<rect x="{label_w:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{ACCENT}"/>'
            f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h * 0.75:.1f}" {font} font-size="11" fill="#334155">{seconds:.3g} s</text>'
        )
    axis_y = top + len(stages) * (bar_h + gap)
    parts.append(
        f'<line x1="{label_w:.1f}" y1="{axis_y}" x2="{label_w + plot_w:.1f}" y2="{axis_y}" stroke="#94a3b8"/>'
        f'<text x="{label_w + plot_w / 2:.1f}" y="{axis_y + 22}" text-anchor="middle" {font} font-size="12" fill="#334155">seconds</text>'
        "</g></svg>"
    )
    return "".join(parts)


__all__ = ["available", "budget", "class_sizes", "dp_query", "generalization", "risk", "search", "timings", "training"]
