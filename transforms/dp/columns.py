"""Turning Arrow columns into what DP accumulators add up: clipped float64 values and category codes.

Every batch is looked at through a :class:`BatchView`, which computes each column's clipped values
or category codes once however many queries use them, and counts (exactly, for the local report
only) the values clipped to the bounds, the missing values and the values outside the declared
categories. Missing means null, or NaN in a float column. All of it is vectorized: numpy and
pyarrow.compute, no Python per row.

>>> import pyarrow as pa
>>> local = LocalCounts()
>>> view = BatchView(pa.table({"x": [1.0, None, 7.0, -3.0], "g": ["a", "b", "z", "a"]}), local)
>>> x, groups = view.numeric("x", (0.0, 5.0), by=("g", pa.array(["a", "b"])))
>>> x.tolist(), groups.tolist()
([1.0, 0.0], [0, 0])
>>> local.as_report()["clipped"]
[{'column': 'x', 'bounds': [0.0, 5.0], 'below': 1, 'above': 1}]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Bounds = tuple[float, float]
ByKey = tuple[str, pa.Array] | None


def is_numeric(data_type: pa.DataType) -> bool:
    """Integer, floating point or decimal (booleans and strings are not numeric here)."""
    return pa.types.is_integer(data_type) or pa.types.is_floating(data_type) or pa.types.is_decimal(data_type)


def typed_categories(categories: list[Any], data_type: pa.DataType) -> pa.Array:
    """The declared categories as an Arrow array of the column's type; ``ValueError`` when they do not fit."""
    if pa.types.is_dictionary(data_type):
        data_type = data_type.value_type
    try:
        typed = pa.array(list(categories)).cast(data_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        raise ValueError(f"the declared categories do not fit the column's type {data_type}") from None
    if len(pc.unique(typed)) != len(typed):
        raise ValueError(f"the declared categories are not distinct as values of type {data_type}")
    return typed


@dataclass
class LocalCounts:
    """Exact counts about the input for the data owner: NOT differentially private, never released."""

    clipped: dict[tuple[str, float, float], list[int]] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)
    outside_categories: dict[str, int] = field(default_factory=dict)

    def merge(self, other: "LocalCounts") -> None:
        """Add another partition's counts."""
        for key, (below, above) in other.clipped.items():
            mine = self.clipped.setdefault(key, [0, 0])
            mine[0] += below
            mine[1] += above
        for mine, theirs in ((self.missing, other.missing), (self.outside_categories, other.outside_categories)):
            for column, count in theirs.items():
                mine[column] = mine.get(column, 0) + count

    def as_report(self) -> dict[str, Any]:
        return {
            "clipped": [
                {"column": c, "bounds": [lo, hi], "below": below, "above": above}
                for (c, lo, hi), (below, above) in self.clipped.items()
            ],
            "missing": dict(self.missing),
            "outside_categories": dict(self.outside_categories),
        }


