"""Parquet modular encryption of output columns with keys from a privprep keyring (SPEC §6).

pyarrow encrypts each listed column with its own random data key and the footer with another; with
double wrapping those data keys are wrapped by random key-encryption keys, and the KEKs by *master
keys*. Here the master keys are keyring ``encrypt`` keys and the "KMS" is :class:`KeyringKmsClient`,
which wraps with AES-256-GCM under the keyring key (associated data: the master key id). The file holds
only wrapped keys and key ids, never a master key (unlike pyarrow's test ``InMemoryKmsClient``). The
footer is always encrypted: plaintext footers are not offered, since pyarrow aborts the whole process
when a plaintext-footer file's encrypted column metadata is read without the key.

A reader needs the footer key and the keys of the columns it reads; :func:`read_table` checks the
column keys against the keyring *before* touching a column (pyarrow aborts, rather than raises, when
the metadata of a column whose key is missing is inspected) and refuses the rest with one clear line.

>>> import tempfile, pathlib, pyarrow as pa
>>> from privprep.pipeline.keys.keyring import Keyring
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> ring = Keyring.create(folder / "k.keyring", purpose="encrypt", key_id="footer")
>>> _ = ring.add("encrypt", key_id="col-key"); ring.save()
>>> spec = ColumnEncryption.build(ring, columns={"diagnosis": "col-key"}, footer_key="footer")
>>> spec.write_table(pa.table({"diagnosis": ["flu"], "age": [31]}), folder / "part.parquet")
>>> read_table(folder / "part.parquet", keyring=ring).to_pylist()
[{'diagnosis': 'flu', 'age': 31}]
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq
import pyarrow.parquet.encryption as pe
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from privprep.schemas.errors import ConfigError, InputError, KeyringError

from .keyring import Keyring

KMS_INSTANCE = "privprep-keyring"
WRAP_PREFIX = "privprep-kms-v1:"
#: Key-value metadata of an encrypted file: which master key protects the footer and each column.
METADATA_KEY = "privprep.parquet_encryption"
_WRAP_AD = b"privprep/parquet-key-wrap/v1\0"
PARQUET_ENCRYPTED_MAGIC = b"PARE"


class KeyringKmsClient(pe.KmsClient):
    """A pyarrow KMS client whose master keys are keyring ``encrypt`` keys.

    ``wrap_key`` returns ``privprep-kms-v1:`` + base64(nonce || AES-256-GCM(key) || tag); the master key
    id is the associated data, so a wrapped key moved to another master key id does not unwrap.
    """

    def __init__(self, keyring: Keyring) -> None:
        super().__init__()
        self.keyring = keyring
        self.missing: list[str] = []

    def wrap_key(self, key_bytes: bytes, master_key_identifier: str) -> str:
        master = self._master(master_key_identifier)
        nonce = os.urandom(12)
        sealed = AESGCM(master).encrypt(nonce, key_bytes, _WRAP_AD + master_key_identifier.encode())
        return WRAP_PREFIX + base64.b64encode(nonce + sealed).decode("ascii")

    def unwrap_key(self, wrapped_key: str, master_key_identifier: str) -> bytes:
        master = self._master(master_key_identifier)
        if not wrapped_key.startswith(WRAP_PREFIX):
            raise KeyringError(f"a Parquet key wrapped under '{master_key_identifier}' was not wrapped by privprep")
        try:
            raw = base64.b64decode(wrapped_key[len(WRAP_PREFIX) :], validate=True)
            return AESGCM(master).decrypt(raw[:12], raw[12:], _WRAP_AD + master_key_identifier.encode())
        except (ValueError, InvalidTag):
            raise KeyringError(
                f"key '{master_key_identifier}' in keyring '{self.keyring.path}' does not unwrap this file's keys "
                "(other material under this id, or the file was altered)"
            ) from None

    def _master(self, key_id: str) -> bytes:
        try:
            return self.keyring.resolve("encrypt", key_id).material
        except KeyringError as exc:
            self.missing.append(key_id)
            raise KeyringError(f"Parquet column encryption needs key '{key_id}': {exc}") from None


def access_token(keyring: Keyring) -> str:
    """One access token per keyring (pyarrow caches KMS clients and keys per token): a digest of the
    keyring's path and key ids, never of material."""
    ids = "\n".join(entry.id for entry in keyring.entries())
    return hashlib.sha256(f"{Path(keyring.path).resolve()}\n{ids}".encode()).hexdigest()[:32]


