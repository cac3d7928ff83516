"""Multidimensional Mondrian with strict partitioning (LeFevre, DeWitt & Ramakrishnan, ICDE 2006),
on the distinct quasi-identifier tuples and their counts (never on rows).

Start with one partition holding every row. A partition is cut along one quasi-identifier:

* numeric: at the median. With the partition's distinct values ``v1 < … < vm`` and their row counts,
  the cut value is the first ``vi`` whose cumulative count reaches half the partition's rows (``vm−1``
  when that is ``vm``, so both sides have a value); the left side holds the values ``≤ vi``, the right
  the others. A missing value sorts after every number.
* categorical: along its hierarchy. The partition stands at the lowest level where all its values have
  one generalized value (their lowest common ancestor, LCA); the cut splits it into the children one
  level down, one partition each.

A cut is *allowable* when every side has at least k rows and meets the l-diversity and t-closeness
criteria (t against the whole table's distribution). Dimensions are tried widest first (normalized
width: numeric range over the column's range; categorical ``(values under the LCA − 1) / (values − 1)``;
ties in quasi-identifier order) and the first allowable cut is made; a partition without any allowable
cut is final. The result depends only on the values and their counts, never on the order of tuples
(so the Dask engine gives the streaming engine's output).

Each final partition is recoded: a numeric column to ``[lo, hi]`` (the least and greatest value present
in the partition; a partition of only missing values keeps them missing, one mixing missing and present
values becomes ``*``), a categorical column to the LCA's label at that level.

Cost: every cut costs a sort of the partition's tuples per dimension tried, so the whole costs about
``O(m log m · log(n/k) · q)`` for m distinct tuples and q quasi-identifiers, plus a few numpy calls per
partition (about n/k partitions). Memory: the distinct tuples (int32 codes) and a few int64 arrays
over them.

>>> import pyarrow as pa
>>> from privprep.transforms.anonymity.criteria import Criteria
>>> from privprep.transforms.anonymity.tuples import TupleCounter
>>> counter = TupleCounter(["age"]); counter.observe(pa.table({"age": [20, 21, 22, 30, 31, 32]}))
>>> result = partition(counter.result(), ["age"], {}, Criteria(k=3))
>>> sorted(result.recodings["age"])
['[20, 22]', '[30, 32]']
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from privprep.schemas.errors import DataError

from ..hierarchies import Hierarchy
from . import utility
from .criteria import Criteria, judge, sensitive_codes
from .tuples import DistinctTuples

TOP = "*"


@dataclass
class Partitioning:
    """The final partitions: ``part`` gives each distinct tuple's partition; per partition its rows,
    and per quasi-identifier its recoded value and NCP (and, for categorical ones, the LCA level)."""

    part: np.ndarray
    sizes: np.ndarray
    recodings: dict[str, list[str | None]]
    penalties: dict[str, np.ndarray]
    covered: dict[str, np.ndarray]
    levels: dict[str, np.ndarray] = field(default_factory=dict)
    cuts: int = 0
    cuts_tried: int = 0


class _Numeric:
    """A numeric quasi-identifier: each tuple's value rank (missing last)."""

    def __init__(self, name: str, dictionary: pa.Array, codes: np.ndarray) -> None:
        numbers = utility.as_float(dictionary)
        present = ~np.isnan(numbers)
        order = np.argsort(numbers[present], kind="stable")
        self.name = name
        self.sorted = numbers[present][order]
        self.text = [_text(v) for v in dictionary.filter(pa.array(present)).take(pa.array(order)).to_pylist()]
        rank_of_code = np.full(len(dictionary), len(self.sorted), dtype=np.int64)  # missing: after every number
        rank_of_code[np.flatnonzero(present)[order]] = np.arange(len(self.sorted))
        self.missing_rank = len(self.sorted)
        self.rank = rank_of_code[codes]
        self.span = float(self.sorted[-1] - self.sorted[0]) if len(self.sorted) else 0.0

    def width(self, idx: np.ndarray) -> float:
        r = self.rank[idx]
        lo, hi = int(r.min()), int(r.max())
        if hi == self.missing_rank:
            return 0.0 if lo == hi else 1.0
        return (self.sorted[hi] - self.sorted[lo]) / self.span if self.span > 0 else 0.0

    def cut(self, idx: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, int] | None:
        """Side (0 left, 1 right) of each tuple at the median cut; None with a single value."""
        r = self.rank[idx]
        distinct, inverse = np.unique(r, return_inverse=True)
        if len(distinct) < 2:
            return None
        cum = np.cumsum(np.bincount(inverse, weights=counts, minlength=len(distinct)))
        i = min(int(np.searchsorted(cum, cum[-1] / 2.0, side="left")), len(distinct) - 2)
        return (r > distinct[i]).astype(np.int64), 2

    def recode(self, idx: np.ndarray) -> tuple[str | None, float, int]:
        """The partition's value, its NCP and the number of distinct values it covers."""
        r = self.rank[idx]
        lo, hi = int(r.min()), int(r.max())
        if lo == self.missing_rank:
            return None, 0.0, 1
        if hi == self.missing_rank:
            return TOP, 1.0, self.missing_rank + 1
        ncp = (self.sorted[hi] - self.sorted[lo]) / self.span if self.span > 0 else 0.0
        return f"[{self.text[lo]}, {self.text[hi]}]", float(ncp), hi - lo + 1


