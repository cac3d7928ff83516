"""Pass 2 of a stage decided on distinct tuples: find each row's tuple among those seen in pass 1,
vectorized (each value's index in the pass-1 dictionary, the indexes packed in mixed radix into one
integer key, the key found by binary search among the tuples' sorted keys).

>>> import numpy as np, pyarrow as pa
>>> lookup = TupleLookup({"zip": pa.array(["a", "b"]), "sex": pa.array(["F", "M"])},
...                      np.array([[0, 0], [1, 1]]), np.array([7, 9]))
>>> lookup.find(pa.table({"zip": ["b", "a", "b"], "sex": ["M", "F", "M"]})).tolist()
[9, 7, 9]
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from privprep.schemas.errors import DataError


class TupleLookup:
    """Maps rows to a value per distinct tuple: ``codes[i]`` are tuple i's dictionary codes (one
    column per entry of ``dictionaries``, in order), ``targets[i]`` what its rows get."""

    def __init__(self, dictionaries: dict[str, pa.Array], codes: np.ndarray, targets: np.ndarray) -> None:
        self.dictionaries = dict(dictionaries)
        self.radix = [max(len(d), 1) for d in self.dictionaries.values()]
        if sum(np.log2(r) for r in self.radix) >= 62:
            raise DataError(f"too many distinct combinations of {', '.join(self.dictionaries)} to index (more than 2^62)")
        keys = self.pack([codes[:, j].astype(np.int64) for j in range(codes.shape[1])], len(targets))
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.targets = np.asarray(targets)[order]

    def find(self, table: pa.Table) -> np.ndarray:
        """The target of every row of ``table``; a tuple not seen in pass 1 is a :class:`DataError`."""
        if table.num_rows == 0:
            return self.targets[:0]
        key = self.pack([self._positions(c, table.column(c)) for c in self.dictionaries], table.num_rows)
        at = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
        if len(self.keys) == 0 or not np.array_equal(self.keys[at], key):
            raise DataError("a combination of values not seen in the first pass; the input changed during the run")
        return self.targets[at]

    def pack(self, columns: list[np.ndarray], n: int) -> np.ndarray:
        """One integer key per tuple from its dictionary codes (one array per column, in order)."""
        key = np.zeros(n, dtype=np.int64)
        for radix, codes in zip(self.radix, columns):
            key = key * radix + codes
        return key

    def _positions(self, column: str, values: pa.ChunkedArray) -> np.ndarray:
        return positions_in(column, values, self.dictionaries[column])


def positions_in(column: str, values: pa.Array | pa.ChunkedArray, dictionary: pa.Array) -> np.ndarray:
    """Index of each of ``values`` in ``dictionary`` (the distinct values seen in pass 1); a value not there
    means the input changed between the passes: a one-line :class:`DataError`.

    >>> positions_in("zip", pa.array(["b", None, "a"]), pa.array(["a", "b", None])).tolist()
    [1, 2, 0]
    """
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if array.type != dictionary.type and len(dictionary):
        array = array.cast(dictionary.type)
    index = pc.index_in(array, value_set=dictionary, skip_nulls=False)
    if index.null_count:
        raise DataError(f"column '{column}': {index.null_count} value(s) not seen in the first pass; the input changed during the run")
    return np.asarray(index.to_numpy(zero_copy_only=False), dtype=np.int64)


__all__ = ["TupleLookup", "positions_in"]
