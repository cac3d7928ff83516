"""The ``microaggregate`` stage: MDAV microaggregation (Domingo-Ferrer & Torra 2005) of numeric columns.

Groups of at least k records that are close on ``columns`` (Euclidean distance on standardized values:
each column minus its mean, over its standard deviation) are replaced by their centroid, so every
group's rows share one value per column and the columns are k-anonymous on their own.

MDAV (maximum distance to average vector), on the distinct tuples of ``columns`` with their counts
(a tuple is never split: all its rows go to one group, which then may exceed k):
while at least 3k rows remain, take the tuple r farthest from the centroid of the remaining rows and
group it with its nearest tuples until the group has k rows; then likewise around the tuple s farthest
from r. With 2k to 3k rows left, one group around the tuple farthest from the centroid, the rest a
group; fewer than 2k left make one group (rows left below k join the last group). Ties go to the
tuple first in value order, so the result depends only on the multiset of rows.

Cost: each group needs the distances from one tuple to all remaining ones, so about ``m²/k``
distance computations (``m`` distinct tuples, ``d`` columns: ``O(m²·d/k)`` flops), and memory for
``m × d`` floats. ``max_tuples`` (default 100,000: about 2·10⁹ distance computations at k=5, a couple of minutes) bounds
both; above it the stage stops with a one-line error before anything is written.

>>> import pandas as pd
>>> out = Microaggregate(columns=["x"], k=3).apply(pd.DataFrame({"x": [1, 1, 1, 1, 5, 6, 7]}))
>>> out.x.tolist()
[1.0, 1.0, 1.0, 1.0, 6.0, 6.0, 6.0]
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from privprep.schemas.errors import ConfigError, DataError, PrivacyError
from privprep.schemas.stages import MicroaggregateParams

from .anonymity import utility
from .anonymity.lookup import TupleLookup
from .anonymity.store import TupleStore
from .anonymity.tuples import DistinctTuples, TupleCounter
from .base import GlobalStage, StageContext
from .registry import register


def mdav(points: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    """Group id of each point (rows of ``points``, already standardized), weighted by ``weights``
    rows each; every group has at least ``k`` rows when the weights sum to at least k.

    >>> mdav(np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [12.0]]), np.ones(6), 3).tolist()
    [0, 0, 0, 1, 1, 1]
    """
    group = np.full(len(points), -1, dtype=np.int64)
    alive = np.arange(len(points))  # indexes of the points not yet grouped, in value order
    pts = np.ascontiguousarray(points, dtype=float)  # their coordinates, compacted with ``alive``
    w = np.asarray(weights, dtype=float)
    total = float(w.sum())
    weighted_sum = (pts * w[:, None]).sum(axis=0)  # of the remaining points: the centroid in O(d)
    next_id = 0

    def distances(origin: np.ndarray) -> np.ndarray:
        diff = pts - origin
        return np.einsum("ij,ij->i", diff, diff)

    def take_around(i: int) -> tuple[float, np.ndarray]:
        """Group point ``i`` (a position in ``alive``) with its nearest; the distances from it of the rest."""
        nonlocal alive, pts, w, next_id, weighted_sum
        d = distances(pts[i])
        if len(d) > k:  # at most k points are needed (each has a row or more): the k nearest distances and their ties
            near = np.flatnonzero(d <= np.partition(d, k - 1)[k - 1])
        else:
            near = np.arange(len(d))
        near = near[np.lexsort((near, d[near]))]  # by distance, ties in value order
        cum = np.cumsum(w[near])
        stop = min(int(np.searchsorted(cum, k - 1e-9)), len(near) - 1)
        chosen = near[: stop + 1]
        group[alive[chosen]] = next_id
        next_id += 1
        weighted_sum = weighted_sum - (pts[chosen] * w[chosen, None]).sum(axis=0)
        keep = np.ones(len(alive), dtype=bool)
        keep[chosen] = False
        alive, pts, w = alive[keep], pts[keep], w[keep]
        return float(cum[stop]), d[keep]

    while total >= 3 * k:
        taken, from_r = take_around(int(np.argmax(distances(weighted_sum / w.sum()))))  # r: farthest from the centroid
        total -= taken
        if total >= 2 * k:
            total -= take_around(int(np.argmax(from_r)))[0]  # s: farthest from r (the first of ties)
    if total >= 2 * k:
        total -= take_around(int(np.argmax(distances(weighted_sum / w.sum()))))[0]
    if len(alive):
        if total >= k or next_id == 0:
            group[alive] = next_id
        else:  # fewer than k rows left (whole tuples overshot a group): they join the last group
            group[alive] = next_id - 1
    return group


@register
class Microaggregate(GlobalStage):
    """Replace numeric ``columns`` by the centroids of MDAV groups of at least ``k`` rows.

    Pass 1 counts the distinct tuples of ``columns`` (never raw rows); ``decide`` groups them;
    pass 2 replaces each row's values by its tuple's group centroid (float64 columns).
    """

    name: ClassVar[str] = "microaggregate"
    Params = MicroaggregateParams

    def __init__(self, *, columns: list[str], k: int, method: str = "mdav", max_tuples: int = 100_000) -> None:
        params = MicroaggregateParams.model_validate({"columns": list(columns), "k": k, "method": method, "max_tuples": max_tuples})
        if len(set(params.columns)) != len(params.columns):
            raise ConfigError("microaggregate.columns: a column is listed twice")
        self.params = params
        self.columns = list(params.columns)
        self._counter = TupleCounter(self.columns)

    @classmethod
    def from_config(cls, params: MicroaggregateParams, *, context: StageContext) -> "Microaggregate":
        return cls(columns=list(params.columns), k=params.k, method=params.method, max_tuples=params.max_tuples)

    def input_columns(self) -> list[str]:
        return list(self.columns)

    def output_schema(self, schema: pa.Schema) -> pa.Schema:
        self._require(schema, self.columns)
        for column in self.columns:
            field = schema.field(column)
            if not (pa.types.is_integer(field.type) or pa.types.is_floating(field.type) or pa.types.is_decimal(field.type)):
                raise DataError(f"microaggregate: column '{column}' has type {field.type}; MDAV needs numbers (use k_anonymity for it)")
            schema = schema.set(schema.get_field_index(column), pa.field(column, pa.float64()))
        return schema

    def observe(self, table: pa.Table) -> None:
        self._counter.observe(table.select(self.columns))

    def merge(self, other: "GlobalStage") -> None:
        """Add the tuple counts a copy of this stage observed over other partitions."""
        if not isinstance(other, Microaggregate) or other.columns != self.columns:
            raise TypeError("merge() takes a copy of the same microaggregate stage")
        self._counter.merge(other._counter)

    def decide(self) -> None:
        tuples = self._counter.result()
        self._counter = TupleCounter(self.columns)
        if isinstance(tuples, TupleStore):  # pragma: no cover - the counter spills only with spill_tuples
            tuples.close()
            raise PrivacyError("microaggregate: the distinct tuples did not fit in memory")
        self._decide(tuples)

    def _decide(self, tuples: DistinctTuples) -> None:
        m, n, k = len(tuples.counts), tuples.rows, self.params.k
        if m > self.params.max_tuples:
            raise PrivacyError(
                f"microaggregate: {m:,} distinct tuples of {', '.join(self.columns)}, more than max_tuples={self.params.max_tuples:,} "
                "(MDAV costs tuples²/k distance computations); round the columns first or raise max_tuples"
            )
        if n < k:
            raise PrivacyError(f"microaggregate: {n:,} rows, fewer than k={k}")
        values = []
        for j, column in enumerate(self.columns):
            dictionary = tuples.dictionaries[j]
            if not utility.is_numeric(dictionary):
                raise DataError(f"microaggregate: column '{column}' has type {dictionary.type}; MDAV needs numbers (use k_anonymity for it)")
            numbers = utility.as_float(dictionary)
            if np.isnan(numbers).any():
                raise DataError(f"microaggregate: column '{column}' has missing values; MDAV needs a number in every row (fill or drop them first)")
            values.append(numbers[tuples.codes[:, j]])
        raw = np.column_stack(values) if values else np.empty((0, 0))
        counts = tuples.counts.astype(float)
        order = np.lexsort(raw.T[::-1])  # value order: the result does not depend on the order rows came in
        raw, counts, codes = raw[order], counts[order], tuples.codes[order]
        mean = (raw * counts[:, None]).sum(axis=0) / n
        std = np.sqrt((((raw - mean) ** 2) * counts[:, None]).sum(axis=0) / n)
        std[std == 0] = 1.0
        z = (raw - mean) / std
        t0 = time.perf_counter()
        group = mdav(z, counts, k)
        seconds = time.perf_counter() - t0
        n_groups = int(group.max()) + 1
        rows = np.bincount(group, weights=counts, minlength=n_groups)
        centroid = np.column_stack([np.bincount(group, weights=counts * raw[:, j], minlength=n_groups) / rows for j in range(raw.shape[1])])
        self._centroids = {c: pa.array(centroid[:, j], pa.float64()) for j, c in enumerate(self.columns)}
        self._lookup = TupleLookup(dict(zip(self.columns, tuples.dictionaries)), codes, group)
        zc = (centroid - mean) / std
        sse = float((((z - zc[group]) ** 2) * counts[:, None]).sum())
        sst = float(((z**2) * counts[:, None]).sum())
        ncp = {}
        for j, c in enumerate(self.columns):
            lo = np.full(n_groups, np.inf)
            hi = np.full(n_groups, -np.inf)
            np.minimum.at(lo, group, raw[:, j])
            np.maximum.at(hi, group, raw[:, j])
            span = float(raw[:, j].max() - raw[:, j].min())
            ncp[c] = float((rows * ((hi - lo) / span if span > 0 else 0.0)).sum() / n)
        sizes = rows.astype(np.int64)
        self.summary_ = {
            "groups": n_groups,
            "achieved_k": int(sizes.min()),
            "information_loss": {"metric": "sse_sst", "value": sse / sst if sst > 0 else 0.0},
            "measures": utility.summary(sizes, k=k, suppressed=0, ncp=ncp),
            "distinct_tuples": m,
            "mdav_seconds": round(seconds, 4),
        }

    def transform(self, table: pa.Table) -> pa.Table:
        if not hasattr(self, "summary_"):
            raise RuntimeError("microaggregate: decide() must run before transform()")
        group = self._lookup.find(table)
        for column in self.columns:
            values = self._centroids[column].take(pa.array(group, pa.int64()))
            table = table.set_column(table.schema.get_field_index(column), pa.field(column, pa.float64()), values)
        return table

    def report(self) -> dict[str, Any]:
        base = {"columns": self.columns, "k": self.params.k, "method": self.params.method}
        return {**base, **getattr(self, "summary_", {})}


__all__ = ["Microaggregate", "mdav"]
