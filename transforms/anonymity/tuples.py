"""Counts of distinct quasi-identifier (and sensitive) tuples: the compressed view of a table that
every measure and the lattice search work on.

Columns are dictionary-coded once per batch against a growing global dictionary (a missing value is
a value of its own), rows become integer tuples, and equal tuples are counted. Results depend only
on the multiset of rows: not on row order, batch boundaries, index labels or ``PYTHONHASHSEED``.
Past ``spill_tuples`` distinct tuples the counts move to a :class:`~.store.TupleStore` on disk, so
memory stays bounded however many distinct tuples the table has.

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

from .store import TupleStore

_CONSOLIDATE_ROWS = 1 << 21
SPILL_TUPLES = 1 << 21  # distinct tuples held in memory before they go to disk (k_anonymity's memory_tuples)


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

    def column_counts(self, j: int, minlength: int = 0) -> np.ndarray:
        """Rows per code of column ``j``."""
        return np.bincount(self.codes[:, j], weights=self.counts, minlength=minlength)

    def decoded(self, column: str) -> list[object]:
        """The values of ``column`` per tuple (for tests and small tables)."""
        j = self.index(column)
        return self.dictionaries[j].take(pa.array(self.codes[:, j])).to_pylist()


class TupleCounter:
    """Accumulates :class:`DistinctTuples` over batches (the ``observe`` pass of a global stage).

    Each batch's tuples are packed into one integer key per row and counted; the partial counts are
    merged by sorting packed keys once they grow past a threshold, so memory follows the number of
    distinct tuples at about 16 bytes each (a measured third of a hash aggregation's). With
    ``spill_tuples``, merged runs of that many tuples go to a :class:`TupleStore` on disk instead and
    :meth:`result` returns the store."""

    def __init__(self, columns: list[str], *, spill_tuples: int | None = None, spill_dir: str | None = None) -> None:
        self.columns = list(columns)
        self.spill_tuples = spill_tuples
        self.spill_dir = spill_dir
        self._dictionaries: list[pa.Array | None] = [None] * len(columns)
        self._parts: list[tuple[np.ndarray, np.ndarray]] = []  # (codes, counts) per batch
        self._merged: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # (keys, counts, radix)
        self._buffered = 0
        self._store: TupleStore | None = None

    def observe(self, table: pa.Table) -> None:
        """Count the tuples of one batch."""
        if table.num_rows == 0:
            return
        missing = [c for c in self.columns if c not in table.column_names]
        if missing:
            raise DataError(f"column(s) not in the data: {', '.join(missing)}")
        codes = np.empty((table.num_rows, len(self.columns)), dtype=np.int32, order="F")
        for j, column in enumerate(self.columns):
            codes[:, j] = self._global_codes(j, table.column(column))
        self._append(*_count_rows(codes, self._radix()))

    def result(self) -> "DistinctTuples | TupleStore":
        """The distinct tuples seen so far (codes in a column-major array, one column per input column),
        or the :class:`TupleStore` they were spilled to; the caller then owns (and closes) the store."""
        self._consolidate()
        dictionaries = tuple(d if d is not None else pa.array([], pa.null()) for d in self._dictionaries)
        if self._store is not None:
            self._spill()
            store, self._store = self._store, None
            store.dictionaries = dictionaries
            self._dictionaries = [None] * len(self.columns)
            return store
        if self._merged is not None:
            keys, counts, radix = self._merged
            return DistinctTuples(tuple(self.columns), dictionaries, _unpack(keys, radix), counts)
        if self._parts:
            codes, counts = self._parts[0]
            return DistinctTuples(tuple(self.columns), dictionaries, codes, counts)
        return DistinctTuples(tuple(self.columns), dictionaries, np.empty((0, len(self.columns)), np.int32), np.empty(0, np.int64))

    def merge(self, other: "TupleCounter") -> None:
        """Add the counts of another counter over the same columns (for partitioned engines)."""
        if other.columns != self.columns:
            raise ValueError("merge() takes a counter over the same columns")
        if not self._parts and self._merged is None and self._store is None and all(d is None for d in self._dictionaries):
            # nothing seen here yet (the client's stage of a partitioned run): take the other's state as is
            other._consolidate()
            self._dictionaries = list(other._dictionaries)
            self._parts, self._merged, self._buffered = list(other._parts), other._merged, other._buffered
            self._store, other._store = other._store, None
            return
        result = other.result()
        remaps = [self._remap(j, result.dictionaries[j]) if len(result.dictionaries[j]) else None for j in range(len(self.columns))]
        if isinstance(result, TupleStore):
            for columns, counts in result.chunks():
                codes = [np.take(r, c) if r is not None else c for r, c in zip(remaps, columns)]
                if self.spill_tuples:  # stored as it comes: no sort, a tuple may sit in several chunks
                    self._open_store().append(codes, counts)
                else:
                    self._add_part(np.column_stack(codes), counts.astype(np.int64))
            result.close()
            return
        codes = np.empty_like(result.codes, order="F")
        for j, remap in enumerate(remaps):
            codes[:, j] = remap[result.codes[:, j]] if remap is not None else result.codes[:, j]
        if self.spill_tuples and len(result.counts) >= self.spill_tuples // 2:
            self._open_store().append(codes, result.counts)
        else:
            self._add_part(codes, result.counts)

    def _open_store(self) -> TupleStore:
        if self._store is None:
            self._store = TupleStore(self.columns, directory=self.spill_dir)
        return self._store

    def _add_part(self, codes: np.ndarray, counts: np.ndarray) -> None:
        if self.spill_tuples:
            self._append(np.asfortranarray(codes, dtype=np.int32), counts)
            return
        # no consolidation here: merging many partial counters sorts once, when the result is asked
        # for or the counter is pickled to travel (a tree reduction's next level)
        self._parts.append((np.asfortranarray(codes, dtype=np.int32), counts))
        self._buffered += len(counts)

    def __getstate__(self) -> dict[str, object]:
        if self._store is None:
            self._consolidate()  # travel packed: about 16 bytes a distinct tuple
            return dict(self.__dict__)
        # a spill directory is local to this machine: the stored chunks travel as they are (a few
        # bytes a tuple) and go back to disk where they land
        self._spill()
        state = dict(self.__dict__)
        state["_store"] = None
        state["_travel"] = list(self._store.chunks())
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        travel = state.pop("_travel", None)
        self.__dict__.update(state)
        if travel is not None:
            store = self._open_store()
            for columns, counts in travel:
                store.append(columns, counts)

    def _radix(self) -> np.ndarray:
        return np.array([max(len(d) if d is not None else 0, 1) for d in self._dictionaries], dtype=np.int64)

    def _append(self, codes: np.ndarray, counts: np.ndarray) -> None:
        self._parts.append((codes, counts))
        self._buffered += len(counts)
        threshold = min(_CONSOLIDATE_ROWS, self.spill_tuples // 2) if self.spill_tuples else _CONSOLIDATE_ROWS
        if self._buffered > threshold:
            self._consolidate()
            if self.spill_tuples and self._merged is not None and len(self._merged[0]) >= self.spill_tuples // 2:
                self._spill()

    def _spill(self) -> None:
        """Move the merged counts (and any buffered part) to the store on disk."""
        self._consolidate()
        store = self._open_store()
        if self._merged is not None:
            keys, counts, radix = self._merged
            self._merged = None
            store.append(_unpack(keys, radix), counts)
        for codes, counts in self._parts:
            store.append(codes, counts)
        self._parts, self._buffered = [], 0

    def _global_codes(self, j: int, column: pa.ChunkedArray) -> np.ndarray:
        if isinstance(column, pa.ChunkedArray) and pa.types.is_dictionary(column.type):
            if column.num_chunks == 1:
                column = column.chunk(0)
            else:
                return np.concatenate([self._global_codes(j, chunk) for chunk in column.chunks]) \
                    if column.num_chunks else np.empty(0, np.int32)
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        if pa.types.is_dictionary(array.type):
            coded = _dictionary_codes(array)
            if coded is not None:  # a Parquet column read as its dictionary: no strings materialized
                local, indices = coded
                return self._remap(j, local)[indices]
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
        if not self._parts or (self._merged is None and len(self._parts) == 1):
            return
        radix = self._radix()
        if not _packable(radix):
            self._consolidate_rows()
            return
        total = sum(len(c) for _, c in self._parts) + (len(self._merged[0]) if self._merged else 0)
        keys = np.empty(total, dtype=np.int64)
        counts = np.empty(total, dtype=np.int64)
        at = 0
        if self._merged is not None:
            old_keys, old_counts, old_radix = self._merged
            self._merged = None
            keys[: len(old_keys)] = _repack(old_keys, old_radix, radix)
            counts[: len(old_keys)] = old_counts
            at = len(old_keys)
            del old_keys, old_counts
        for codes, part_counts in self._parts:
            keys[at : at + len(part_counts)] = _pack(codes, radix)
            counts[at : at + len(part_counts)] = part_counts
            at += len(part_counts)
        self._parts = []
        order = np.argsort(keys, kind="stable")  # timsort merges the sorted runs (each part is sorted): ~3x quicksort
        keys = keys[order]  # rebinding frees each unsorted array as soon as its sorted copy exists
        counts = counts[order]
        del order
        starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
        self._merged = (keys[starts], np.add.reduceat(counts, starts), radix)
        self._buffered = 0

    def _consolidate_rows(self) -> None:  # pragma: no cover - more than 2^62 possible tuples
        parts = list(self._parts)
        if self._merged is not None:
            keys, counts, radix = self._merged
            parts.insert(0, (_unpack(keys, radix), counts))
            self._merged = None
        codes = np.concatenate([p[0] for p in parts])
        counts = np.concatenate([p[1] for p in parts])
        view = np.ascontiguousarray(codes).view(np.dtype((np.void, codes.dtype.itemsize * codes.shape[1]))).ravel()
        _, first, inverse = np.unique(view, return_index=True, return_inverse=True)
        summed = np.bincount(inverse.ravel(), weights=counts).astype(np.int64)
        self._parts = [(np.asfortranarray(codes[first]), summed)]
        self._buffered = len(summed)


def _dictionary_codes(array: pa.DictionaryArray) -> tuple[pa.Array, np.ndarray] | None:
    """(distinct values present, with a trailing null when there are nulls; each row's index into
    them) of a dictionary array; None when its dictionary repeats a value (then it is re-encoded)."""
    dictionary = array.dictionary
    if dictionary.null_count or pc.count_distinct(dictionary, mode="all").as_py() != len(dictionary):
        return None
    indices = array.indices
    size = len(dictionary)
    if indices.null_count:
        indices = indices.fill_null(size)
        dictionary = pa.concat_arrays([dictionary, pa.nulls(1, dictionary.type)])
        size += 1
    indices = np.asarray(indices.to_numpy(zero_copy_only=False), dtype=np.intp)
    present = np.bincount(indices, minlength=size) > 0
    if not present.all():  # values of the dictionary that no row holds are no values of the table
        dictionary = dictionary.filter(pa.array(present))
        indices = (np.cumsum(present) - 1)[indices]
    return dictionary, indices


def _packable(radix: np.ndarray) -> bool:
    return float(np.sum(np.log2(radix.astype(float)))) < 62


def _pack(codes: np.ndarray, radix: np.ndarray) -> np.ndarray:
    key = np.zeros(len(codes), dtype=np.int64)
    for j in range(codes.shape[1]):
        key *= radix[j]
        key += codes[:, j]
    return key


def _unpack(keys: np.ndarray, radix: np.ndarray) -> np.ndarray:
    codes = np.empty((len(keys), len(radix)), dtype=np.int32, order="F")
    rest = keys.copy()
    for j in reversed(range(len(radix))):
        codes[:, j] = rest % radix[j]
        rest //= radix[j]
    return codes


def _repack(keys: np.ndarray, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    if np.array_equal(old, new):
        return keys
    return _pack(_unpack(keys, old), new)


def _count_rows(codes: np.ndarray, radix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of one batch with their counts."""
    if not _packable(radix):
        view = np.ascontiguousarray(codes).view(np.dtype((np.void, codes.dtype.itemsize * codes.shape[1]))).ravel()
        _, first, counts = np.unique(view, return_index=True, return_counts=True)
        return np.asfortranarray(codes[first]), counts.astype(np.int64)
    keys = np.sort(_pack(codes, radix))  # a plain sort and an unpack: cheaper than unique's argsort and gather
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    counts = np.diff(np.append(starts, len(keys)))
    return _unpack(keys[starts], radix), counts.astype(np.int64)
