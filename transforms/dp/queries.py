"""One class per DP statistic: accumulate exact clipped sufficient statistics, then release once.

Neighbouring datasets differ by adding or removing one row (the notion DP-SGD's accountants use
too), so every statistic of one query is computed from counts and sums whose sensitivities follow
from the declared bounds ``[L, U]`` alone (``mid = (L+U)/2``, ``r = (U-L)/2``):

==============  =====================================================================================
count           non-missing values; ``GeometricTruncated`` (sensitivity 1)
sum             clipped values; ``Laplace``, sensitivity ``max(|L|, |U|)``
mean            ``mid + S/n``: noisy count (epsilon/2) and noisy ``S = sum(x - mid)`` (epsilon/2, sensitivity r)
var, std        noisy count, ``sum(x - mid)`` and ``sum((x - mid)**2)`` (epsilon/3 each, sensitivities 1, r, r**2)
histogram       one ``GeometricTruncated`` count per bin or declared category (bins are disjoint)
quantile        a histogram of ``bins`` equal bins over ``[L, U]`` with untruncated ``Geometric`` noise;
                each quantile is read off its cumulative sum (post-processing: any number of quantiles
                for the query's one epsilon)
==============  =====================================================================================

With ``budget.privacy_unit`` the protected unit is a person, whose rows are bounded first
(:mod:`.bounding`) to at most ``C = L0 x Linf`` rows; every sensitivity above is then multiplied by
``C`` (``QuerySpec.contribution``; see docs/dp_stats.md for the formulas).

Grouped queries (``by``) keep one set of statistics per declared category of the ``by`` column;
groups are disjoint, so each group gets the query's whole epsilon (parallel composition).

``error_95`` bounds ``|released - exact clipped statistic|`` with probability at least 95% over the
noise: exactly for count, sum and histogram bins; for mean, var and std by interval arithmetic over
the 97.5% (or 98.33%) ranges of each noisy part (union bound), evaluated at the released parts;
for quantiles approximately (see :class:`Quantile`). ``noise_scale`` is the noise scale in the
units of the value: ``sensitivity/epsilon`` for one mechanism, a first-order approximation for
derived statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from .columns import BatchView, Bounds
from .mechanisms import NoiseSource, geometric_bound, geometric_variance

DEFAULT_QUANTILE_BINS = 1000
#: z of the approximate simultaneous 95% band over all prefix sums (reflection principle: 2 x 2.5% two-sided).
PREFIX_Z = 2.24


@dataclass(frozen=True)
class QuerySpec:
    """A query with its domain resolved from the column declarations and the input's types."""

    index: int
    column: str
    stat: str
    epsilon: float
    bounds: Bounds | None = None
    categories: pa.Array | None = None     # typed declared categories of a categorical histogram
    labels: tuple[Any, ...] = ()           # the same categories as declared in the config
    bins: int | None = None
    quantiles: tuple[float, ...] = ()
    by: str | None = None
    groups: pa.Array | None = None         # typed declared categories of the ``by`` column
    group_labels: tuple[Any, ...] = ()
    contribution: int = 1                  # rows one protected unit may add: 1 for a row, L0 x Linf for a person

    @property
    def n_groups(self) -> int:
        return len(self.group_labels) if self.by else 1

    @property
    def by_key(self) -> tuple[str, pa.Array] | None:
        return (self.by, self.groups) if self.by else None


