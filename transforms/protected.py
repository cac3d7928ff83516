"""What an encrypted or tokenized column was: a note in the Arrow field's metadata, so decryption can
give back the original type, domain and key without the config that wrote it.

Values are encrypted in their canonical byte form (:func:`privprep.transforms.columns.as_text_or_binary`:
strings as UTF-8, binary as is, numbers, booleans, dates, timestamps and decimals as Arrow's text);
:func:`restore` casts decrypted bytes back to the recorded type.

>>> note = Protection(scheme="tokenize", original_type=pa.int64(), key_id="tok-1", domain="patients")
>>> field = note.field("patient_id")
>>> field.type, Protection.from_field(field) == note
(DataType(binary), True)
>>> restore(pa.array([b"42", None]), pa.int64(), column="patient_id").to_pylist()
[42, None]
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from privprep.schemas.errors import DataError

from .columns import as_text_or_binary

FIELD_KEY = b"privprep.protected"
LAYOUT_VERSION = 1


@dataclass(frozen=True)
class Protection:
    """How a column was protected: scheme, original type, and the key, recipient or domain it used."""

    scheme: Literal["encrypt", "tokenize"]
    original_type: pa.DataType
    key_id: str | None = None
    recipient: str | None = None
    domain: str | None = None

    def field(self, name: str) -> pa.Field:
        """The output field: ``binary`` with this note in its metadata."""
        return pa.field(name, pa.binary(), metadata={FIELD_KEY: self._dump()})

    def _dump(self) -> bytes:
        schema = pa.schema([pa.field("value", self.original_type)]).serialize().to_pybytes()
        note = {
            "scheme": self.scheme,
            "layout": LAYOUT_VERSION,
            "type": str(self.original_type),
            "arrow_type": base64.b64encode(schema).decode("ascii"),
            "key": self.key_id,
            "recipient": self.recipient,
            "domain": self.domain,
        }
        return json.dumps({k: v for k, v in note.items() if v is not None}, sort_keys=True).encode()

    @classmethod
    def from_field(cls, field: pa.Field) -> "Protection | None":
        """The note of ``field``, or ``None`` when the column is not an encrypted or tokenized column."""
        raw = (field.metadata or {}).get(FIELD_KEY)
        if raw is None:
            return None
        try:
            note = json.loads(raw)
            schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(note["arrow_type"])))
            return cls(
                scheme=note["scheme"],
                original_type=schema.field(0).type,
                key_id=note.get("key"),
                recipient=note.get("recipient"),
                domain=note.get("domain"),
            )
        except (ValueError, KeyError, TypeError, pa.ArrowInvalid):
            raise DataError(f"column '{field.name}' has an unreadable privprep note in its metadata") from None


def check_supported(kind: pa.DataType, column: str, stage: str) -> None:
    """Refuse types whose values cannot be turned into bytes and back (nested, time-of-day, durations)."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_nested(kind) or pa.types.is_time(kind) or pa.types.is_duration(kind) or pa.types.is_interval(kind):
        raise DataError(
            f"stage '{stage}': column '{column}' has type {kind}, which it cannot protect; "
            "it takes strings, binary, numbers, booleans, dates, timestamps and decimals (cast the column first)"
        )


def canonical_bytes(array: pa.Array, column: str) -> pa.Array:
    """The column's values as a string or binary array (nulls kept), the form that is encrypted."""
    return as_text_or_binary(array, column)


def restore(plain: pa.Array, kind: pa.DataType | None, *, column: str) -> pa.Array:
    """Cast decrypted bytes back to ``kind`` (binary stays binary when ``kind`` is None)."""
    if kind is None or pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        return plain if kind is None else plain.cast(kind)
    if pa.types.is_null(kind):
        return pa.nulls(len(plain))
    try:
        text = plain.cast(pa.string())
        value_type = kind.value_type if pa.types.is_dictionary(kind) else kind
        out = text if pa.types.is_string(value_type) else pc.cast(text, value_type)
        return out.dictionary_encode().cast(kind) if pa.types.is_dictionary(kind) else out
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise DataError(f"column '{column}': decrypted values do not read back as {kind}") from None


__all__ = ["FIELD_KEY", "Protection", "canonical_bytes", "check_supported", "restore"]
