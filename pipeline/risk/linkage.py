"""The linkage (re-identification) attack itself, on tables: an attacker's auxiliary records, already
brought to the released form, joined on quasi-identifiers against the released records.

Every released record with the same quasi-identifier values forms one equivalence class. An
auxiliary record *links* when its values match a class; it links *uniquely* when that class holds one
record, and is then *re-identified correctly* when that record is the right one (known from a truth
column in tests and sweeps). The *expected* re-identification rate is the prosecutor model's: an
attacker who picks one record of the matched class at random succeeds with probability 1/|class|,
summed over the auxiliary records and divided by their number. A missing value matches a missing
value (a category of its own, as in the k-anonymity search). Only counts and rates come out.

>>> import pyarrow as pa
>>> released = pa.table({"zip": ["100*", "100*", "200*"], "dx": ["flu", "flu", "cold"]})
>>> known = pa.table({"zip": ["100*", "200*", "300*"]})
>>> r = link(released, known, ["zip"], target="dx")
>>> r["linked"], r["linked_uniquely"], r["expected_reidentification_rate"], r["attribute_disclosure"]["rate"]
(2, 1, 0.5, 1.0)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def link(
    released: pa.Table,
    auxiliary: pa.Table,
    on: list[str],
    *,
    target: str | None = None,
    truth: str | None = None,
) -> dict[str, Any]:
    """Join ``auxiliary`` to ``released`` on the columns ``on`` (values compared as text) and measure
    what the attacker learns; ``truth`` names a column in both tables that identifies the record."""
    n_released = released.num_rows
    out_class, aux_class, size = _classes(released, auxiliary, on)
    classes = len(size)
    aux_size = size[aux_class]
    unique = aux_size == 1
    correct = disclosed = None
    if truth is not None:
        out_truth, aux_truth = truth_codes(released.column(truth), auxiliary.column(truth))
        only = np.full(classes, -1, dtype=np.int64)  # the record of each class (any, for classes of one)
        only[out_class] = np.arange(n_released)
        record = only[aux_class[unique]]
        correct = int(((out_truth[record] == aux_truth[unique]) & (aux_truth[unique] >= 0)).sum())
    if target is not None:
        single = single_values(out_class, released.column(target), classes)
        disclosed = (aux_size > 0) & (single[aux_class] >= 0)
    return measure(n_released, on, aux_size, truth=truth, correct=correct, target=target, disclosed=disclosed)


def measure(
    n_released: int,
    on: list[str],
    aux_size: np.ndarray,
    *,
    truth: str | None = None,
    correct: int | None = None,
    target: str | None = None,
    disclosed: np.ndarray | None = None,
) -> dict[str, Any]:
    """The attack's figures from ``aux_size`` (per auxiliary record, the released rows it links to; 0
    when unlinked), the number of correct unique links (with ``truth``) and the records that learn the
    ``target`` value (a boolean per auxiliary record).

    >>> r = measure(3, ["zip"], np.array([2, 1, 0]))
    >>> r["linked"], r["linked_uniquely"], r["expected_reidentification_rate"]
    (2, 1, 0.5)
    """
    n_aux = len(aux_size)
    linked = aux_size > 0
    unique = aux_size == 1
    expected = float((1.0 / aux_size[linked]).sum()) / n_aux if n_aux else 0.0
    result: dict[str, Any] = {
        "auxiliary_records": int(n_aux),
        "released_records": int(n_released),
        "on": list(on),
        "linked": int(linked.sum()),
        "unlinked": int(n_aux - linked.sum()),
        "linked_uniquely": int(unique.sum()),
        "expected_reidentification_rate": expected,
        "smallest_linked_class": int(aux_size[linked].min()) if linked.any() else None,
    }
    if truth is not None:
        result["truth"] = truth
        result["reidentified_correctly"] = int(correct or 0)
        result["reidentification_rate"] = int(correct or 0) / n_aux if n_aux else 0.0
        result["rate_basis"] = "correct re-identifications (unique links to the right record) / auxiliary records"
    else:
        result["reidentification_rate"] = expected
        result["rate_basis"] = "expected (no --truth): sum of 1/|class| over linked records / auxiliary records"
    if target is not None and disclosed is not None:
        result["attribute_disclosure"] = {
            "column": target,
            "disclosed": int(disclosed.sum()),
            "rate": float(disclosed.sum() / linked.sum()) if linked.any() else 0.0,
            "basis": "linked records whose class holds a single value of the column / linked records",
        }
    return result


def truth_codes(released: Any, auxiliary: Any) -> tuple[np.ndarray, np.ndarray]:
    """Codes of the truth column in both tables: equal values, equal codes; -1 for a missing value."""
    codes = _joint_codes([released], [auxiliary], nulls_match=False)
    n = len(released)
    return codes[:n], codes[n:]


def single_values(out_class: np.ndarray, column: Any, classes: int) -> np.ndarray:
    """Per class, the code of the one value ``column`` takes over its released rows, or -1 when the
    class holds several (a missing value counts as a value)."""
    values = _joint_codes([column], [column[:0]])
    pairs = np.unique(np.stack([out_class, values]), axis=1)
    distinct = np.bincount(pairs[0], minlength=classes)
    value = np.full(classes, -1, dtype=np.int64)
    value[pairs[0]] = pairs[1]
    return np.where(distinct == 1, value, -1)


def linked_rows(released: pa.Table, auxiliary: pa.Table, on: list[str]) -> np.ndarray:
    """Which auxiliary records match a released class (a boolean per auxiliary row).

    >>> linked_rows(pa.table({"a": ["x", None]}), pa.table({"a": [None, "y", "x"]}), ["a"]).tolist()
    [True, False, True]
    """
    _, aux_class, size = _classes(released, auxiliary, on)
    return size[aux_class] > 0


def _classes(released: pa.Table, auxiliary: pa.Table, on: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The class of every released and auxiliary row, and the number of released rows per class."""
    class_of = _joint_codes([released.column(c) for c in on], [auxiliary.column(c) for c in on])
    n = released.num_rows
    size = np.bincount(class_of[:n], minlength=int(class_of.max(initial=-1)) + 1)
    return class_of[:n], class_of[n:], size