class Query:
    """Base of the statistics: ``update`` per batch, ``release`` once."""

    stat: ClassVar[tuple[str, ...]]
    parts: ClassVar[tuple[str, ...]] = ("value",)

    def __init__(self, spec: QuerySpec) -> None:
        self.spec = spec

    def epsilon_parts(self) -> dict[str, float]:
        """How the query's epsilon is split between its noisy parts."""
        share = self.spec.epsilon / len(self.parts)
        return {part: share for part in self.parts}

    def update(self, view: BatchView) -> None:
        raise NotImplementedError

    def release(self, noise: NoiseSource) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _entry(self, group: int, **fields: Any) -> dict[str, Any]:
        spec = self.spec
        entry: dict[str, Any] = {"query": spec.index, "column": spec.column, "stat": spec.stat}
        if spec.by:
            entry.update(by=spec.by, group=spec.group_labels[group])
        entry.update({k: v for k, v in fields.items() if k in ("bin", "quantile")})
        entry["value"] = fields["value"]
        entry["epsilon"] = spec.epsilon
        entry["mechanism"] = fields["mechanism"]
        entry["bounds"] = list(spec.bounds) if spec.bounds else None
        entry["noise_scale"] = _num(fields["noise_scale"])
        entry["error_95"] = _num(fields["error_95"])
        return entry

    def merge(self, other: "Query") -> None:
        """Add the statistics another copy of this query accumulated over other batches."""
        raise NotImplementedError

    def _add(self, target: np.ndarray, groups: np.ndarray | None, weights: np.ndarray | None = None, n: int = 0) -> None:
        """Add per-group totals of ``weights`` (or counts) into ``target``."""
        if groups is None:
            target[0] += n if weights is None else weights.sum()
        else:
            target += np.bincount(groups, weights=weights, minlength=len(target))


class Count(Query):
    stat = ("count",)

    def __init__(self, spec: QuerySpec) -> None:
        super().__init__(spec)
        self.n = np.zeros(spec.n_groups, dtype=np.int64)

    def update(self, view: BatchView) -> None:
        n, groups = view.present(self.spec.column, by=self.spec.by_key)
        self._add(self.n, groups, n=n)

    def merge(self, other: "Query") -> None:
        self.n += other.n  # type: ignore[attr-defined]

    def release(self, noise: NoiseSource) -> list[dict[str, Any]]:
        out = []
        for g, exact in enumerate(self.n):
            noisy = noise.count(int(exact), epsilon=self.spec.epsilon, sensitivity=self.spec.contribution)
            out.append(self._entry(g, value=int(noisy.value), mechanism=noisy.mechanism,
                                   noise_scale=noisy.scale, error_95=noisy.error_95))
        return out


class _Moments(Query):
    """Accumulates per group: n, sum(x), sum((x - mid)**2) of clipped values (shared between queries per batch)."""

    def __init__(self, spec: QuerySpec) -> None:
        super().__init__(spec)
        assert spec.bounds is not None
        self.lower, self.upper = spec.bounds
        self.mid, self.r = (self.lower + self.upper) / 2, (self.upper - self.lower) / 2
        shape = spec.n_groups
        self.n = np.zeros(shape, dtype=np.int64)
        self._total = PartialSums()
        self._squares = PartialSums()

    def update(self, view: BatchView) -> None:
        spec = self.spec
        n, total, squares = view.moments(spec.column, spec.bounds, by=spec.by_key, n_groups=spec.n_groups)  # type: ignore[arg-type]
        self.n += n.astype(np.int64)
        self._total.add(total)
        self._squares.add(squares)

    def merge(self, other: "Query") -> None:
        assert isinstance(other, _Moments)
        self.n += other.n
        self._total.merge(other._total)
        self._squares.merge(other._squares)

    @property
    def total(self) -> np.ndarray:
        """Per group: the exact sum of the clipped values, correctly rounded once."""
        return self._total.value(self.spec.n_groups)

    @property
    def squares(self) -> np.ndarray:
        return self._squares.value(self.spec.n_groups)


