"""Deterministic, joinable, reversible tokens (SPEC §6): AES-SIV (RFC 5297) with the token's header
(format, key id) and the domain as associated data.

The same value, key and domain give the same token in every batch, file, process and run, so two
tables tokenized in one domain join on the token; a holder of the key turns tokens back into values
(:func:`detokenize_column`). A token is Arrow ``binary`` in the layout of
:mod:`privprep.transforms.ciphertext` (format 0x11, key id, 16-byte SIV, ciphertext), so it is as long
as the value plus the header and 16 bytes, and reveals the value's length. Each distinct value of a
batch is encrypted once. Values are tokenized in their canonical text, so ``123`` and ``"123"`` give
the same token; nulls stay null. Rotating the ``tokenize`` key starts new tokens that do not join
with older ones (older tokens still detokenize with the old key).

>>> from privprep.schemas.keyring import SecretKey
>>> key = SecretKey(id="tok-1", purpose="tokenize", material=bytes(range(64)))
>>> out = Tokenize(columns=["id"], domain="patients", key=key).apply(pa.table({"id": ["a", "b", "a", None]}))
>>> tokens = out.column("id").to_pylist()
>>> tokens[0] == tokens[2] != tokens[1], tokens[3], tokens[0][:7]
(True, None, b'\\x11\\x05tok-1')
>>> detokenize_column(out.column("id"), domain="patients", keys=key, original_type=pa.string()).to_pylist()
['a', 'b', 'a', None]
"""

from __future__ import annotations

from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from privprep.schemas.errors import DataError, KeyringError
from privprep.schemas.keyring import SecretKey
from privprep.schemas.stages import TokenizeParams

from .ciphertext import FORMAT_TOKEN, FORMATS, gather, header, prefixed, split_by_header
from .column_stage import KeyedColumnStage
from .columns import map_distinct
from .keys import Keys, key_lookup
from .protected import Protection, restore
from .registry import register

KEY_BYTES = 64
FORMAT_NAME = "privprep-token-v1 (AES-SIV, binary)"


@register
class Tokenize(KeyedColumnStage):
    """Replace values by deterministic AES-SIV tokens that join within a domain and can be reversed.

    Parameters
    ----------
    columns:
        Columns to tokenize; ``None`` means every column of the input.
    key:
        A keyring ``tokenize`` key (64 bytes: AES-SIV with AES-256).
    domain:
        Token domain, the associated data; equal values in two tables tokenized in the same domain with
        the same key get equal tokens. Defaults to the column name.
    """

    name: ClassVar[str] = "tokenize"
    Params = TokenizeParams
    purpose: ClassVar[str] = "tokenize"
    options: ClassVar[tuple[str, ...]] = ("columns", "domain")
    transient: ClassVar[tuple[str, ...]] = ("_siv",)
    protects: ClassVar[bool] = True

    def __init__(self, *, key: SecretKey | bytes, columns: list[str] | None = None, domain: str | None = None) -> None:
        key = self.secret_key(key)
        if len(key.material) != KEY_BYTES:
            raise ValueError(f"tokenize needs a {KEY_BYTES}-byte AES-SIV key")
        self.columns = list(columns) if columns else None
        self.domain = domain
        self.key = key
        self.open()
        self._header = header(FORMAT_TOKEN, key.id)

    def open(self) -> None:
        self._siv = AESSIV(self.key.material)

    def report(self) -> dict[str, Any]:
        return {"columns": self.input_columns(), "domain": self.domain, "key": self.key.id, "format": FORMAT_NAME}

    def output_field(self, column: str, kind: pa.DataType) -> pa.Field:
        return Protection(scheme="tokenize", original_type=kind, key_id=self.key.id, domain=self.domain or column).field(column)

    def transform_column(self, values: pa.ChunkedArray, column: str) -> pa.Array:
        associated = [self._header, (self.domain or column).encode("utf-8")]

        def compute(distinct: list[bytes]) -> pa.Array:
            encrypt = self._siv.encrypt
            return prefixed(self._header, [encrypt(value, associated) for value in distinct])

        return map_distinct(values, column, compute).cast(pa.binary())


def detokenize_column(
    values: pa.Array | pa.ChunkedArray,
    *,
    domain: str,
    keys: Keys,
    original_type: pa.DataType | None = None,
    column: str | None = None,
    context: str = "",
    row_offset: int = 0,
) -> pa.Array:
    """Turn tokens back into values (each distinct token once); nulls stay null.

    ``domain`` is the one they were made in (the column name unless configured). An altered token, or
    one made in another domain, fails authentication: a :class:`DataError` naming the row and key id.
    """
    column = column or domain
    lookup = key_lookup(keys)
    pieces = []
    for group in split_by_header(values, column=column, context=context, row_offset=row_offset):
        if group.format != FORMAT_TOKEN:
            raise DataError(f"{context}column '{column}' holds {FORMATS[group.format]}s, not tokens; decrypt it instead")
        try:
            key = lookup("tokenize", group.key_id)
        except KeyringError as exc:
            raise KeyringError(f"{context}column '{column}' needs tokenize key '{group.key_id}': {exc}") from None
        siv = AESSIV(key.material)
        associated = [group.header, domain.encode("utf-8")]
        encoded = pc.dictionary_encode(group.values)
        bodies = pc.binary_slice(encoded.dictionary, len(group.header), 2**31 - 1).to_numpy(zero_copy_only=False).tolist()
        decrypt = siv.decrypt
        try:
            plain = [decrypt(body, associated) for body in bodies]
        except InvalidTag:
            raise _failed(siv, bodies, associated, encoded, group, column, context, row_offset) from None
        pieces.append((group.rows, pa.array(plain, pa.binary()).take(encoded.indices)))
    return restore(gather(pieces, len(values), pa.binary()), original_type, column=column)


def _failed(
    siv: AESSIV, bodies: list[bytes], associated: list[bytes], encoded: Any, group: Any, column: str, context: str, row_offset: int
) -> DataError:
    bad_distinct = set()
    for position, body in enumerate(bodies):
        try:
            siv.decrypt(body, associated)
        except InvalidTag:
            bad_distinct.add(position)
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    bad_rows = [i for i, code in enumerate(codes) if int(code) in bad_distinct]
    first = row_offset + int(group.rows[bad_rows[0]]) if bad_rows else row_offset
    return DataError(
        f"{context}column '{column}': {len(bad_rows)} token(s) fail authentication under key '{group.key_id}', "
        f"first at row {first} (altered, made in another domain, or the key id names other material)"
    )


__all__ = ["Tokenize", "detokenize_column"]