class _Categorical:
    """A categorical quasi-identifier: each tuple's node code at every level of its hierarchy."""

    def __init__(self, name: str, hierarchy: Hierarchy, codes: np.ndarray) -> None:
        self.name = name
        level_codes = hierarchy.level_codes()
        self.gen = [lc[codes] for lc in level_codes]
        self.dict_codes = codes
        self.labels = [hierarchy.level(i).to_pylist() for i in range(hierarchy.height + 1)]
        self.leaves = [np.bincount(lc) for lc in level_codes]  # distinct values under each node
        self.domain = len(hierarchy.values)

    def lca(self, idx: np.ndarray, start: int) -> int:
        """The lowest level at or below ``start`` where every tuple of ``idx`` has one value."""
        level = start
        while level > 0:
            g = self.gen[level - 1][idx]
            if not (g == g[0]).all():
                break
            level -= 1
        return level

    def width(self, idx: np.ndarray, level: int) -> float:
        return (self.leaves[level][self.gen[level][idx[0]]] - 1) / max(self.domain - 1, 1)

    def cut(self, idx: np.ndarray, level: int) -> tuple[np.ndarray, int] | None:
        if level == 0:
            return None
        _, inverse = np.unique(self.gen[level - 1][idx], return_inverse=True)
        return inverse.astype(np.int64), int(inverse.max()) + 1

    def recode(self, idx: np.ndarray, level: int) -> tuple[str | None, float, int]:
        covered = int(self.leaves[level][self.gen[level][idx[0]]])
        label = self.labels[level][int(self.dict_codes[idx[0]])]
        return label, (covered - 1) / max(self.domain - 1, 1), covered


