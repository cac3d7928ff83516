"""Privacy measures over equivalence classes, with the textbook definitions.

* k-anonymity: every class has at least k rows (Samarati & Sweeney).
* l-diversity (Machanavajjhala et al. 2007): *distinct* — at least l distinct sensitive values per
  class; *entropy* — ``-Σ p log p >= log l`` per class; *recursive (c,l)* — ``r1 < c·(r_l + … + r_m)``
  with the class's value counts sorted in decreasing order.
* t-closeness (Li, Li, Venkatasubramanian 2007): the Earth Mover's Distance between a class's
  sensitive distribution and the whole table's is at most t; equal ground distance for categorical
  attributes (``EMD = ½ Σ|p_i − q_i|``), ordered distance for numeric ones
  (``EMD = 1/(m−1) Σ_i |Σ_{j≤i} (p_j − q_j)|`` over the m sorted distinct values).
* Re-identification risk (prosecutor model): maximum ``1 / min class size``, average over records
  ``classes / n``, and the share of records that are unique in the sample.

>>> import numpy as np
>>> classes = np.array([0, 0, 1, 1, 1]); counts = np.ones(5, dtype=np.int64); s = np.array([0, 1, 0, 0, 0])
>>> distinct_l(classes, counts, s, 2).tolist(), risk(np.array([2, 3]))
([2, 1], {'prosecutor_max': 0.5, 'prosecutor_avg': 0.4, 'sample_uniques': 0.0})
"""

from __future__ import annotations

import numpy as np


