"""The linkage attack on a local recoding (``k_anonymity`` with ``algorithm: mondrian``): released
classes are boxes, one per distinct tuple of released values, and an auxiliary record of raw values
links to every box that contains it.

Per quasi-identifier a box holds a raw value when:

* an interval column (:class:`IntervalColumn`, released as ``[lo, hi]``): ``lo <= value <= hi``; ``*``
  (a class mixing missing values and numbers) holds every value, a missing one included; a missing
  released value holds only a missing value;
* a hierarchy column (:class:`HierarchyColumn`, released as a hierarchy label): the label is the value
  itself or one of its ancestors in the run's hierarchy (a missing label holds only a missing value).

A record may lie in several boxes (a value the run's input did not have can fall in two ranges): it
then links to their union, and the prosecutor's chance is 1/(rows of the matched classes); it links
*uniquely* when that union is one row. The figures are :func:`.linkage.measure`'s, as for the
full-domain join.

Cost: records are matched in chunks against every class at once (``chunk × classes`` at most
:data:`CELLS`), classes packed as bits (64 per uint64 word: one AND per column per 64 classes), per
column through a bit table of its distinct auxiliary values × classes when that fits in :data:`CELLS`
bytes (else built per chunk): no Python loop over records or classes.

>>> released = pa.table({"age": ["[20, 29]", "[20, 29]", "[30, 39]", "[30, 39]"]})
>>> aux = {"age": IntervalColumn(pa.array([25, 31, 50, None]), "age")}
>>> r = link_boxes(released, aux, ["age"])
>>> r["linked"], r["unlinked"], r["expected_reidentification_rate"]
(2, 2, 0.25)
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from privprep.schemas.errors import InputError, UsageError

from .linkage import _joint_codes, measure, single_values, truth_codes

CELLS = 20_000_000  # booleans per matching block: chunk of records × classes (about 20 MB)
TOP = "*"
_INTERVAL = r"^\[(?P<lo>[^,\]]+), (?P<hi>[^,\]]+)\]$"


class Column(Protocol):
    """One ``--on`` column of the auxiliary table: each record's distinct-value code and, for some
    distinct values, whether each released class holds them."""

    codes: np.ndarray
    distinct: int

    def bind(self, labels: pa.Array) -> None:  # the released value of each class
        ...

    def table(self, values: np.ndarray) -> np.ndarray:  # bool (len(values), classes)
        ...


class IntervalColumn:
    """Raw numbers against released ``[lo, hi]`` ranges (``*``: anything; missing: only missing).

    >>> col = IntervalColumn(pa.array([5, None, 12]), "n"); col.bind(pa.array(["[1, 9]", "*", None]))
    >>> col.table(col.codes).tolist()
    [[True, True, False], [False, True, True], [False, True, False]]
    """

    def __init__(self, values: Any, column: str) -> None:
        array = _plain(values)
        if not (pa.types.is_integer(array.type) or pa.types.is_floating(array.type) or pa.types.is_decimal(array.type)):
            try:
                array = pc.cast(array, pa.float64(), safe=False)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise UsageError(f"auxiliary column '{column}' is incompatible with the run's recoding: the run released it "
                                 f"as numeric intervals and the auxiliary column has type {array.type} that is not numbers") from None
        encoded = pc.dictionary_encode(array, null_encoding="encode")
        self.column = column
        self.codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        self.numbers = np.asarray(pc.cast(encoded.dictionary, pa.float64(), safe=False).to_numpy(zero_copy_only=False), dtype=float)
        self.distinct = len(self.numbers)

    def bind(self, labels: pa.Array) -> None:
        labels = _plain(labels).cast(pa.string())
        self.missing = np.asarray(pc.is_null(labels).to_numpy(zero_copy_only=False), dtype=bool)
        self.star = np.asarray(pc.fill_null(pc.equal(labels, TOP), False).to_numpy(zero_copy_only=False), dtype=bool)
        ranged = ~(self.missing | self.star)
        parts = pc.extract_regex(pc.fill_null(labels, ""), _INTERVAL)
        try:
            lo = pc.cast(pc.struct_field(parts, "lo"), pa.float64())
            hi = pc.cast(pc.struct_field(parts, "hi"), pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            lo = hi = None
        if lo is None or pc.sum(pc.and_(pc.is_null(lo), pa.array(ranged))).as_py():
            raise InputError(f"the released column '{self.column}' holds a value that is not a '[lo, hi]' interval; "
                             "the run's data/ does not match its report")
        self.lo = np.asarray(lo.fill_null(np.inf).to_numpy(zero_copy_only=False), dtype=float)
        self.hi = np.asarray(hi.fill_null(-np.inf).to_numpy(zero_copy_only=False), dtype=float)

    def table(self, values: np.ndarray) -> np.ndarray:
        x = self.numbers[values][:, None]
        out = (self.lo <= x) & (x <= self.hi)
        out |= self.star
        out |= np.isnan(x) & self.missing
        return out


class HierarchyColumn:
    """Raw values against released hierarchy labels: a class holds a value when its label is the
    value or one of its ancestors (``ancestors[l]``: every distinct value's label at level ``l``).

    >>> col = HierarchyColumn(np.array([0, 1, 2]), [pa.array(["a", "b", None]), pa.array(["ab", "ab", None]),
    ...                                                pa.array(["*", "*", "*"])])
    >>> col.bind(pa.array(["a", "ab", None, "*"])); col.table(col.codes).astype(int).tolist()
    [[1, 1, 0, 1], [0, 1, 0, 1], [0, 0, 1, 1]]
    """

    def __init__(self, codes: np.ndarray, ancestors: list[pa.Array]) -> None:
        self.codes = np.asarray(codes, dtype=np.int64)
        self.ancestors = [_plain(a).cast(pa.string()) for a in ancestors]
        self.distinct = len(self.ancestors[0]) if ancestors else 0

    def bind(self, labels: pa.Array) -> None:
        labels = _plain(labels).cast(pa.string())
        d, c = self.distinct, len(labels)
        joined = pa.chunked_array([*self.ancestors, labels], type=pa.string())
        encoded = pc.dictionary_encode(joined, null_encoding="encode").combine_chunks()
        codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        self.levels = codes[: d * len(self.ancestors)].reshape(len(self.ancestors), d)
        self.labels = codes[d * len(self.ancestors):]
        assert len(self.labels) == c

    def table(self, values: np.ndarray) -> np.ndarray:
        out = self.levels[0][values][:, None] == self.labels
        for level in self.levels[1:]:
            out |= level[values][:, None] == self.labels
        return out


def link_boxes(
    released: pa.Table,
    columns: dict[str, Column],
    on: list[str],
    *,
    target: str | None = None,
    truth: str | None = None,
    auxiliary_truth: Any = None,
    cells: int = CELLS,
) -> dict[str, Any]:
    """Link the auxiliary records (their ``columns``) to the released classes on ``on``; the figures of
    :func:`.linkage.measure`. ``truth`` names a column of ``released`` whose auxiliary values are
    ``auxiliary_truth``."""
    n_released = released.num_rows
    n_aux = len(columns[on[0]].codes)
    class_of = _joint_codes([released.column(c) for c in on], [released.column(c)[:0] for c in on])
    size = np.bincount(class_of, minlength=int(class_of.max(initial=-1)) + 1).astype(np.int64)
    classes = len(size)
    first_row = np.unique(class_of, return_index=True)[1].astype(np.int64)  # each class's first released row (codes are 0..classes-1)
    for c in on:
        columns[c].bind(released.column(c).take(pa.array(first_row)))
    single = single_values(class_of, released.column(target), classes) if target is not None else None
    aux_size = np.zeros(n_aux, dtype=np.int64)
    matched = np.full(n_aux, -1, dtype=np.int64)  # the class of a record that links to exactly one
    disclosed = np.zeros(n_aux, dtype=bool) if target is not None else None
    if classes and n_aux:
        words = -(-classes // 64)  # classes as bits of uint64 words: 64 classes per AND
        tables = {c: _packed(columns[c], np.arange(columns[c].distinct), words, cells)
                  if columns[c].distinct * words * 8 <= cells else None for c in on}
        chunk = max(1, cells // classes)
        for start in range(0, n_aux, chunk):
            stop = min(start + chunk, n_aux)
            hit = None
            for c in on:
                codes = columns[c].codes[start:stop]
                if tables[c] is not None:
                    part = tables[c][codes]
                else:  # too many distinct values for one table: the chunk's own
                    values, inverse = np.unique(codes, return_inverse=True)
                    part = _packed(columns[c], values, words, cells)[inverse.ravel()]
                hit = part if hit is None else np.bitwise_and(hit, part, out=hit)
            assert hit is not None
            count = _popcount(hit)
            first = _first_bit(hit)
            sizes = np.where(count > 0, size[first], 0)
            several = np.flatnonzero(count > 1)
            bits = _unpack(hit[several], classes) if len(several) else None
            if bits is not None:  # rare: a value outside the run's input in two ranges; the union of the classes
                sizes[several] = bits.astype(np.int64) @ size
            aux_size[start:stop] = sizes
            matched[start:stop] = np.where(count == 1, first, -1)
            if single is not None and disclosed is not None:
                ok = (count > 0) & (single[first] >= 0)
                if bits is not None:  # every matched class holds the one same value
                    lo = np.where(bits, single, np.iinfo(np.int64).max).min(axis=1)
                    hi = np.where(bits, single, -2).max(axis=1)
                    ok[several] = (lo == hi) & (lo >= 0)
                disclosed[start:stop] = ok
    correct = None
    if truth is not None:
        out_truth, aux_truth = truth_codes(released.column(truth), auxiliary_truth)
        unique = aux_size == 1
        record = first_row[matched[unique]]  # a class of one row: its first row is its row
        correct = int(((out_truth[record] == aux_truth[unique]) & (aux_truth[unique] >= 0)).sum())
    return measure(n_released, on, aux_size, truth=truth, correct=correct, target=target, disclosed=disclosed)


def _packed(column: Column, values: np.ndarray, words: int, cells: int) -> np.ndarray:
    """``column.table(values)`` as bits: (len(values), words) uint64, built in blocks of at most ``cells``
    booleans (class ``j`` is bit ``j % 64`` of word ``j // 64`` in :func:`numpy.packbits` order)."""
    out = np.empty((len(values), words), dtype=np.uint64)
    step = max(1, cells // (words * 64))
    for start in range(0, len(values), step):
        block = column.table(values[start:start + step])
        padded = np.zeros((len(block), words * 64), dtype=bool)
        padded[:, : block.shape[1]] = block
        out[start:start + step] = np.packbits(padded, axis=1).view(np.uint64)
    return out


_POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


def _popcount(hit: np.ndarray) -> np.ndarray:
    """Set bits per row (numpy >= 2 counts words; older numpy a byte table)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(hit).sum(axis=1, dtype=np.int64)
    return _POP8[np.ascontiguousarray(hit).view(np.uint8)].sum(axis=1)  # pragma: no cover - numpy < 2


def _first_bit(hit: np.ndarray) -> np.ndarray:
    """The index of the first set class bit of each row (0 for a row without any)."""
    word = np.argmax(hit != 0, axis=1)
    value = hit[np.arange(len(hit)), word]
    bit = np.argmax(np.unpackbits(value.view(np.uint8).reshape(-1, 8), axis=1), axis=1)
    return word * 64 + bit


def _unpack(hit: np.ndarray, classes: int) -> np.ndarray:
    """Rows of class bits back to booleans (rows, classes)."""
    return np.unpackbits(np.ascontiguousarray(hit).view(np.uint8), axis=1)[:, :classes].astype(bool)


def _plain(values: Any) -> pa.Array:
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_large_string(array.type):
        array = array.cast(pa.string())
    return array


__all__ = ["CELLS", "HierarchyColumn", "IntervalColumn", "link_boxes"]
