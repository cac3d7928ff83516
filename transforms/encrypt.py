"""Randomized authenticated encryption of whole columns (SPEC §6).

Each value is encrypted with AES-256-GCM under a random 96-bit nonce; the associated data is the
value's header (format, key id) followed by the column name, so a ciphertext copied into another
column does not decrypt. The layout is in :mod:`privprep.transforms.ciphertext`; the output column is
Arrow ``binary`` and its field metadata records the original type (:mod:`privprep.transforms.protected`).
Nulls stay null (whether a value is missing is not hidden).

Two key sources, two ciphers: a keyring ``encrypt`` key (``key``: :class:`KeyedCipher`, AES-256-GCM), or a
recipient's public key (``recipient``: :class:`SealedCipher`): then each output file gets a fresh data key,
sealed to the recipient with an X25519 ``SealedBox`` and stored in the file's metadata
(:mod:`privprep.transforms.recipient`), and the producer cannot decrypt what it wrote. The two differ only
in the key, the format byte, the id they name and the note in the output field; the stage is one
:class:`~privprep.transforms.column_stage.ColumnStage`.

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

from .base import StageContext
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
from .column_stage import ColumnStage
from .keys import KeyLookup, Keys, key_lookup
from .protected import Protection, canonical_bytes, restore
from .recipient import RecipientKey, new_data_key, open_data_key, read_sealed, sealed_entry
from .registry import register

FORMAT_NAME = "privprep-ciphertext-v1 (AES-256-GCM, binary)"
KEY_BYTES = 32
_CHUNK = 65_536


class KeyedCipher:
    """AES-256-GCM under one keyring ``encrypt`` key (32 bytes of material)."""

    format: ClassVar[int] = FORMAT_ENCRYPT
    per_file: ClassVar[bool] = False

    def __init__(self, key: SecretKey) -> None:
        if len(key.material) != KEY_BYTES:
            raise ValueError("encrypt needs a 32-byte AES-256 key")
        self.key = key
        self.aead: AESGCM | None = AESGCM(key.material)

    @property
    def key_id(self) -> str:
        return self.key.id

    def source(self) -> dict[str, str]:
        """The key's side of the stage's report entry (ids only)."""
        return {"key": self.key.id}

    def protection(self, kind: pa.DataType) -> Protection:
        return Protection(scheme="encrypt", original_type=kind, key_id=self.key.id)

    def begin_file(self, columns: list[str]) -> dict[str, str]:
        """Nothing to start: one key for every file."""
        return {}

    def file_metadata(self) -> dict[str, str]:
        return {}

    def prepare(self, columns: list[str]) -> None:
        """Before a table is encrypted: nothing to do, the key is there."""

    def __getstate__(self) -> dict[str, Any]:
        return {"key": self.key}  # a cipher object does not pickle; rebuilt from the key

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["key"])  # type: ignore[misc]


class SealedCipher:
    """AES-256-GCM under a data key per output file, sealed to ``recipient``."""

    format: ClassVar[int] = FORMAT_RECIPIENT
    per_file: ClassVar[bool] = True

    def __init__(self, recipient: RecipientKey) -> None:
        self.recipient = recipient
        self.aead: AESGCM | None = None
        self._file_metadata: dict[str, str] = {}

    @property
    def key_id(self) -> str:
        return self.recipient.id

    def source(self) -> dict[str, str]:
        return {"recipient": self.recipient.id}

    def protection(self, kind: pa.DataType) -> Protection:
        return Protection(scheme="encrypt", original_type=kind, recipient=self.recipient.id)

    def begin_file(self, columns: list[str]) -> dict[str, str]:
        """A fresh data key; returns the file metadata that carries it, sealed, one entry per column."""
        data_key = new_data_key()
        self.aead = AESGCM(data_key)
        self._file_metadata = dict(sealed_entry(column, self.recipient, data_key) for column in columns)
        return dict(self._file_metadata)

    def file_metadata(self) -> dict[str, str]:
        return dict(self._file_metadata)

    def prepare(self, columns: list[str]) -> None:
        """Before a table is encrypted: a data key, unless a file was begun (ETL use: one data key until
        :meth:`begin_file` is called again)."""
        if not self._file_metadata:
            self.begin_file(columns)

    def __getstate__(self) -> dict[str, Any]:
        return {"recipient": self.recipient}  # a per-file data key never travels: the receiver starts its own files

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["recipient"])  # type: ignore[misc]


Cipher = KeyedCipher | SealedCipher


@register
class Encrypt(ColumnStage):
    """Encrypt columns with AES-256-GCM under a keyring key, or under per-file data keys sealed to a recipient.

    Parameters
    ----------
    columns:
        Columns to encrypt; ``None`` means every column of the input.
    key:
        A keyring ``encrypt`` key (32 bytes of material). Give ``key`` or ``recipient``.
    recipient:
        A recipient's public key (:class:`~privprep.transforms.recipient.RecipientKey`).

    The key source is a cipher: a :class:`KeyedCipher` for ``key``, a :class:`SealedCipher` for ``recipient``.
    """

    name: ClassVar[str] = "encrypt"
    Params = EncryptParams
    protects: ClassVar[bool] = True

    def __init__(
        self, *, columns: list[str] | None = None, key: SecretKey | bytes | None = None, recipient: RecipientKey | None = None
    ) -> None:
        if (key is None) == (recipient is None):
            raise ValueError("encrypt needs either 'key' or 'recipient'")
        if isinstance(key, (bytes, bytearray)):
            key = SecretKey(id="inline", purpose="encrypt", material=bytes(key))
        self.cipher: Cipher = KeyedCipher(key) if key is not None else SealedCipher(recipient)  # type: ignore[arg-type]
        self.columns = list(columns) if columns else None
        self.key = key
        self.recipient = recipient

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
        return self.cipher.per_file

    def begin_file(self) -> dict[str, str]:
        """Start a new output file: a fresh data key; returns the file metadata that carries it, sealed."""
        return self.cipher.begin_file(self.input_columns())

    def file_metadata(self) -> dict[str, str]:
        """The metadata that must travel with the values encrypted since the last :meth:`begin_file`
        (recipient mode; empty otherwise). Store it with the data, e.g. in the Parquet file's metadata."""
        return self.cipher.file_metadata()

    def keys_used(self) -> list[str]:
        return [self.cipher.key_id]

    def report(self) -> dict[str, Any]:
        return {"columns": self.input_columns(), **self.cipher.source(), "format": FORMAT_NAME}

    # -- the work ---------------------------------------------------------------------------------
    def output_field(self, column: str, kind: pa.DataType) -> pa.Field:
        return self.cipher.protection(kind).field(column)

    def transform(self, table: pa.Table) -> pa.Table:
        self.cipher.prepare(self.input_columns())
        return super().transform(table)

    def transform_column(self, values: pa.ChunkedArray, column: str) -> pa.ChunkedArray:
        array = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
        text = canonical_bytes(array, column)
        rows = np.flatnonzero(np.asarray(text.is_valid())) if text.null_count else np.arange(len(text))
        dense = text.drop_null() if text.null_count else text
        head = header(self.cipher.format, self.cipher.key_id)
        associated = head + column.encode("utf-8")
        encrypt = self.cipher.aead.encrypt  # type: ignore[union-attr]
        pieces = []
        for start in range(0, max(len(dense), 1), _CHUNK):  # chunks keep the lists small and cache-warm
            pieces.append(encrypt_rows(encrypt, head, associated, plain_binary(dense.slice(start, _CHUNK))))
        encrypted = pa.chunked_array(pieces, pa.binary())  # no copy: one chunk per 65,536 values
        return scatter(encrypted, rows, len(array))


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


__all__ = ["Encrypt", "KeyedCipher", "SealedCipher", "decrypt_column"]
