"""Randomized authenticated encryption of whole columns (SPEC §6).

Each value is encrypted with AES-256-GCM under a random 96-bit nonce; the associated data is the
value's header (format, key id) followed by the column name, so a ciphertext copied into another
column does not decrypt. The layout is in :mod:`privprep.transforms.ciphertext`; the output column is
Arrow ``binary`` and its field metadata records the original type (:mod:`privprep.transforms.protected`).
Nulls stay null (whether a value is missing is not hidden).

Two key sources: a keyring ``encrypt`` key (``key``), or a recipient's public key (``recipient``): then
each output file gets a fresh data key, sealed to the recipient and stored in the file's metadata
(:mod:`privprep.transforms.recipient`), and the producer cannot decrypt what it wrote.

>>> from privprep.schemas.keyring import SecretKey
>>> key = SecretKey(id="enc-1", purpose="encrypt", material=bytes(range(32)))
>>> table = Encrypt(columns=["diagnosis"], key=key).apply(pa.table({"diagnosis": ["flu", None]}))
>>> table.schema.field("diagnosis").type, table.column("diagnosis")[1].as_py()
(DataType(binary), None)
>>> decrypt_column(table.column("diagnosis"), column="diagnosis", keys=key, original_type=pa.string()).to_pylist()
['flu', None]
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import numpy as np
import pyarrow as pa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from privprep.schemas.errors import DataError, KeyringError
from privprep.schemas.keyring import SecretKey
from privprep.schemas.stages import EncryptParams

from .base import MapStage, StageContext, resolve_columns
from .ciphertext import (
    FORMAT_ENCRYPT,
    FORMAT_RECIPIENT,
    FORMATS,
    NONCE_BYTES,
    encrypt_rows,
    gather,
    header,
    plain_binary,
    scatter,
    split_by_header,
)
from .keys import KeyLookup, Keys, key_lookup
from .protected import Protection, canonical_bytes, check_supported, restore
from .recipient import RecipientKey, new_data_key, open_data_key, read_sealed, sealed_entry
from .registry import register

FORMAT_NAME = "privprep-ciphertext-v1 (AES-256-GCM, binary)"
_CHUNK = 65_536


@register
class Encrypt(MapStage):
    """Encrypt columns with AES-256-GCM under a keyring key, or under per-file data keys sealed to a recipient.

    Parameters
    ----------
    columns:
        Columns to encrypt; ``None`` means every column of the input.
    key:
        A keyring ``encrypt`` key (32 bytes of material). Give ``key`` or ``recipient``.
    recipient:
        A recipient's public key (:class:`~privprep.transforms.recipient.RecipientKey`).
    """

    name: ClassVar[str] = "encrypt"
    Params = EncryptParams

    def __init__(
        self, *, columns: list[str] | None = None, key: SecretKey | bytes | None = None, recipient: RecipientKey | None = None
    ) -> None:
        if (key is None) == (recipient is None):
            raise ValueError("encrypt needs either 'key' or 'recipient'")
        if isinstance(key, (bytes, bytearray)):
            key = SecretKey(id="inline", purpose="encrypt", material=bytes(key))
        if key is not None and len(key.material) != 32:
            raise ValueError("encrypt needs a 32-byte AES-256 key")
        self.columns = list(columns) if columns else None
        self.key = key
        self.recipient = recipient
        self._aead = AESGCM(key.material) if key is not None else None
        self._file_metadata: dict[str, str] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_aead", None)  # a cipher object does not pickle; rebuilt from the key
        state["_file_metadata"] = {}  # a per-file data key never travels: the receiver starts its own files
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._aead = AESGCM(self.key.material) if self.key is not None else None

    @classmethod
    def from_config(cls, params: EncryptParams, *, context: StageContext) -> "Encrypt":
        if params.recipient is not None:
            return cls(columns=params.columns, recipient=RecipientKey.from_file(context.base_dir / params.recipient))
        assert context.resolve_key is not None
        return cls(columns=params.columns, key=context.resolve_key("encrypt", params.key))

    # -- what the runner asks ---------------------------------------------------------------------
    @property
    def per_file(self) -> bool:
        """True in recipient mode: the runner calls :meth:`begin_file` before each output file."""
        return self.recipient is not None

    def begin_file(self) -> dict[str, str]:
        """Start a new output file: a fresh data key; returns the file metadata that carries it, sealed."""
        if self.recipient is None:
            return {}
        data_key = new_data_key()
        self._aead = AESGCM(data_key)
        self._file_metadata = dict(sealed_entry(column, self.recipient, data_key) for column in self.input_columns())
        return dict(self._file_metadata)

    def file_metadata(self) -> dict[str, str]:
        """The metadata that must travel with the values encrypted since the last :meth:`begin_file`
        (recipient mode; empty otherwise). Store it with the data, e.g. in the Parquet file's metadata."""
        return dict(self._file_metadata)

    def input_columns(self) -> list[str]:
        return list(self.columns or [])

    def output_schema(self, schema: pa.Schema) -> pa.Schema:
        self._require(schema, self.input_columns())
        for column in self.input_columns():
            index = schema.get_field_index(column)
            check_supported(schema.field(index).type, column, self.name)
            schema = schema.set(index, self._protection(schema.field(index).type).field(column))
        return schema

    def keys_used(self) -> list[str]:
        return [self.key.id if self.key is not None else self.recipient.id]  # type: ignore[union-attr]

    def report(self) -> dict[str, Any]:
        source = {"key": self.key.id} if self.key is not None else {"recipient": self.recipient.id}  # type: ignore[union-attr]
        return {"columns": self.input_columns(), **source, "format": FORMAT_NAME}

    # -- the work ---------------------------------------------------------------------------------
    def transform(self, table: pa.Table) -> pa.Table:
        if self.recipient is not None and not self._file_metadata:
            self.begin_file()  # ETL use: one data key until begin_file is called again
        for column in resolve_columns(self.columns, table):
            self._require(table.schema, [column])
            index = table.schema.get_field_index(column)
            kind = table.schema.field(index).type
            check_supported(kind, column, self.name)
            encrypted = self._encrypt_column(table.column(index), column)
            table = table.set_column(index, self._protection(kind).field(column), encrypted)
        return table

    def _encrypt_column(self, values: pa.ChunkedArray, column: str) -> pa.ChunkedArray:
        array = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
        text = canonical_bytes(array, column)
        rows = np.flatnonzero(np.asarray(text.is_valid())) if text.null_count else np.arange(len(text))
        dense = text.drop_null() if text.null_count else text
        head = header(self._format, self._key_id)
        associated = head + column.encode("utf-8")
        encrypt = self._aead.encrypt  # type: ignore[union-attr]
        pieces = []
        for start in range(0, max(len(dense), 1), _CHUNK):  # chunks keep the lists small and cache-warm
            pieces.append(encrypt_rows(encrypt, head, associated, plain_binary(dense.slice(start, _CHUNK))))
        encrypted = pa.chunked_array(pieces, pa.binary())  # no copy: one chunk per 65,536 values
        return scatter(encrypted, rows, len(array))

    @property
    def _format(self) -> int:
        return FORMAT_ENCRYPT if self.key is not None else FORMAT_RECIPIENT

    @property
    def _key_id(self) -> str:
        return self.key.id if self.key is not None else self.recipient.id  # type: ignore[union-attr]

    def _protection(self, kind: pa.DataType) -> Protection:
        return Protection(
            scheme="encrypt",
            original_type=kind,
            key_id=self.key.id if self.key is not None else None,
            recipient=self.recipient.id if self.recipient is not None else None,
        )


