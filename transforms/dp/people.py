"""Statistics at the level of people: grouped queries whose rows are bounded per person before noise.

A :class:`PersonQuery` adds each batch's ``(person, group key, value)`` rows to a
:class:`~.bounding.ContributionStore`; at release the store is bounded bucket by bucket
(:func:`~.bounding.bound`) to the released keys, the exact bounded sums are put into the query's
ordinary statistic (:mod:`.queries`) and released with sensitivities times ``C = min(L0, keys) x
Linf``. Without a privacy unit each row is its own person (nothing is dropped). Group keys of
columns that declare categories are public (every combination is released); otherwise the keys
come from :class:`KeySelection` (:mod:`.partitions`).

>>> import pyarrow as pa
>>> from privprep.transforms.dp import DpStats, SpendLog
>>> stage = DpStats(epsilon=1.0, queries=[{"column": "visits", "stat": "count"}], privacy_unit="pid",
...                 columns={"pid": {"role": "identifier"}, "visits": {"role": "sensitive"}}, seed=3)
>>> stage.observe(pa.table({"pid": ["a"] * 500 + ["b", "c"], "visits": [1] * 502}))
>>> release = stage.release(SpendLog())
>>> release[0]["noise_scale"], stage.report()["local_not_dp"]["bounding"][0]["rows_dropped"]
(1.0, 499)
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from .bounding import N_BUCKETS, Bounded, ContributionStore, bound, bucket_of, hash_values, mix
from .columns import BatchView
from .mechanisms import NoiseSource
from .partitions import Selection, select_partitions
from .queries import DEFAULT_QUANTILE_BINS, QUERY_CLASSES, Histogram, Query, QuerySpec, _Moments


@dataclass(frozen=True)
class Grouping:
    """The columns a query groups by; public when every one of them declares its categories."""

    columns: tuple[str, ...]
    categories: tuple[pa.Array | None, ...]    # typed declared categories, None where undeclared
    labels: tuple[tuple[Any, ...] | None, ...]  # the same as declared in the config

    @property
    def public(self) -> bool:
        return all(c is not None for c in self.categories)

    @property
    def size(self) -> int:
        """Number of public keys (every combination of the declared categories)."""
        return int(np.prod([len(labels or ()) for labels in self.labels])) if self.columns else 1

    def public_labels(self) -> list[Any]:
        combos = list(itertools.product(*[labels or () for labels in self.labels]))
        return [c[0] for c in combos] if len(self.columns) == 1 else [list(c) for c in combos]

    def by(self) -> str | list[str] | None:
        if not self.columns:
            return None
        return self.columns[0] if len(self.columns) == 1 else list(self.columns)


class GroupKeys:
    """Each row's group key as a uint64 (a mixed-radix code of public keys, a hash of private ones),
    the rows whose key is valid, and (private keys) the labels of the keys seen."""

    def __init__(self, grouping: Grouping) -> None:
        self.grouping = grouping
        self.labels: dict[int, Any] = {}

    def keys(self, view: BatchView) -> tuple[np.ndarray, np.ndarray]:
        g = self.grouping
        n = view.table.num_rows
        if not g.columns:
            return np.zeros(n, dtype=np.uint64), np.ones(n, dtype=bool)
        valid = np.ones(n, dtype=bool)
        if g.public:
            code = np.zeros(n, dtype=np.int64)
            for column, categories in zip(g.columns, g.categories):
                codes = view.codes(column, categories)  # type: ignore[arg-type]
                valid &= codes >= 0
                code = code * len(categories) + np.maximum(codes, 0)  # type: ignore[arg-type]
            return code.astype(np.uint64), valid
        key = np.zeros(n, dtype=np.uint64)
        for position, (column, categories) in enumerate(zip(g.columns, g.categories)):
            data = view.table.column(column)
            valid &= np.asarray(data.is_valid().to_numpy(zero_copy_only=False), dtype=bool) if data.null_count else True
            if categories is not None:
                valid &= view.codes(column, categories) >= 0
            with np.errstate(over="ignore"):
                key = mix(key ^ (hash_values(data) + np.uint64(position + 1)))
        self._remember(view.table, key, valid)
        return key, valid

    def _remember(self, table: pa.Table, key: np.ndarray, valid: np.ndarray) -> None:
        rows = np.flatnonzero(valid)
        unique, first = np.unique(key[rows], return_index=True)
        new = [i for i, k in enumerate(unique.tolist()) if k not in self.labels]
        if not new:
            return
        taken = table.select(list(self.grouping.columns)).take(pa.array(rows[first[new]])).to_pylist()
        single = len(self.grouping.columns) == 1
        for i, row in zip(new, taken):
            values = [row[c] for c in self.grouping.columns]
            self.labels[int(unique[i])] = values[0] if single else values

    def merge(self, other: "GroupKeys") -> None:
        for key, label in other.labels.items():
            self.labels.setdefault(key, label)


class KeySelection:
    """The people per observed private key of one grouping, and the selection released from them."""

    def __init__(self, grouping: Grouping, *, memory_rows: int) -> None:
        self.grouping = grouping
        self.store = ContributionStore(memory_rows=memory_rows)
        self.selection_: Selection | None = None
        self.keys_: np.ndarray | None = None
        self.observed_: int | None = None

    def update(self, unit: np.ndarray, key: np.ndarray, valid: np.ndarray) -> None:
        self.store.add(unit[valid], key[valid])

    def merge(self, other: "KeySelection") -> None:
        self.store.merge(other.store)

    def select(self, *, epsilon: float, delta: float, max_partitions: int, seed: int, per_person: bool,
               noise: NoiseSource) -> np.ndarray:
        """The released keys (sorted): thresholded Laplace on the number of people per key after bounding."""
        parts, people = [], []
        for bucket in self.store.buckets():
            b = _bound(bucket, seed=seed, max_partitions=max_partitions, max_rows=1, per_person=per_person)
            parts.append(b.user_parts)
            people.append(b.user_counts)
        self.store.close()
        keys, people_per_key = _add_up(parts, people)
        self.selection_ = select_partitions(people_per_key, epsilon=epsilon, delta=delta, max_partitions=max_partitions,
                                            random_state=noise._random_state)
        self.observed_ = len(keys)
        self.keys_ = keys[self.selection_.released]
        return self.keys_


class PersonQuery:
    """One query over bounded contributions; ``template`` is its :class:`QuerySpec` without groups."""

    def __init__(self, template: QuerySpec, grouping: Grouping, *, memory_rows: int) -> None:
        self.template = template
        self.grouping = grouping
        self.store = ContributionStore(memory_rows=memory_rows)
        self.rows_kept = 0
        self.rows_dropped = 0
        self.contribution = 1
        stat = template.stat
        self.n_bins = (len(template.labels) if template.categories is not None else int(template.bins or DEFAULT_QUANTILE_BINS)) \
            if stat in ("histogram", "quantile") else 0

    def epsilon_parts(self) -> dict[str, float]:
        return QUERY_CLASSES[self.template.stat].epsilon_parts(self)  # type: ignore[arg-type]

    @property
    def parts(self) -> tuple[str, ...]:
        return QUERY_CLASSES[self.template.stat].parts

    @property
    def spec(self) -> QuerySpec:
        return self.template

    def update(self, view: BatchView, unit: np.ndarray, key: np.ndarray, valid: np.ndarray) -> None:
        spec = self.template
        column = spec.column
        if spec.stat == "histogram" and spec.categories is not None:
            value = view.codes(column, spec.categories).astype(np.float64)
            mask = value >= 0
        else:
            mask = view._present_mask(column)
            value = None
            if spec.bounds is not None:
                value = np.zeros(len(mask))
                value[mask] = view._clipped_present(column, spec.bounds)
                if spec.stat in ("histogram", "quantile"):
                    lo, hi = spec.bounds
                    codes = ((value - lo) * (self.n_bins / (hi - lo))).astype(np.int64)
                    value = np.minimum(codes, self.n_bins - 1).astype(np.float64)
        rows = mask & valid
        self.store.add(unit[rows], key[rows], None if value is None else value[rows])

    def merge(self, other: "PersonQuery") -> None:
        self.store.merge(other.store)

    def release(self, noise: NoiseSource, *, keys: np.ndarray | None, labels: list[Any], seed: int,
                max_partitions: int, max_rows: int, per_person: bool) -> list[dict[str, Any]]:
        """Bound, add up per released key (``keys`` sorted; None: the public keys 0..K-1) and release."""
        n_keys = len(labels) if self.grouping.columns else 1
        effective = max(min(max_partitions, n_keys), 1)
        self.contribution = effective * max_rows if per_person else 1
        spec = dataclasses.replace(self.template, by=self.grouping.by(), group_labels=tuple(labels),
                                   contribution=self.contribution)
        query = QUERY_CLASSES[spec.stat](spec)
        for bucket in self.store.buckets():
            b = _bound(bucket, seed=seed, max_partitions=max_partitions, max_rows=max_rows, per_person=per_person,
                       allowed=keys)
            self.rows_dropped += b.dropped
            self.rows_kept += int(b.weight.sum())
            index = b.part.astype(np.int64) if keys is None else np.searchsorted(keys, b.part)
            _accumulate(query, index, b.value, b.weight, n_keys, b.bucket)
        self.store.close()
        if n_keys == 0:
            return []
        return query.release(noise)


def _bound(bucket: tuple[np.ndarray, ...], *, seed: int, max_partitions: int, max_rows: int, per_person: bool,
           allowed: np.ndarray | None = None) -> Bounded:
    if per_person:
        return bound(*bucket, seed=seed, max_partitions=max_partitions, max_rows=max_rows, allowed=allowed)
    unit, part, value, count = bucket  # each row its own unit: nothing to bound
    if allowed is not None:
        keep = np.isin(part, allowed)
        dropped = int(count[~keep].sum())
        unit, part, value, count = unit[keep], part[keep], value[keep], count[keep]
    else:
        dropped = 0
    user_parts, inverse = np.unique(part, return_inverse=True)
    return Bounded(bucket_of(unit), part, value, count, dropped, user_parts,
                   np.bincount(inverse, weights=count, minlength=len(user_parts)).astype(np.int64))


def _add_up(parts: list[np.ndarray], counts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per key (sorted), the counts of every bucket added up."""
    if not parts:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    keys, inverse = np.unique(np.concatenate(parts), return_inverse=True)
    return keys, np.bincount(inverse, weights=np.concatenate(counts), minlength=len(keys)).astype(np.int64)


