"""The versioned binary layout of privprep ciphertexts and tokens (SPEC §6), and whole-column helpers
that build and take apart many values at once.

Every protected value is one Arrow ``binary`` value laid out as::

    offset  size  field
    0       1     format   0x01  encrypt under a keyring key (AES-256-GCM)
                           0x02  encrypt under a per-file data key sealed to a recipient (AES-256-GCM)
                           0x11  token (AES-SIV, deterministic)
    1       1     L        length of the key id, 1..128
    2       L     key id   ASCII: the keyring key id, or for 0x02 the recipient's key id
    2+L     ...   body     0x01, 0x02: 12-byte random nonce || ciphertext || 16-byte GCM tag
                           0x11:       16-byte synthetic IV || ciphertext

The header (format, L, key id) is part of the associated data of every value, so it is
authenticated with it; a reader that meets an unknown format byte refuses the value. A future
layout takes a new format byte and leaves these readable.

>>> head = header(FORMAT_ENCRYPT, "enc-1")
>>> head.hex()
'0105656e632d31'
>>> [(g.format, g.key_id, g.rows.tolist()) for g in split_by_header(pa.array([head + b"n" * 28, None]), column="c")]
[(1, 'enc-1', [0])]
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from itertools import repeat
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from privprep.schemas.errors import DataError

FORMAT_ENCRYPT = 0x01
FORMAT_RECIPIENT = 0x02
FORMAT_TOKEN = 0x11
#: Format byte -> what it is, for messages.
FORMATS: dict[int, str] = {FORMAT_ENCRYPT: "ciphertext", FORMAT_RECIPIENT: "recipient ciphertext", FORMAT_TOKEN: "token"}
NONCE_BYTES = 12
TAG_BYTES = 16
SIV_BYTES = 16
MAX_KEY_ID = 128
#: Shortest body of each format (an empty plaintext).
MIN_BODY: dict[int, int] = {FORMAT_ENCRYPT: NONCE_BYTES + TAG_BYTES, FORMAT_RECIPIENT: NONCE_BYTES + TAG_BYTES, FORMAT_TOKEN: SIV_BYTES}
_KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
_SLICE_END = 2**31 - 1  # pyarrow's binary_slice needs an explicit stop
_CHUNK = 65_536  # rows compared at once when grouping by header (bounds the index arrays)


def header(fmt: int, key_id: str) -> bytes:
    """The header of a value: format byte, key id length, key id."""
    raw = key_id.encode("ascii")
    if not 1 <= len(raw) <= MAX_KEY_ID or not _KEY_ID.match(key_id):
        raise ValueError(f"key id '{key_id}' cannot be written into a ciphertext (1..{MAX_KEY_ID} ASCII characters)")
    return bytes([fmt, len(raw)]) + raw


@dataclass
class Group:
    """Values of one column that share a header: same format and key id."""

    format: int
    key_id: str
    header: bytes
    rows: np.ndarray  # positions in the original array
    values: pa.Array  # the whole values (header included), binary

    def body(self, start: int = 0, stop: int | None = None) -> list[bytes]:
        """Bytes ``start:stop`` of every value's body, as a list (one C-level pass)."""
        begin = len(self.header) + start
        end = _SLICE_END if stop is None else len(self.header) + stop
        return pc.binary_slice(self.values, begin, end).to_numpy(zero_copy_only=False).tolist()


def split_by_header(array: pa.Array | pa.ChunkedArray, *, column: str, context: str = "", row_offset: int = 0) -> list[Group]:
    """Group the non-null values of a protected column by header, checking the layout of every value.

    A value that is too short, has an unknown format byte or a malformed key id is a :class:`DataError`
    naming its row (``row_offset`` + position); no value is quoted.
    """
    values = _as_binary(array, column, context)
    valid = np.ones(len(values), dtype=bool) if values.null_count == 0 else np.asarray(values.is_valid())
    positions = np.flatnonzero(valid)
    dense = values if values.null_count == 0 else values.filter(pa.array(valid))
    offsets = np.frombuffer(dense.buffers()[1], dtype=np.int64)[dense.offset : dense.offset + len(dense) + 1]
    data_buffer = dense.buffers()[2]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None and len(dense) else np.zeros(0, np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)

    def fail(i: int, why: str) -> DataError:
        return DataError(f"{context}column '{column}': value at row {row_offset + int(positions[i])} {why}")

    short = np.flatnonzero(lengths < 2)
    if len(short):
        raise fail(int(short[0]), "is not a privprep ciphertext or token (too short)")
    fmt = data[starts]
    id_len = data[starts + 1].astype(np.int64)
    unassigned = np.ones(len(dense), dtype=bool)
    groups: list[Group] = []
    while unassigned.any():
        i = int(np.argmax(unassigned))
        head_len = 2 + int(id_len[i])
        if int(fmt[i]) not in FORMATS:
            raise fail(i, f"has unknown format byte 0x{int(fmt[i]):02x} (altered, or written by a newer privprep)")
        if not 1 <= id_len[i] <= MAX_KEY_ID or lengths[i] < head_len + MIN_BODY[int(fmt[i])]:
            raise fail(i, "is malformed (truncated or altered)")
        head = data[starts[i] : starts[i] + head_len].tobytes()
        try:
            key_id = head[2:].decode("ascii")
        except UnicodeDecodeError:
            key_id = ""
        if not _KEY_ID.match(key_id):
            raise fail(i, "has a malformed key id (altered)")
        members = _rows_with_header(data, starts, lengths, unassigned, np.frombuffer(head, np.uint8))
        too_short = members[lengths[members] < head_len + MIN_BODY[int(fmt[i])]]
        if len(too_short):
            raise fail(int(too_short[0]), "is malformed (truncated or altered)")
        unassigned[members] = False
        group_values = dense if len(members) == len(dense) else dense.take(pa.array(members))
        groups.append(Group(int(fmt[i]), key_id, head, positions[members], group_values))
    return groups