class PartialSums:
    """Float sums kept as one partial per batch and added with ``math.fsum`` (correctly rounded) at
    the end: the result does not depend on the order batches or partitions are combined in, so the
    streaming and partitioned engines release the same values for the same seed.

    >>> a, b = PartialSums(), PartialSums()
    >>> a.add(np.array([1e16])); b.add(np.array([1.0])); b.add(np.array([-1e16]))
    >>> a.merge(b); a.value(1).tolist()
    [1.0]
    """

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []
        self._value: np.ndarray | None = None

    def add(self, partial: np.ndarray) -> None:
        self.parts.append(np.array(partial, dtype=np.float64, copy=True))
        self._value = None

    def merge(self, other: "PartialSums") -> None:
        self.parts.extend(other.parts)
        self._value = None

    def value(self, size: int) -> np.ndarray:
        if self._value is None:
            if not self.parts:
                return np.zeros(size)
            stacked = np.vstack(self.parts)
            self._value = np.array([math.fsum(stacked[:, g]) for g in range(stacked.shape[1])])
        return self._value


class Sum(_Moments):
    stat = ("sum",)

    def release(self, noise: NoiseSource) -> list[dict[str, Any]]:
        sensitivity = self.spec.contribution * max(abs(self.lower), abs(self.upper))
        out = []
        for g in range(self.spec.n_groups):
            noisy = noise.laplace(float(self.total[g]), epsilon=self.spec.epsilon, sensitivity=sensitivity)
            value = noisy.value
            if self.lower >= 0:
                value = max(value, 0.0)  # post-processing: a sum of non-negative values is non-negative
            elif self.upper <= 0:
                value = min(value, 0.0)
            out.append(self._entry(g, value=value, mechanism="Laplace", noise_scale=noisy.scale, error_95=noisy.error_95))
        return out


class Mean(_Moments):
    stat = ("mean",)
    parts = ("count", "sum")

    def release(self, noise: NoiseSource) -> list[dict[str, Any]]:
        eps = self.epsilon_parts()
        tail = 0.05 / 2
        out = []
        for g in range(self.spec.n_groups):
            c = self.spec.contribution
            count = noise.count(int(self.n[g]), epsilon=eps["count"], tail=tail, sensitivity=c)
            centered = float(self.total[g]) - self.mid * float(self.n[g])
            s = noise.laplace(centered, epsilon=eps["sum"], sensitivity=c * self.r, tail=tail)
            n = max(count.value, 1)
            value = float(np.clip(self.mid + s.value / n, self.lower, self.upper))
            lows, highs = _box(count), (s.value - s.error_95, s.value + s.error_95)
            candidates = [self.mid + si / ci for si in highs for ci in lows if ci >= 1]
            if not candidates or count.value - count.error_95 < 1:
                error = self.upper - self.lower
            else:
                lo, hi = (float(np.clip(v, self.lower, self.upper)) for v in (min(candidates), max(candidates)))
                error = max(value - lo, hi - value)
            out.append(self._entry(g, value=value, mechanism="Laplace(sum)+GeometricTruncated(count)",
                                   noise_scale=s.scale / n, error_95=error))
        return out


class Variance(_Moments):
    stat = ("var", "std")
    parts = ("count", "sum", "sum_of_squares")

    def release(self, noise: NoiseSource) -> list[dict[str, Any]]:
        eps = self.epsilon_parts()
        tail = 0.05 / 3
        r2 = self.r**2
        out = []
        for g in range(self.spec.n_groups):
            c = self.spec.contribution
            count = noise.count(int(self.n[g]), epsilon=eps["count"], tail=tail, sensitivity=c)
            s1 = noise.laplace(float(self.total[g]) - self.mid * float(self.n[g]), epsilon=eps["sum"], sensitivity=c * self.r, tail=tail)
            s2 = noise.laplace(float(self.squares[g]), epsilon=eps["sum_of_squares"], sensitivity=c * r2, tail=tail)
            n = max(count.value, 1)
            var = float(np.clip(_var(n, s1.value, s2.value), 0.0, r2))
            if count.value - count.error_95 < 1:
                lo, hi = 0.0, r2
            else:
                lo, hi = _var_range(_box(count), (s1.value - s1.error_95, s1.value + s1.error_95),
                                    (s2.value - s2.error_95, s2.value + s2.error_95))
                lo, hi = float(np.clip(lo, 0.0, r2)), float(np.clip(hi, 0.0, r2))
            mean = s1.value / n
            var_scale = (s2.scale + 2 * abs(mean) * s1.scale) / n
            if self.spec.stat == "var":
                value, error, scale = var, max(var - lo, hi - var), var_scale
            else:
                value = math.sqrt(var)
                error = max(value - math.sqrt(lo), math.sqrt(hi) - value)
                scale = var_scale / (2 * value) if value > 0 else math.sqrt(var_scale)
            out.append(self._entry(g, value=value, mechanism="Laplace(sum, sum of squares)+GeometricTruncated(count)",
                                   noise_scale=scale, error_95=error))
        return out