def _factory(keyring: Keyring) -> pe.CryptoFactory:
    return pe.CryptoFactory(lambda _config: KeyringKmsClient(keyring))


def _connection(keyring: Keyring) -> pe.KmsConnectionConfig:
    return pe.KmsConnectionConfig(kms_instance_id=KMS_INSTANCE, key_access_token=access_token(keyring))


@dataclass
class ColumnEncryption:
    """Which keyring key encrypts the footer and each column; makes fresh properties per file."""

    keyring: Keyring
    footer_key: str
    columns: dict[str, str]
    _factory: pe.CryptoFactory | None = field(default=None, repr=False)

    @classmethod
    def build(cls, keyring: Keyring, *, columns: dict[str, str | None], footer_key: str | None = None) -> "ColumnEncryption":
        """Resolve key ids (``None``: the primary ``encrypt`` key); a missing key is a :class:`KeyringError`."""
        resolved = {column: keyring.resolve("encrypt", key_id).id for column, key_id in columns.items()}
        return cls(keyring=keyring, footer_key=keyring.resolve("encrypt", footer_key).id, columns=resolved)

    def keys_used(self) -> list[str]:
        return list(dict.fromkeys([self.footer_key, *self.columns.values()]))

    def describe(self) -> dict[str, Any]:
        """The record in report.json and in each file's metadata: key ids only."""
        return {"algorithm": "AES_GCM_V1", "footer": "encrypted", "footer_key": self.footer_key, "columns": dict(self.columns)}

    def file_metadata(self) -> dict[str, str]:
        return {METADATA_KEY: json.dumps(self.describe(), sort_keys=True)}

    def properties(self) -> Any:
        """Fresh ``FileEncryptionProperties`` for one file (pyarrow refuses to reuse them)."""
        if self._factory is None:
            self._factory = _factory(self.keyring)
        by_key: dict[str, list[str]] = {}
        for column, key_id in self.columns.items():
            by_key.setdefault(key_id, []).append(column)
        config = pe.EncryptionConfiguration(
            footer_key=self.footer_key,
            column_keys=by_key,
            encryption_algorithm="AES_GCM_V1",
            plaintext_footer=False,
            double_wrapping=True,
            cache_lifetime=dt.timedelta(minutes=10),
            internal_key_material=True,
            data_key_length_bits=256,
        )
        return self._factory.file_encryption_properties(_connection(self.keyring), config)

    def write_table(self, table: pa.Table, path: str | os.PathLike[str], **options: Any) -> None:
        """Write one encrypted Parquet file (Python API convenience)."""
        schema = table.schema.with_metadata({**(table.schema.metadata or {}), **self.file_metadata()})
        pq.write_table(table.cast(schema), path, encryption_properties=self.properties(), **options)


def for_output(keyring_path: Path | None, config: Any, schema: pa.Schema) -> ColumnEncryption | None:
    """The output encryption of a run (``output_encryption:`` in the config), checked against the output
    schema and the keyring before anything is written; ``None`` when not configured."""
    if config is None:
        return None
    missing = [column for column in config.columns if column not in schema.names]
    if missing:
        raise ConfigError(
            f"output_encryption.columns: column(s) not in the output (dropped by a stage?): {', '.join(missing)}"
        )
    if keyring_path is None:
        raise KeyringError("output_encryption needs a keyring; set 'keyring:' in the config or PRIVPREP_KEYRING")
    return ColumnEncryption.build(Keyring.load(keyring_path), columns=dict(config.columns), footer_key=config.footer_key)


