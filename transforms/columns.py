"""Whole-column helpers shared by the keyed transforms: factorize once, compute per distinct value,
take back by code."""

from __future__ import annotations

import binascii
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from privprep.schemas.errors import DataError


def as_text_or_binary(array: pa.Array, column: str) -> pa.Array:
    """The canonical byte form of a column's values: strings as UTF-8, integers as decimal text,
    dates/timestamps/floats/booleans as Arrow's text cast, binary as is. Equal text gives equal bytes,
    so ``123`` and ``"123"`` are the same identifier."""
    kind = array.type
    if pa.types.is_dictionary(kind):
        return as_text_or_binary(array.dictionary_decode(), column)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return array.cast(pa.large_string()) if not pa.types.is_string(kind) else array
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        return array.cast(pa.large_binary())
    if pa.types.is_null(kind):
        return array.cast(pa.string())
    if pa.types.is_nested(kind):
        raise DataError(f"column '{column}' has nested type {kind}; it cannot be used as an identifier")
    try:
        return pc.cast(array, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise DataError(f"column '{column}' has type {kind}, which cannot be turned into text") from None


def map_distinct(
    array: pa.Array | pa.ChunkedArray,
    column: str,
    compute: Callable[[list[bytes]], pa.Array],
) -> pa.Array:
    """Apply ``compute`` to each distinct non-null value once and expand the result to every row.

    ``compute`` receives the distinct values as a list of ``bytes`` and returns an Arrow array of the
    same length; nulls stay null.
    """
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    text = as_text_or_binary(array, column)
    encoded = pc.dictionary_encode(text)
    distinct = encoded.dictionary
    if len(distinct) == 0:
        return pa.nulls(len(array), compute([]).type)
    values = distinct.cast(pa.large_binary()).to_pylist()
    results = compute(values)
    return results.take(encoded.indices)


def fixed_width_strings(prefix: bytes, body: np.ndarray) -> pa.Array:
    """Build a string array whose every value is ``prefix`` + one row of ``body`` (uint8, 2-D), without a
    Python loop: one data buffer and arithmetic offsets."""
    rows, width = body.shape
    total = len(prefix) + width
    data = np.empty((rows, total), dtype=np.uint8)
    data[:, : len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    data[:, len(prefix) :] = body
    offsets = np.arange(0, total * (rows + 1), total, dtype=np.int64)
    return pa.Array.from_buffers(pa.large_string(), rows, [None, pa.py_buffer(offsets), pa.py_buffer(data)]).cast(
        pa.string()
    )


def hex_bytes(digests: np.ndarray) -> np.ndarray:
    """Lower-case hex of each row of a 2-D uint8 array, as a 2-D uint8 array of ASCII (twice as wide)."""
    text = binascii.hexlify(np.ascontiguousarray(digests).tobytes())
    return np.frombuffer(text, dtype=np.uint8).reshape(digests.shape[0], digests.shape[1] * 2)