def partition(
    tuples: DistinctTuples,
    quasi_identifiers: list[str],
    hierarchies: dict[str, Hierarchy],
    criteria: Criteria,
) -> Partitioning:
    """Mondrian's final partitions of ``tuples``. Numeric quasi-identifiers are cut at medians;
    the others need a hierarchy (built over ``tuples.dictionaries``) in ``hierarchies``.
    Raises :class:`DataError` when a non-numeric quasi-identifier has none."""
    counts = tuples.counts.astype(np.int64)
    dims: list[_Numeric | _Categorical] = []
    for q in quasi_identifiers:
        j = tuples.index(q)
        dictionary, codes = tuples.dictionaries[j], tuples.codes[:, j].astype(np.int64)
        if utility.is_numeric(dictionary) or (pa.types.is_null(dictionary.type) and q not in hierarchies):
            dims.append(_Numeric(q, dictionary, codes))
        elif q in hierarchies:
            dims.append(_Categorical(q, hierarchies[q], codes))
        else:
            raise DataError(
                f"k_anonymity: column '{q}' is not numeric (type {dictionary.type}); Mondrian cuts it along a hierarchy: "
                f"add hierarchies.{q}, e.g. {{csv: FILE}} or {{mask: {{}}}}"
            )
    sensitive = _sensitive(tuples, criteria)
    overall = {name: np.bincount(c, weights=counts) / max(counts.sum(), 1) for name, (c, _) in sensitive.items()}

    def allowable(idx: np.ndarray, labels: np.ndarray, n: int) -> bool:
        sizes = np.bincount(labels, weights=counts[idx], minlength=n)
        if (sizes < criteria.k).any():
            return False
        if not sensitive:
            return True
        subset = {name: (c[idx], ordered) for name, (c, ordered) in sensitive.items()}
        _, violating, _, _ = judge(criteria, labels, n, counts[idx], subset, overall)
        return not violating.any()

    cat = [i for i, d in enumerate(dims) if isinstance(d, _Categorical)]
    root = np.arange(len(counts))
    if len(root) == 0 or not allowable(root, np.zeros(len(root), np.int64), 1):
        raise Unreachable()
    top = {i: dims[i].lca(root, len(dims[i].gen) - 1) for i in cat}  # type: ignore[union-attr]
    stack: list[tuple[np.ndarray, dict[int, int]]] = [(root, top)]
    finals: list[tuple[np.ndarray, dict[int, int]]] = []
    cuts = tried = 0
    while stack:
        idx, levels = stack.pop()
        if len(idx) < 2 or counts[idx].sum() < 2 * criteria.k:  # no cut can leave k rows on two sides
            finals.append((idx, levels))
            continue
        widths = np.array([d.width(idx) if isinstance(d, _Numeric) else d.width(idx, levels[i]) for i, d in enumerate(dims)])
        cut = False
        for i in np.argsort(-widths, kind="stable"):
            if widths[i] <= 0:
                break
            d = dims[i]
            split = d.cut(idx, counts[idx]) if isinstance(d, _Numeric) else d.cut(idx, levels[i])
            if split is None:
                continue
            tried += 1
            labels, n = split
            if not allowable(idx, labels, n):
                continue
            cut, cuts = True, cuts + 1
            order = np.argsort(labels, kind="stable")
            bounds = np.searchsorted(labels[order], np.arange(n + 1))
            for c in range(n):
                child = idx[order[bounds[c] : bounds[c + 1]]]
                child_levels = {j: dims[j].lca(child, levels[j] - 1 if j == i else levels[j]) for j in cat}  # type: ignore[union-attr]
                stack.append((child, child_levels))
            break
        if not cut:
            finals.append((idx, levels))
    return _result(finals, dims, counts, cuts, tried)


class Unreachable(Exception):
    """The whole table fails the criteria: no partitioning can satisfy them."""


def _sensitive(tuples: DistinctTuples, criteria: Criteria) -> dict[str, tuple[np.ndarray, bool]]:
    names = [c.column for c in criteria.l_diversity] + [name for name, _ in criteria.t_closeness]
    return {name: sensitive_codes(tuples, name) for name in dict.fromkeys(names)}


def _result(finals: list, dims: list, counts: np.ndarray, cuts: int, tried: int) -> Partitioning:
    part = np.empty(len(counts), dtype=np.int64)
    sizes = np.empty(len(finals), dtype=np.int64)
    recodings: dict[str, list[str | None]] = {d.name: [] for d in dims}
    penalties = {d.name: np.empty(len(finals)) for d in dims}
    covered = {d.name: np.empty(len(finals), dtype=np.int64) for d in dims}
    levels = {d.name: np.empty(len(finals), dtype=np.int64) for d in dims if isinstance(d, _Categorical)}
    for p, (idx, lv) in enumerate(finals):
        part[idx] = p
        sizes[p] = counts[idx].sum()
        for i, d in enumerate(dims):
            value, ncp, n_covered = d.recode(idx) if isinstance(d, _Numeric) else d.recode(idx, lv[i])
            recodings[d.name].append(value)
            penalties[d.name][p] = ncp
            covered[d.name][p] = n_covered
            if isinstance(d, _Categorical):
                levels[d.name][p] = lv[i]
    return Partitioning(part, sizes, recodings, penalties, covered, levels, cuts, tried)


def _text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


__all__ = ["Partitioning", "Unreachable", "partition"]
