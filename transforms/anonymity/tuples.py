"""Counts of distinct quasi-identifier (and sensitive) tuples: the compressed view of a table that
every measure and the lattice search work on.

Columns are dictionary-coded once per batch against a growing global dictionary (a missing value is
a value of its own), rows become integer tuples, and equal tuples are counted. Results depend only
on the multiset of rows: not on row order, batch boundaries, index labels or ``PYTHONHASHSEED``.

>>> import pyarrow as pa
>>> counter = TupleCounter(["zip", "sex"])
>>> counter.observe(pa.table({"zip": ["1", "1", None], "sex": ["F", "F", "M"]}))
>>> counter.observe(pa.table({"zip": ["1"], "sex": ["M"]}))
>>> t = counter.result()
>>> sorted(zip(t.decoded("zip"), t.decoded("sex"), t.counts.tolist()), key=str)
[('1', 'F', 2), ('1', 'M', 1), (None, 'M', 1)]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from privprep.schemas.errors import DataError

_CONSOLIDATE_ROWS = 1 << 21


@dataclass(frozen=True)
class DistinctTuples:
    """Distinct tuples: ``codes[:, j]`` indexes ``dictionaries[j]``; ``counts`` rows per tuple."""

    columns: tuple[str, ...]
    dictionaries: tuple[pa.Array, ...]
    codes: np.ndarray
    counts: np.ndarray

    @property
    def rows(self) -> int:
        return int(self.counts.sum())

    def index(self, column: str) -> int:
        return self.columns.index(column)

    def decoded(self, column: str) -> list[object]:
        """The values of ``column`` per tuple (for tests and small tables)."""
        j = self.index(column)
        return self.dictionaries[j].take(pa.array(self.codes[:, j])).to_pylist()


class TupleCounter:
    """Accumulates :class:`DistinctTuples` over batches (the ``observe`` pass of a global stage)."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = list(columns)
        self._dictionaries: list[pa.Array | None] = [None] * len(columns)
        self._parts: list[tuple[np.ndarray, np.ndarray]] = []
        self._buffered = 0

    def observe(self, table: pa.Table) -> None:
        """Count the tuples of one batch."""
        if table.num_rows == 0:
            return
        missing = [c for c in self.columns if c not in table.column_names]
        if missing:
            raise DataError(f"column(s) not in the data: {', '.join(missing)}")
        codes = np.empty((table.num_rows, len(self.columns)), dtype=np.int32)
        for j, column in enumerate(self.columns):
            codes[:, j] = self._global_codes(j, table.column(column))
        unique, counts = unique_rows(codes)
        self._parts.append((unique, counts))
        self._buffered += len(unique)
        if self._buffered > _CONSOLIDATE_ROWS:
            self._consolidate()

    def result(self) -> DistinctTuples:
        """The distinct tuples seen so far."""
        self._consolidate()
        if self._parts:
            codes, counts = self._parts[0]
        else:
            codes, counts = np.empty((0, len(self.columns)), np.int32), np.empty(0, np.int64)
        dictionaries = tuple(d if d is not None else pa.array([], pa.null()) for d in self._dictionaries)
        return DistinctTuples(tuple(self.columns), dictionaries, codes, counts)

    def merge(self, other: "TupleCounter") -> None:
        """Add the counts of another counter over the same columns (for partitioned engines)."""
        result = other.result()
        for j in range(len(self.columns)):
            if len(result.dictionaries[j]):
                remap = self._remap(j, result.dictionaries[j])
                result.codes[:, j] = remap[result.codes[:, j]]
        self._parts.append((result.codes, result.counts))
        self._consolidate()

    def _global_codes(self, j: int, column: pa.ChunkedArray) -> np.ndarray:
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        if pa.types.is_dictionary(array.type):
            array = array.dictionary_decode()
        encoded = pc.dictionary_encode(array, null_encoding="encode")
        remap = self._remap(j, encoded.dictionary)
        return remap[np.asarray(encoded.indices.to_numpy(zero_copy_only=False))]

    def _remap(self, j: int, local: pa.Array) -> np.ndarray:
        """Global codes of the values of ``local``, adding unseen values to the global dictionary."""
        known = self._dictionaries[j]
        if known is None:
            self._dictionaries[j] = local
            return np.arange(len(local), dtype=np.int32)
        if local.type != known.type:
            try:
                local = local.cast(known.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise DataError(f"column '{self.columns[j]}' changes type between batches") from None
        position = pc.index_in(local, value_set=known, skip_nulls=False)
        new = pc.is_null(position)
        fresh = local.filter(new)
        if len(fresh):
            self._dictionaries[j] = pa.concat_arrays([known, fresh])
            extra = np.cumsum(new.to_numpy(zero_copy_only=False)) - 1 + len(known)
            out = np.where(new.to_numpy(zero_copy_only=False), extra, position.fill_null(0).to_numpy())
        else:
            out = position.to_numpy(zero_copy_only=False)
        return np.asarray(out, dtype=np.int32)

    def _consolidate(self) -> None:
        if len(self._parts) <= 1:
            return
        codes = np.concatenate([p[0] for p in self._parts])
        counts = np.concatenate([p[1] for p in self._parts])
        unique, inverse = unique_rows(codes, return_inverse=True)
        self._parts = [(unique, np.bincount(inverse, weights=counts, minlength=len(unique)).astype(np.int64))]
        self._buffered = len(unique)


def unique_rows(codes: np.ndarray, *, return_inverse: bool = False):  # type: ignore[no-untyped-def]
    """Distinct rows of a 2-D non-negative integer array, with counts (or the inverse mapping).

    Rows are packed into one int64 key when the value ranges allow (the common case), else compared
    as raw bytes; the order of the result is the sorted order of the keys, so it is deterministic.
    """
    rows, width = codes.shape
    if rows == 0:
        empty = np.empty((0, width), dtype=codes.dtype)
        return (empty, np.empty(0, np.int64)) if not return_inverse else (empty, np.empty(0, np.int64))
    radix = codes.max(axis=0).astype(np.int64) + 1
    if np.sum(np.log2(radix.astype(float))) < 62:
        key = np.zeros(rows, dtype=np.int64)
        for j in range(width):
            key = key * radix[j] + codes[:, j]
    else:
        key = np.ascontiguousarray(codes).view(np.dtype((np.void, codes.dtype.itemsize * width))).ravel()
    _, first, inverse, counts = np.unique(key, return_index=True, return_inverse=True, return_counts=True)
    unique = codes[first]
    if return_inverse:
        return unique, inverse.ravel()
    return unique, counts.astype(np.int64)