def class_sizes(classes: np.ndarray, counts: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows per class, from each tuple's class index and row count."""
    return np.bincount(classes, weights=counts, minlength=n_classes).astype(np.int64)


def risk(sizes: np.ndarray) -> dict[str, float]:
    """Prosecutor risks of a table whose classes have ``sizes`` rows (empty classes ignored)."""
    return risk_from_profile(*np.unique(sizes[sizes > 0], return_counts=True))


def risk_from_profile(values: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    """:func:`risk` from the distinct class sizes ``values`` and the number of ``classes`` of each.

    >>> risk_from_profile(np.array([1, 3]), np.array([2, 1]))
    {'prosecutor_max': 1.0, 'prosecutor_avg': 0.6, 'sample_uniques': 0.4}
    """
    keep = values > 0
    values, classes = values[keep].astype(np.int64), classes[keep].astype(np.int64)
    n = int((values * classes).sum())
    if n == 0:
        return {"prosecutor_max": 0.0, "prosecutor_avg": 0.0, "sample_uniques": 0.0}
    return {
        "prosecutor_max": float(1.0 / values.min()),
        "prosecutor_avg": float(classes.sum() / n),
        "sample_uniques": float(classes[values == 1].sum() / n),
    }


def _pair_counts(classes: np.ndarray, counts: np.ndarray, sensitive: np.ndarray, n_classes: int, n_values: int):
    """Rows per (class, sensitive value) pair, as sparse arrays (class, value, count) sorted by class."""
    key = classes.astype(np.int64) * n_values + sensitive
    codes, uniques = _factorize(key)
    totals = np.bincount(codes, weights=counts, minlength=len(uniques)).astype(np.int64)
    return uniques // n_values, uniques % n_values, totals


def pair_counts(classes: np.ndarray, counts: np.ndarray, sensitive: np.ndarray, n_classes: int) -> tuple[np.ndarray, ...]:
    """(class, value, rows) of every (class, sensitive value) pair present, sorted by class: compute it
    once and pass it as ``pairs`` to :func:`distinct_l`, :func:`entropy_l` and :func:`t_closeness`."""
    return _pair_counts(classes, counts, sensitive, n_classes, int(sensitive.max(initial=0)) + 1)


def _factorize(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes and sorted uniques of ``key``: one linear pass when it is already sorted (distinct tuples
    counted over QIs then sensitive columns are), else pandas' hash factorization."""
    if len(key) < 2 or bool(np.all(key[1:] >= key[:-1])):
        first = np.empty(len(key), dtype=bool)
        first[:1] = True
        np.not_equal(key[1:], key[:-1], out=first[1:])
        return np.cumsum(first) - 1, key[first]
    import pandas as pd  # here, not at import: a run without l-diversity needs no pandas

    return pd.factorize(key, sort=True)


def distinct_l(
    classes: np.ndarray, counts: np.ndarray, sensitive: np.ndarray, n_classes: int, *, pairs: tuple[np.ndarray, ...] | None = None
) -> np.ndarray:
    """Number of distinct sensitive values per class: a presence bitmap over (class, value) when it is
    at most a few bytes per tuple, else one in-place sort of the (class, value) keys (or the pairs of
    :func:`pair_counts`, when given)."""
    if pairs is not None:
        return np.bincount(pairs[0], minlength=n_classes)
    n_values = int(sensitive.max(initial=0)) + 1
    key = classes.astype(np.int64) * n_values
    key += sensitive
    if n_classes * n_values <= 8 * len(key) + (1 << 20):
        seen = np.zeros(n_classes * n_values, dtype=bool)
        seen[key] = True
        return seen.reshape(n_classes, n_values).sum(axis=1)
    key.sort()
    first = np.empty(len(key), dtype=bool)
    if len(key):
        first[0] = True
        np.not_equal(key[1:], key[:-1], out=first[1:])
    return np.bincount(key[first] // n_values, minlength=n_classes)


def entropy_l(
    classes: np.ndarray, counts: np.ndarray, sensitive: np.ndarray, n_classes: int, *, pairs: tuple[np.ndarray, ...] | None = None
) -> np.ndarray:
    """``exp(entropy)`` of the sensitive values per class: the largest l for which entropy l-diversity holds."""
    pair_class, _, pair_rows = pairs if pairs is not None else pair_counts(classes, counts, sensitive, n_classes)
    totals = np.bincount(pair_class, weights=pair_rows, minlength=n_classes)
    p = pair_rows / totals[pair_class]
    entropy = -np.bincount(pair_class, weights=p * np.log(p), minlength=n_classes)
    return np.exp(entropy)


def recursive_cl(classes: np.ndarray, counts: np.ndarray, sensitive: np.ndarray, n_classes: int, c: float, l: int) -> np.ndarray:  # noqa: E741
    """Whether each class satisfies recursive (c,l)-diversity: ``r1 < c (r_l + … + r_m)``."""
    pair_class, _, pair_rows = _pair_counts(classes, counts, sensitive, n_classes, int(sensitive.max(initial=0)) + 1)
    order = np.lexsort((-pair_rows, pair_class))
    pair_class, pair_rows = pair_class[order], pair_rows[order]
    starts = np.searchsorted(pair_class, np.arange(n_classes))
    rank = np.arange(len(pair_class)) - starts[pair_class]
    r1 = np.zeros(n_classes)
    np.maximum.at(r1, pair_class, pair_rows)
    tail = np.bincount(pair_class, weights=np.where(rank >= l - 1, pair_rows, 0), minlength=n_classes)
    return r1 < c * tail


def t_closeness_equal(pairs: tuple[np.ndarray, ...], overall: np.ndarray, n_classes: int) -> np.ndarray:
    """The equal-distance EMD of every class from its (class, value, rows) ``pairs`` alone, without a
    dense class x value table: ``½ Σ|p_i − q_i| = ½ (1 + Σ_{p_i > 0} (|p_i − q_i| − q_i))``, since a
    value a class lacks adds ``q_i``. Equal to :func:`t_closeness` with ``ordered=False`` up to
    rounding (the measure ``privprep check`` reports; the search keeps the dense form).

    >>> pairs = (np.array([0, 0, 1]), np.array([0, 1, 0]), np.array([1, 1, 2]))
    >>> t_closeness_equal(pairs, np.array([0.75, 0.25]), 2).tolist()
    [0.25, 0.25]
    """
    pair_class, pair_value, pair_rows = pairs
    totals = np.bincount(pair_class, weights=pair_rows, minlength=n_classes)
    q = overall[pair_value]
    terms = np.abs(pair_rows / totals[pair_class] - q) - q
    return 0.5 * (1.0 + np.bincount(pair_class, weights=terms, minlength=n_classes))


def t_closeness(
    classes: np.ndarray,
    counts: np.ndarray,
    sensitive: np.ndarray,
    n_classes: int,
    *,
    ordered: bool,
    chunk: int = 4096,
    overall: np.ndarray | None = None,
    pairs: tuple[np.ndarray, ...] | None = None,
) -> np.ndarray:
    """EMD between each class's sensitive distribution and the whole table's.

    ``sensitive`` holds codes 0..m-1 which, when ``ordered``, follow the values' order. ``overall``
    is the whole table's distribution over the m codes when the arguments cover only part of it.
    """
    if overall is None:
        n_values = int(sensitive.max(initial=0)) + 1
        overall = np.bincount(sensitive, weights=counts, minlength=n_values)
        overall = overall / max(overall.sum(), 1)
    n_values = len(overall)
    if pairs is not None and int(sensitive.max(initial=0)) + 1 == n_values:
        pair_class, pair_value, pair_rows = pairs
    else:
        pair_class, pair_value, pair_rows = _pair_counts(classes, counts, sensitive, n_classes, n_values)
    totals = np.bincount(pair_class, weights=pair_rows, minlength=n_classes)
    out = np.zeros(n_classes)
    step = max(1, chunk * 256 // max(n_values, 1))
    for start in range(0, n_classes, step):
        stop = min(n_classes, start + step)
        lo, hi = np.searchsorted(pair_class, [start, stop])
        dist = np.zeros((stop - start, n_values))
        dist[pair_class[lo:hi] - start, pair_value[lo:hi]] = pair_rows[lo:hi] / totals[pair_class[lo:hi]]
        diff = dist - overall
        if ordered:
            out[start:stop] = np.abs(np.cumsum(diff, axis=1)).sum(axis=1) / max(n_values - 1, 1)
        else:
            out[start:stop] = 0.5 * np.abs(diff).sum(axis=1)
    return out
