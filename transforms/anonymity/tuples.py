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

_CONSOLIDATE_ROWS = 1 << 22


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
    """Accumulates :class:`DistinctTuples` over batches (the ``observe`` pass of a global stage).

    Each batch's tuples are counted with Arrow's hash aggregation and the partial counts are merged
    the same way once they grow past a threshold, so memory follows the number of distinct tuples."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = list(columns)
        self._keys = [f"c{j}" for j in range(len(columns))]
        self._dictionaries: list[pa.Array | None] = [None] * len(columns)
        self._parts: list[pa.Table] = []
        self._buffered = 0

    def observe(self, table: pa.Table) -> None:
        """Count the tuples of one batch."""
        if table.num_rows == 0:
            return
        missing = [c for c in self.columns if c not in table.column_names]
        if missing:
            raise DataError(f"column(s) not in the data: {', '.join(missing)}")
        codes = {key: pa.array(self._global_codes(j, table.column(column))) for j, (key, column) in enumerate(zip(self._keys, self.columns))}
        counted = pa.table(codes).group_by(self._keys, use_threads=False).aggregate([([], "count_all")])
        self._append(counted.rename_columns([*self._keys, "n"]))

    def result(self) -> DistinctTuples:
        """The distinct tuples seen so far (codes in a column-major array, one column per input column)."""
        self._consolidate()
        dictionaries = tuple(d if d is not None else pa.array([], pa.null()) for d in self._dictionaries)
        if not self._parts:
            return DistinctTuples(tuple(self.columns), dictionaries, np.empty((0, len(self.columns)), np.int32), np.empty(0, np.int64))
        table = self._parts[0]
        codes = np.empty((table.num_rows, len(self.columns)), dtype=np.int32, order="F")
        for j, key in enumerate(self._keys):
            codes[:, j] = table.column(key).to_numpy()
        counts = np.asarray(table.column("n").to_numpy(), dtype=np.int64)
        return DistinctTuples(tuple(self.columns), dictionaries, codes, counts)

    def merge(self, other: "TupleCounter") -> None:
        """Add the counts of another counter over the same columns (for partitioned engines)."""
        result = other.result()
        codes = {}
        for j, key in enumerate(self._keys):
            remap = self._remap(j, result.dictionaries[j]) if len(result.dictionaries[j]) else np.empty(0, np.int32)
            codes[key] = pa.array(remap[result.codes[:, j]] if len(remap) else result.codes[:, j])
        self._append(pa.table({**codes, "n": pa.array(result.counts)}))
        self._consolidate()

    def _append(self, part: pa.Table) -> None:
        self._parts.append(part)
        self._buffered += part.num_rows
        if self._buffered > _CONSOLIDATE_ROWS and len(self._parts) > 1:
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
        merged = pa.concat_tables(self._parts)
        self._parts = []
        summed = merged.group_by(self._keys, use_threads=False).aggregate([("n", "sum")])
        del merged
        self._parts = [summed.rename_columns([*self._keys, "n"])]
        self._buffered = summed.num_rows