# -- reading ------------------------------------------------------------------------------------


def is_encrypted_file(path: str | os.PathLike[str]) -> bool:
    """True when the file is a Parquet file with an encrypted footer (it ends in ``PARE``)."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell() < 8:
            return False
        handle.seek(-4, os.SEEK_END)
        return handle.read(4) == PARQUET_ENCRYPTED_MAGIC


def decryption_properties(keyring: Keyring) -> Any:
    """``FileDecryptionProperties`` that find master keys in ``keyring``."""
    return _factory(keyring).file_decryption_properties(_connection(keyring), pe.DecryptionConfiguration())


@dataclass
class EncryptedFile:
    """An opened Parquet file, and which of its encrypted columns the keyring can read."""

    path: Path
    file: pq.ParquetFile
    column_keys: dict[str, str]
    held: set[str]

    @property
    def schema(self) -> pa.Schema:
        return self.file.schema_arrow

    def unreadable(self, columns: Iterable[str]) -> dict[str, str]:
        """Column -> key id for the given columns whose key the keyring does not hold."""
        return {c: self.column_keys[c] for c in columns if c in self.column_keys and self.column_keys[c] not in self.held}


def open_file(path: str | os.PathLike[str], *, keyring: Keyring | None) -> EncryptedFile:
    """Open a (possibly encrypted) Parquet file; an encrypted footer needs the footer key."""
    path = Path(path)
    encrypted = is_encrypted_file(path)
    if encrypted and keyring is None:
        raise KeyringError(f"'{path}' is encrypted (Parquet column encryption); give a keyring that holds its keys")
    try:
        handle = pq.ParquetFile(path, decryption_properties=decryption_properties(keyring) if encrypted else None)  # type: ignore[arg-type]
    except KeyringError as exc:
        raise KeyringError(f"'{path}': {exc}") from None
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"'{path}' is not a readable Parquet file ({str(exc).splitlines()[0][:160]})") from None
    note = (handle.schema_arrow.metadata or {}).get(METADATA_KEY.encode())
    column_keys = json.loads(note)["columns"] if note else {}
    held = {entry.id for entry in keyring.entries() if entry.purpose == "encrypt"} if keyring is not None else set()
    return EncryptedFile(path=path, file=handle, column_keys=column_keys, held=held)


def read_table(
    path: str | os.PathLike[str], *, keyring: Keyring | None, columns: list[str] | None = None
) -> pa.Table:
    """Read an output file written with column encryption: the columns asked for (default: all), each
    only if the keyring holds its key; otherwise one :class:`KeyringError` naming file, column and key id."""
    opened = open_file(path, keyring=keyring)
    wanted = list(columns) if columns is not None else opened.schema.names
    unknown = [c for c in wanted if c not in opened.schema.names]
    if unknown:
        raise InputError(f"'{opened.path}' has no column(s) {', '.join(unknown)}")
    refused = opened.unreadable(wanted)
    if refused:
        column, key_id = next(iter(refused.items()))
        readable = [c for c in opened.schema.names if c not in opened.unreadable([c])]
        raise KeyringError(
            f"'{opened.path}': column '{column}' is encrypted with key '{key_id}', which keyring "
            f"'{keyring.path if keyring else '-'}' does not hold"
            + (f" ({len(refused) - 1} more column(s) likewise)" if len(refused) > 1 else "")
            + f"; readable columns: {', '.join(readable) or 'none'}"
        )
    try:
        return opened.file.read(columns=wanted)
    except KeyringError as exc:
        raise KeyringError(f"'{opened.path}': {exc}") from None


__all__ = [
    "ColumnEncryption",
    "EncryptedFile",
    "KeyringKmsClient",
    "access_token",
    "decryption_properties",
    "for_output",
    "is_encrypted_file",
    "open_file",
    "read_table",
]