def decrypt_column(
    values: pa.Array | pa.ChunkedArray,
    *,
    column: str,
    keys: Keys,
    original_type: pa.DataType | None = None,
    file_metadata: Mapping[bytes, bytes] | Mapping[str, str] | None = None,
    context: str = "",
    row_offset: int = 0,
) -> pa.Array:
    """Decrypt a column written by :class:`Encrypt`; nulls stay null.

    ``keys`` finds keys by id (a keyring's ``resolve``, a key, or a list of keys); recipient
    ciphertexts also need the ``file_metadata`` that carries their sealed data key. Values come back
    as ``original_type`` (binary when None). A value that was altered, or moved from another column
    or file, fails authentication: a :class:`DataError` naming the row and key id. ``context`` and
    ``row_offset`` place the column in messages (e.g. ``"file 'data/part-00000.parquet', "``).
    """
    lookup = key_lookup(keys)
    pieces = []
    for group in split_by_header(values, column=column, context=context, row_offset=row_offset):
        if group.format not in (FORMAT_ENCRYPT, FORMAT_RECIPIENT):
            raise DataError(
                f"{context}column '{column}' holds {FORMATS[group.format]}s, not ciphertexts; detokenize it instead"
            )
        aead = _cipher_for(group.format, group.key_id, lookup, column, context, file_metadata)
        associated = group.header + column.encode("utf-8")
        nonces, bodies = group.body(0, NONCE_BYTES), group.body(NONCE_BYTES)
        decrypt = aead.decrypt
        try:
            plain = [decrypt(nonce, body, associated) for nonce, body in zip(nonces, bodies)]
        except InvalidTag:
            raise _failed(aead, nonces, bodies, associated, group.rows, group.key_id, column, context, row_offset) from None
        pieces.append((group.rows, pa.array(plain, pa.binary())))
    length = len(values)
    return restore(gather(pieces, length, pa.binary()), original_type, column=column)


def _cipher_for(
    fmt: int,
    key_id: str,
    lookup: KeyLookup,
    column: str,
    context: str,
    file_metadata: Mapping[bytes, bytes] | Mapping[str, str] | None,
) -> AESGCM:
    if fmt == FORMAT_ENCRYPT:
        return AESGCM(_resolve(lookup, "encrypt", key_id, column, context).material)
    recipient_id, sealed = read_sealed(file_metadata, column, context=context)
    if recipient_id != key_id:
        raise DataError(
            f"{context}column '{column}': values are sealed to recipient '{key_id}' but the file's data key "
            f"is sealed to '{recipient_id}' (values copied from another file?)"
        )
    private = _resolve(lookup, "recipient", key_id, column, context)
    return AESGCM(open_data_key(sealed, private, column=column, context=context))


def _resolve(lookup: KeyLookup, purpose: str, key_id: str, column: str, context: str) -> SecretKey:
    try:
        return lookup(purpose, key_id)
    except KeyringError as exc:
        raise KeyringError(f"{context}column '{column}' needs {purpose} key '{key_id}': {exc}") from None


def _failed(
    aead: AESGCM,
    nonces: list[bytes],
    bodies: list[bytes],
    associated: bytes,
    rows: np.ndarray,
    key_id: str,
    column: str,
    context: str,
    row_offset: int,
) -> DataError:
    """The error for values that fail authentication: how many, the first row, the key id."""
    bad = []
    for position, (nonce, body) in enumerate(zip(nonces, bodies)):
        try:
            aead.decrypt(nonce, body, associated)
        except InvalidTag:
            bad.append(position)
    first = row_offset + int(rows[bad[0]]) if bad else row_offset
    return DataError(
        f"{context}column '{column}': {len(bad)} value(s) fail authentication under key '{key_id}', first at row {first} "
        "(altered, copied from another column or file, or the key id names other material)"
    )


__all__ = ["Encrypt", "decrypt_column"]
