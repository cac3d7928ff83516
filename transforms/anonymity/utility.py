"""Utility measures that compare anonymization algorithms in one form (full-domain generalization,
Mondrian local recoding, microaggregation): each reported as ``measures`` in the stage's entry.

* ``discernibility`` (Bayardo & Agrawal): ``Σ|E|²`` over the kept classes plus ``n`` for every
  suppressed row.
* ``c_avg`` (LeFevre et al. 2006): ``(kept rows / kept classes) / k``; 1 is the ideal.
* ``ncp`` per quasi-identifier (normalized certainty penalty, Xu et al. 2006) averaged over the input
  rows: for a numeric column the range of the values a released value covers divided by the column's
  range; for a categorical one ``(distinct values covered − 1) / (distinct values − 1)``; 1 for a
  suppressed row. ``gcp`` (global certainty penalty, Ghinita et al. 2007) is their mean over the
  quasi-identifiers: 0 is the input, 1 is everything suppressed or fully generalized.

"Covered" means the values present in the data that the released value stands for: the original values
of the same generalized value for a hierarchy level, ``[lo, hi]`` of a Mondrian interval, the group's
values for microaggregation.

>>> import numpy as np, pyarrow as pa
>>> w = penalty_per_group(pa.array([20, 30, 40, 60]), np.array([0, 0, 1, 1]))
>>> w.tolist()  # [20, 30] covers 10 of the range 40; [40, 60] covers 20
[0.25, 0.5]
>>> penalty_per_group(pa.array(["a", "b", "c"]), np.array([0, 0, 1])).tolist()
[0.5, 0.0]
>>> summary(np.array([2, 3]), k=2, suppressed=1, ncp={"age": 0.25})
{'discernibility': 19.0, 'c_avg': 1.25, 'ncp': {'age': 0.25}, 'gcp': 0.25}
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def is_numeric(values: pa.Array) -> bool:
    """Whether a column's values are numbers (cut into intervals, measured by range)."""
    t = values.type
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def as_float(values: pa.Array) -> np.ndarray:
    """Numbers as float64, a missing value as NaN."""
    return np.asarray(pc.cast(values, pa.float64(), safe=False).to_numpy(zero_copy_only=False), dtype=float)


def penalty_per_group(values: pa.Array, groups: np.ndarray, n_groups: int | None = None) -> np.ndarray:
    """NCP of each generalized group, given each distinct value's group id (``groups``, aligned with
    ``values``, every value present in the data). A group mixing missing and present values costs 1."""
    n_groups = int(groups.max(initial=-1)) + 1 if n_groups is None else n_groups
    groups = np.asarray(groups, dtype=np.int64)
    missing = np.asarray(pc.is_null(values).to_numpy(zero_copy_only=False), dtype=bool)
    has_missing = np.bincount(groups[missing], minlength=n_groups) > 0
    has_value = np.bincount(groups[~missing], minlength=n_groups) > 0
    if is_numeric(values):
        numbers = as_float(values)[~missing]
        lo = np.full(n_groups, np.inf)
        hi = np.full(n_groups, -np.inf)
        np.minimum.at(lo, groups[~missing], numbers)
        np.maximum.at(hi, groups[~missing], numbers)
        span = float(numbers.max() - numbers.min()) if len(numbers) else 0.0
        out = np.where(has_value, (hi - lo) / span if span > 0 else 0.0, 0.0)
    else:
        covered = np.bincount(groups, minlength=n_groups)
        out = (covered - 1) / max(len(values) - 1, 1)
    return np.where(has_missing & has_value, 1.0, out).astype(float)


def summary(kept_sizes: np.ndarray, *, k: int, suppressed: int, ncp: Mapping[str, float]) -> dict[str, object]:
    """The ``measures`` entry from the kept classes' sizes, the suppressed rows and each column's NCP."""
    kept_sizes = np.asarray(kept_sizes, dtype=np.int64)
    kept_sizes = kept_sizes[kept_sizes > 0]
    n = int(kept_sizes.sum()) + int(suppressed)
    c_avg = float(kept_sizes.sum() / len(kept_sizes) / max(k, 1)) if len(kept_sizes) else None
    return {
        "discernibility": float(math.fsum(kept_sizes.astype(float) ** 2) + float(suppressed) * n),
        "c_avg": c_avg,
        "ncp": {name: float(v) for name, v in ncp.items()},
        "gcp": math.fsum(ncp.values()) / len(ncp) if ncp else 0.0,
    }


def generalized_ncp(
    chunks: Iterable[tuple[Sequence[np.ndarray], np.ndarray]],
    groups: Sequence[np.ndarray],
    penalties: Sequence[np.ndarray],
    radix: Sequence[int],
    suppressed_keys: np.ndarray,
) -> list[float]:
    """NCP per quasi-identifier of a full-domain generalization, over tuple ``chunks`` (codes of each
    quasi-identifier, counts): ``groups[i]`` maps a value code to its generalized code, ``penalties[i]``
    that code to its NCP; a tuple whose class key (mixed radix over the generalized codes, as the
    stage's) is in ``suppressed_keys`` costs 1 on every column."""
    kept = [np.zeros(len(w), dtype=np.int64) for w in penalties]  # kept rows per generalized code: exact, so
    suppressed = rows = 0  # the result does not depend on how the tuples were chunked
    for codes, counts in chunks:
        generalized = [g[np.asarray(c, dtype=np.int64)] for g, c in zip(groups, codes)]
        key = np.zeros(len(counts), dtype=np.int64)
        for r, g in zip(radix, generalized):
            key = key * r + g
        counts = np.asarray(counts, dtype=np.int64)
        gone = np.isin(key, suppressed_keys)
        rows += int(counts.sum())
        suppressed += int(counts[gone].sum())
        for i, g in enumerate(generalized):
            kept[i] += np.bincount(g[~gone], weights=counts[~gone], minlength=len(kept[i])).astype(np.int64)
    # math.fsum: correctly rounded, so equal whatever order the codes come in (the engines' dictionaries differ)
    return [(math.fsum(kept_rows * w) + suppressed) / rows if rows else 0.0 for kept_rows, w in zip(kept, penalties)]


__all__ = ["as_float", "generalized_ncp", "is_numeric", "penalty_per_group", "summary"]