class BatchView:
    """One batch as the accumulators see it; caches per column, counts local figures once per batch."""

    def __init__(self, table: pa.Table, local: LocalCounts) -> None:
        self.table = table
        self.local = local
        self._raw: dict[str, np.ndarray] = {}
        self._clipped: dict[tuple[str, Bounds], np.ndarray] = {}
        self._numeric: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray | None]] = {}
        self._moments: dict[tuple[Any, ...], tuple[np.ndarray, ...]] = {}
        self._codes: dict[tuple[str, int], np.ndarray] = {}
        self._present: dict[str, np.ndarray] = {}

    def present(self, column: str, *, by: ByKey = None) -> tuple[int, np.ndarray | None]:
        """Rows with a value in ``column``: their number, or their group codes when grouped."""
        mask = self._present_mask(column)
        if by is None:
            return int(mask.sum()), None
        groups = self.codes(*by)
        return 0, groups[mask & (groups >= 0)]

    def numeric(self, column: str, bounds: Bounds, *, by: ByKey = None) -> tuple[np.ndarray, np.ndarray | None]:
        """The present values of ``column`` clipped to ``bounds`` (and their group codes when grouped)."""
        key = (column, bounds, by[0] if by else None)
        if key not in self._numeric:
            values = self._clipped_present(column, bounds)
            if by is None:
                self._numeric[key] = (values, None)
            else:
                groups = self.codes(*by)[self._present_mask(column)]
                keep = groups >= 0
                self._numeric[key] = (values[keep], groups[keep])
        return self._numeric[key]

    def moments(self, column: str, bounds: Bounds, *, by: ByKey = None, n_groups: int = 1) -> tuple[np.ndarray, ...]:
        """Per group: the number of present values, their clipped sum and ``sum((x - mid)**2)``."""
        key = (column, bounds, by[0] if by else None)
        if key not in self._moments:
            x, groups = self.numeric(column, bounds, by=by)
            d = x - (bounds[0] + bounds[1]) / 2
            if groups is None:  # einsum, not BLAS dot: no thread pool on a busy machine
                sums = (np.array([len(x)]), np.array([x.sum()]), np.array([np.einsum("i,i->", d, d)]))
            else:
                sums = (np.bincount(groups, minlength=n_groups), np.bincount(groups, weights=x, minlength=n_groups),
                        np.bincount(groups, weights=d * d, minlength=n_groups))
            self._moments[key] = sums
        return self._moments[key]

    def _clipped_present(self, column: str, bounds: Bounds) -> np.ndarray:
        key = (column, bounds)
        if key not in self._clipped:
            raw, mask = self._values(column), self._present_mask(column)
            values = raw if len(mask) == 0 or mask.all() else raw[mask]
            lo, hi = bounds
            below, above = int(np.count_nonzero(values < lo)), int(np.count_nonzero(values > hi))
            counts = self.local.clipped.setdefault((column, float(lo), float(hi)), [0, 0])
            counts[0] += below
            counts[1] += above
            self._clipped[key] = np.clip(values, lo, hi) if below or above else values
        return self._clipped[key]

    def categorical(self, column: str, categories: pa.Array, *, by: ByKey = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Codes (index into ``categories``) of the rows whose value is a declared category."""
        codes = self.codes(column, categories)
        keep = codes >= 0
        if by is None:
            return codes[keep], None
        groups = self.codes(*by)
        keep &= groups >= 0
        return codes[keep], groups[keep]

    def codes(self, column: str, categories: pa.Array) -> np.ndarray:
        """Index of each row's value in ``categories``; -1 for missing values and values outside them."""
        key = (column, id(categories))
        if key not in self._codes:
            index = pc.index_in(self.table.column(column), value_set=categories)
            codes = index.fill_null(-1).to_numpy().astype(np.int64, copy=False)
            outside = int(np.count_nonzero(codes < 0)) - self._missing_count(column)
            self.local.outside_categories[column] = self.local.outside_categories.get(column, 0) + max(outside, 0)
            self._codes[key] = codes
        return self._codes[key]

    def _values(self, column: str) -> np.ndarray:
        if column not in self._raw:
            array = pc.cast(self.table.column(column), pa.float64(), safe=False)  # integers past 2**53 round; bounds clip them
            self._raw[column] = np.asarray(array.to_numpy(), dtype=np.float64)  # nulls become NaN
        return self._raw[column]

    def _present_mask(self, column: str) -> np.ndarray:
        if column not in self._present:
            data = self.table.column(column)
            if pa.types.is_floating(data.type):
                mask = ~np.isnan(self._values(column))
            else:
                mask = data.is_valid().to_numpy() if data.null_count else np.ones(len(data), dtype=bool)
                mask = np.asarray(mask, dtype=bool)
            self._present[column] = mask
            self.local.missing[column] = self.local.missing.get(column, 0) + int(len(mask) - mask.sum())
        return self._present[column]

    def _missing_count(self, column: str) -> int:
        mask = self._present_mask(column)
        return int(len(mask) - mask.sum())


__all__ = ["BatchView", "Bounds", "LocalCounts", "is_numeric", "typed_categories"]
