"""DP statistics in a sweep: one ``dp_stats`` stage per ε, and each released value's error against the
exact value of the same statistic.

The exact values are computed from the statistics the stage accumulated (the same clipping and the
same estimator, with the noise left out). They exist only inside ``privprep sweep``, a local tuning
tool: only the errors leave this module, never an exact value, and the sweep's outputs say that they
must not be published.

>>> import pyarrow as pa
>>> from privprep.transforms.dp import DpStats, SpendLog
>>> stage = DpStats(epsilon=1.0, queries=[{"column": "x", "stat": "sum"}],
...                 columns={"x": {"role": "sensitive", "bounds": [0, 10]}}, seed=1)
>>> stage.observe(pa.table({"x": [1.0, 2.0, 30.0]}))   # 30 is clipped to 10
>>> releases = stage.release(SpendLog(epsilon=1.0))
>>> [e["value"] for e in exact_values(stage)]
[13.0]
>>> errors = release_errors(releases, exact_values(stage))
>>> errors[0]["abs_error"] == abs(releases[0]["value"] - 13.0)
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from privprep.transforms.dp.mechanisms import NoiseSource, Noisy


class ExactSource(NoiseSource):
    """A noise source that adds none: the query's own estimator on its exact statistics."""

    def __init__(self) -> None:
        super().__init__(seed=0)

    def laplace(self, value: float, *, epsilon: float, sensitivity: float, tail: float = 0.05) -> Noisy:
        return Noisy(float(value), "exact", 0.0, 0.0, epsilon, float(sensitivity))

    def count(self, value: int, *, epsilon: float, truncate: bool = True, tail: float = 0.05, sensitivity: int = 1) -> Noisy:
        return Noisy(int(value), "exact", 0.0, 0.0, epsilon, float(sensitivity))

    def counts(self, values: np.ndarray, *, epsilon: float, truncate: bool = True, sensitivity: int = 1) -> np.ndarray:
        return np.asarray(values, dtype=np.int64).copy()


def exact_values(stage: Any) -> list[dict[str, Any]]:
    """The exact value of every statistic ``stage`` released (aligned with its releases)."""
    source = ExactSource()
    if getattr(stage, "person_level", False):  # bounded once, at release: no second, exact pass (not swept yet)
        return []
    return [entry for query in stage.queries_ for entry in query.release(source)]


def release_errors(releases: list[dict[str, Any]], exact: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per released value: ``abs_error`` and ``relative_error`` (|released - exact| / max(|exact|, 1))."""
    out = []
    for released, truth in zip(releases, exact):
        error = abs(float(released["value"]) - float(truth["value"]))
        out.append({
            "column": released["column"], "stat": released["stat"], "abs_error": error,
            "relative_error": error / max(abs(float(truth["value"])), 1.0), "error_95": released["error_95"],
        })
    return out


def summarize(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of one ε: largest and mean relative error, per query (column, stat) and overall."""
    queries: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for e in errors:
        queries.setdefault((e["column"], e["stat"]), []).append(e)
    per_query = [
        {"column": column, "stat": stat, "values": len(items),
         "max_relative_error": max(i["relative_error"] for i in items),
         "mean_relative_error": float(np.mean([i["relative_error"] for i in items])),
         "mean_abs_error": float(np.mean([i["abs_error"] for i in items])),
         "mean_error_95": float(np.mean([i["error_95"] for i in items]))}
        for (column, stat), items in queries.items()
    ]
    return {
        "values": len(errors),
        "max_relative_error": max((e["relative_error"] for e in errors), default=0.0),
        "mean_relative_error": float(np.mean([e["relative_error"] for e in errors])) if errors else 0.0,
        "queries": per_query,
    }


__all__ = ["ExactSource", "exact_values", "release_errors", "summarize"]