def _joint_codes(left: list[Any], right: list[Any], *, nulls_match: bool = True) -> np.ndarray:
    """Dense codes of the rows of ``left`` then ``right`` (column lists of equal length): equal rows,
    equal codes. Values are compared as text; with ``nulls_match=False`` a row with a missing value
    gets code -1 (one column only)."""
    columns = []
    for a, b in zip(left, right):
        a, b = _plain(a), _plain(b)
        if a.type != b.type or pa.types.is_floating(a.type):  # different types (or float text forms): compare as text
            a, b = _text(a), _text(b)
        joined = pa.chunked_array([*a.chunks, *b.chunks], type=a.type)
        encoded = pc.dictionary_encode(joined, null_encoding="encode" if nulls_match else "mask").combine_chunks()
        indices = encoded.indices
        codes = np.asarray(indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
        columns.append(codes)
    if len(columns) == 1:
        return columns[0]
    key = np.zeros(len(columns[0]), dtype=np.int64)
    bits = 0.0
    for codes in columns:  # mixed-radix keys: one 1-d unique instead of a row-wise one (10x faster)
        radix = int(codes.max(initial=0)) + 2  # codes start at -1 (a missing truth value) or 0
        bits += np.log2(radix)
        if bits >= 62:  # too many combinations for one int64: densify what there is so far, go on
            key = _dense(key)
            bits = np.log2(int(key.max(initial=0)) + 1) + np.log2(radix)
        key = key * radix + (codes + 1)
    return _dense(key)


def _dense(key: np.ndarray) -> np.ndarray:
    """0..m-1 codes of non-negative int64 keys: a lookup table when the key space is small, else a sort."""
    space = int(key.max(initial=-1)) + 1
    if space <= max(4 * len(key), 1 << 22):
        present = np.zeros(space, dtype=bool)
        present[key] = True
        return (np.cumsum(present) - 1)[key]
    _, inverse = np.unique(key, return_inverse=True)
    return np.asarray(inverse, dtype=np.int64).ravel()


def _plain(column: Any) -> pa.ChunkedArray:
    array = column if isinstance(column, pa.ChunkedArray) else pa.chunked_array([column])
    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    if pa.types.is_large_string(array.type):
        array = array.cast(pa.string())
    return array


def _text(array: pa.ChunkedArray) -> pa.ChunkedArray:
    return array if array.type == pa.string() else array.cast(pa.string())


__all__ = ["link", "linked_rows", "measure", "single_values", "truth_codes"]