def _accumulate(query: Query, index: np.ndarray, value: np.ndarray, weight: np.ndarray, n_keys: int,
                bucket: np.ndarray) -> None:
    """Add bounded rows into the query's exact statistics; float sums one partial per bucket (added
    exactly at release), so they do not depend on how buckets were grouped or batches cut."""
    w = weight.astype(np.float64)
    if isinstance(query, Histogram):
        cells = index * query.n_bins + value.astype(np.int64)
        counts = np.bincount(cells, weights=w, minlength=query.counts.size)
        query.counts += np.rint(counts).astype(np.int64).reshape(query.counts.shape)
    elif isinstance(query, _Moments):
        query.n += np.rint(np.bincount(index, weights=w, minlength=n_keys)).astype(np.int64)
        cells, size = bucket * n_keys + index, N_BUCKETS * n_keys
        d = value - query.mid
        for target, weights in ((query._total, w * value), (query._squares, w * d * d)):
            per_bucket = np.bincount(cells, weights=weights, minlength=size).reshape(N_BUCKETS, n_keys)
            for row in per_bucket[np.unique(bucket)]:
                target.add(row)
    else:
        query.n += np.rint(np.bincount(index, weights=w, minlength=n_keys)).astype(np.int64)  # type: ignore[attr-defined]


__all__ = ["GroupKeys", "Grouping", "KeySelection", "PersonQuery"]