class Histogram(Query):
    """Counts per declared category, or per equal-width bin of ``[L, U]`` (values outside are clipped
    into the edge bins; bin ``i`` is ``[L + i*w, L + (i+1)*w)``, the last one closed)."""

    stat = ("histogram",)
    truncate: ClassVar[bool] = True

    def __init__(self, spec: QuerySpec) -> None:
        super().__init__(spec)
        self.categorical = spec.categories is not None
        self.n_bins = len(spec.labels) if self.categorical else int(spec.bins or DEFAULT_QUANTILE_BINS)
        self.counts = np.zeros((spec.n_groups, self.n_bins), dtype=np.int64)
        if not self.categorical:
            assert spec.bounds is not None
            self.lower, self.upper = spec.bounds
            self.edges = np.linspace(self.lower, self.upper, self.n_bins + 1)

    def update(self, view: BatchView) -> None:
        spec = self.spec
        if self.categorical:
            codes, groups = view.categorical(spec.column, spec.categories, by=spec.by_key)  # type: ignore[arg-type]
        else:
            x, groups = view.numeric(spec.column, spec.bounds, by=spec.by_key)  # type: ignore[arg-type]
            codes = ((x - self.lower) * (self.n_bins / (self.upper - self.lower))).astype(np.int64)
            np.minimum(codes, self.n_bins - 1, out=codes)
        if groups is not None:
            codes = groups * self.n_bins + codes
        self.counts += np.bincount(codes, minlength=self.counts.size).reshape(self.counts.shape)

    def merge(self, other: "Query") -> None:
        self.counts += other.counts  # type: ignore[attr-defined]

    def _bin_label(self, b: int) -> Any:
        if self.categorical:
            return self.spec.labels[b]
        return [float(self.edges[b]), float(self.edges[b + 1])]

    def release(self, noise: NoiseSource) -> list[dict[str, Any]]:
        eps, c = self.spec.epsilon, self.spec.contribution
        noisy = noise.counts(self.counts, epsilon=eps, truncate=True, sensitivity=c)
        error, name = geometric_bound(eps, c), "GeometricTruncated"
        return [
            self._entry(g, bin=self._bin_label(b), value=int(noisy[g, b]), mechanism=name, noise_scale=c / eps, error_95=error)
            for g in range(self.spec.n_groups)
            for b in range(self.n_bins)
        ]