def _rows_with_header(
    data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, candidates: np.ndarray, head: np.ndarray
) -> np.ndarray:
    """Positions of the candidate values that begin with ``head``."""
    rows = np.flatnonzero(candidates & (lengths >= len(head)))
    width = np.arange(len(head))
    keep = []
    for lo in range(0, len(rows), _CHUNK):
        part = rows[lo : lo + _CHUNK]
        keep.append(part[(data[starts[part][:, None] + width] == head).all(axis=1)])
    return np.concatenate(keep) if keep else rows


def _as_binary(array: pa.Array | pa.ChunkedArray, column: str, context: str) -> pa.Array:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    kind = array.type
    if not (pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_null(kind)):
        raise DataError(f"{context}column '{column}' has type {kind}; privprep ciphertexts and tokens are binary")
    return array.cast(pa.large_binary())


def encrypt_rows(encrypt: Callable[[bytes, bytes, bytes], bytes], head: bytes, associated: bytes, plain: pa.Array) -> pa.Array:
    """``head || nonce || encrypt(nonce, value, associated)`` for every value of a non-null binary array.

    The nonces are 96-bit random, from one ``os.urandom`` call. The output buffer is one ``bytes.join``
    of header, nonce and ciphertext per value (the header is one shared object), with offsets computed
    from the input's: each ciphertext is its plaintext plus the 16-byte tag. The only Python work per
    value is the cipher call.
    """
    values = plain.to_pylist()
    count = len(values)
    if count == 0:
        return pa.array([], pa.binary())
    nonces = np.frombuffer(os.urandom(NONCE_BYTES * count), dtype=f"V{NONCE_BYTES}").tolist()
    sealed = list(map(encrypt, nonces, values, repeat(associated, count)))  # the loop runs in C: no bytecode per value
    parts = [head] * (3 * count)
    parts[1::3] = nonces
    parts[2::3] = sealed
    data = b"".join(parts)
    offset_type = np.int64 if pa.types.is_large_binary(plain.type) else np.int32
    source = np.frombuffer(plain.buffers()[1], dtype=offset_type)[plain.offset : plain.offset + count + 1].astype(np.int64)
    offsets = source - source[0] + np.arange(count + 1, dtype=np.int64) * (len(head) + NONCE_BYTES + TAG_BYTES)
    if offsets[-1] != len(data):  # pragma: no cover - the library changed its output length
        raise RuntimeError("AES-GCM output length is not plaintext + 16 bytes")
    if offsets[-1] < 2**31:
        return pa.Array.from_buffers(pa.binary(), count, [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)])
    return pa.Array.from_buffers(pa.large_binary(), count, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def prefixed(head: bytes, bodies: list[bytes]) -> pa.Array:
    """``head || body`` for every body, as one binary array built by a single ``bytes.join``."""
    parts = [head] * (2 * len(bodies))
    parts[1::2] = bodies
    lengths = np.fromiter(map(len, bodies), dtype=np.int64, count=len(bodies)) + len(head)
    offsets = np.zeros(len(bodies) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return pa.Array.from_buffers(pa.large_binary(), len(bodies), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(parts))])


def plain_binary(array: pa.Array) -> pa.Array:
    """A string or binary array as binary (a zero-copy view of strings), the input of :func:`encrypt_rows`."""
    kind = array.type
    if pa.types.is_string(kind):
        return array.cast(pa.binary())
    if pa.types.is_large_string(kind):
        return array.cast(pa.large_binary())
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return array
    return array.cast(pa.large_binary())


def scatter(dense: pa.Array | pa.ChunkedArray, rows: np.ndarray, length: int) -> pa.Array | pa.ChunkedArray:
    """An array of ``length`` values: ``dense[j]`` at position ``rows[j]``, null elsewhere."""
    if len(rows) == length and (length == 0 or (rows[0] == 0 and np.all(np.diff(rows) == 1))):
        return dense
    index = np.zeros(length, dtype=np.int64)
    mask = np.ones(length, dtype=bool)
    index[rows] = np.arange(len(rows))
    mask[rows] = False
    return dense.take(pa.array(index, mask=mask))


def gather(pieces: list[tuple[np.ndarray, pa.Array]], length: int, kind: pa.DataType) -> pa.Array:
    """Put several ``(rows, values)`` pieces back into one array of ``length`` (null where none)."""
    if not pieces:
        return pa.nulls(length, kind)
    if len(pieces) == 1:
        return scatter(pieces[0][1], pieces[0][0], length)
    rows = np.concatenate([r for r, _ in pieces])
    return scatter(pa.concat_arrays([v for _, v in pieces]), rows, length)


__all__ = [
    "FORMATS",
    "FORMAT_ENCRYPT",
    "FORMAT_RECIPIENT",
    "FORMAT_TOKEN",
    "Group",
    "gather",
    "header",
    "encrypt_rows",
    "plain_binary",
    "prefixed",
    "scatter",
    "split_by_header",
]