class Quantile(Histogram):
    """Quantiles read off a DP histogram of ``bins`` equal bins over ``[L, U]``.

    Bin counts get untruncated geometric noise (so prefix sums stay unbiased); the noisy cumulative
    counts are made non-decreasing (running maximum) and each quantile ``p`` is where they reach
    ``p`` times the noisy total, interpolated linearly within its bin. Error: the noise of any
    prefix sum has standard deviation at most ``sigma * sqrt(bins)`` (``sigma**2`` the variance of
    one bin's noise), so with about 95% probability every prefix is within ``R = 2.24 * sigma *
    sqrt(bins)`` ranks (normal approximation, reflection principle). ``error_95`` is the distance to
    the values at ranks ``p*N' +- R`` on the noisy CDF plus one bin width (where within a bin the
    true quantile lies is unknown); ``noise_scale`` is half the distance between ranks ``+- sigma *
    sqrt(bins)``. Cost: one ``bincount`` per batch, ``bins`` geometric draws per group at release.
    """

    stat = ("quantile",)

    def release(self, noise: NoiseSource) -> list[dict[str, Any]]:
        eps, c = self.spec.epsilon, self.spec.contribution
        noisy = noise.counts(self.counts, epsilon=eps, truncate=False, sensitivity=c)
        spread = math.sqrt(geometric_variance(eps, c) * self.n_bins)
        width = (self.upper - self.lower) / self.n_bins
        out = []
        for g in range(self.spec.n_groups):
            cdf = np.maximum.accumulate(np.cumsum(noisy[g]).astype(np.float64))
            cdf = np.maximum(cdf, 0.0)
            total = float(cdf[-1])
            for p in self.spec.quantiles:
                value = self._at_rank(cdf, p * total)
                lo, hi = self._at_rank(cdf, p * total - PREFIX_Z * spread), self._at_rank(cdf, p * total + PREFIX_Z * spread)
                s_lo, s_hi = self._at_rank(cdf, p * total - spread), self._at_rank(cdf, p * total + spread)
                error = max(value - lo, hi - value) + width if total > 0 else self.upper - self.lower
                out.append(self._entry(g, quantile=p, value=value, mechanism="Geometric histogram (%d bins)" % self.n_bins,
                                       noise_scale=(s_hi - s_lo) / 2, error_95=min(error, self.upper - self.lower)))
        return out

    def _at_rank(self, cdf: np.ndarray, rank: float) -> float:
        """The value at ``rank`` on a non-decreasing cumulative count, interpolated within the bin."""
        total = cdf[-1]
        if total <= 0:
            return (self.lower + self.upper) / 2
        if rank <= 0:
            return float(self.edges[int(np.argmax(cdf > 0))])
        rank = min(rank, total)
        b = int(np.searchsorted(cdf, rank, side="left"))
        b = min(b, self.n_bins - 1)
        before = cdf[b - 1] if b > 0 else 0.0
        inside = cdf[b] - before
        fraction = (rank - before) / inside if inside > 0 else 0.0
        return float(self.edges[b] + fraction * (self.edges[b + 1] - self.edges[b]))


QUERY_CLASSES: dict[str, type[Query]] = {
    stat: cls for cls in (Count, Sum, Mean, Variance, Histogram, Quantile) for stat in cls.stat
}


def _box(count: Any) -> tuple[float, float]:
    """The range of true counts (at least 1) consistent with a noisy count and its error bound."""
    return max(count.value - count.error_95, 1), count.value + count.error_95


def _var(n: float, s1: float, s2: float) -> float:
    return s2 / n - (s1 / n) ** 2


def _var_range(ns: tuple[float, float], s1s: tuple[float, float], s2s: tuple[float, float]) -> tuple[float, float]:
    """Min and max of ``s2/n - (s1/n)**2`` over a box (``n > 0``): exact, from its monotonicity in
    ``s2``, its shape in ``s1`` and its one stationary point in ``n`` (``n = 2 s1**2 / s2``)."""
    near = 0.0 if s1s[0] <= 0 <= s1s[1] else min(s1s, key=abs)
    far = max(s1s, key=abs)

    def extreme(s1: float, s2: float, pick: Any) -> float:
        points = list(ns)
        if s2 > 0 and ns[0] < 2 * s1 * s1 / s2 < ns[1]:
            points.append(2 * s1 * s1 / s2)
        return pick(_var(n, s1, s2) for n in points)

    return extreme(far, s2s[0], min), extreme(near, s2s[1], max)


def _num(value: float) -> float:
    return float(value)


__all__ = ["DEFAULT_QUANTILE_BINS", "QUERY_CLASSES", "Count", "Histogram", "Mean", "Query", "QuerySpec", "Quantile", "Sum", "Variance"]
