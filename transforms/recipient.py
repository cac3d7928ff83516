"""Recipient mode of ``encrypt`` (SPEC §6): a random data key per output file, sealed to a recipient's
X25519 public key with PyNaCl's ``SealedBox`` and stored in that file's key-value metadata.

A producer holds only the public key: it can seal data keys, never open them, so it cannot read its
own output back. The recipient opens the sealed data key with the private key from their keyring.

>>> from nacl.public import PrivateKey
>>> private = PrivateKey.generate()
>>> recipient = RecipientKey(id="analyst-1", public=bytes(private.public_key))
>>> data_key = new_data_key()
>>> key, value = sealed_entry("diagnosis", recipient, data_key)
>>> key
'privprep.sealed_key.diagnosis'
>>> from privprep.schemas.keyring import SecretKey
>>> read_sealed({key: value}, "diagnosis", context="")[0]
'analyst-1'
>>> open_data_key(read_sealed({key: value}, "diagnosis", context="")[1],
...               SecretKey(id="analyst-1", purpose="recipient", material=bytes(private)), column="diagnosis") == data_key
True
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox
from pydantic import ValidationError

from privprep.schemas.errors import DataError, KeyringError
from privprep.schemas.keyring import PublicKeyFile, SecretKey

SEALED_KEY_PREFIX = "privprep.sealed_key."
SEAL_ALGORITHM = "X25519-XSalsa20-Poly1305-SealedBox"
DATA_KEY_BYTES = 32


@dataclass(frozen=True)
class RecipientKey:
    """A recipient's public key and its id (the id of the private key in the recipient's keyring)."""

    id: str
    public: bytes

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> "RecipientKey":
        """Read a public key file written by ``privprep keys new --purpose recipient``."""
        path = Path(path)
        if not path.is_file():
            raise KeyringError(f"recipient public key file '{path}' not found")
        try:
            document = PublicKeyFile.model_validate_json(path.read_bytes())
            public = base64.b64decode(document.public_key, validate=True)
        except (ValidationError, ValueError):
            raise KeyringError(f"'{path}' is not a privprep recipient public key file") from None
        if len(public) != 32:
            raise KeyringError(f"'{path}' holds a public key of {len(public)} bytes, expected 32 (X25519)")
        return cls(id=document.id, public=public)


def public_key_of(private: SecretKey) -> bytes:
    """The X25519 public key of a recipient private key."""
    return bytes(PrivateKey(private.material).public_key)


def new_data_key() -> bytes:
    """A fresh random 256-bit data key."""
    return os.urandom(DATA_KEY_BYTES)


def sealed_entry(column: str, recipient: RecipientKey, data_key: bytes) -> tuple[str, str]:
    """The file metadata entry that carries ``data_key`` sealed to ``recipient`` for ``column``."""
    sealed = SealedBox(PublicKey(recipient.public)).encrypt(data_key)
    value = {"recipient": recipient.id, "algorithm": SEAL_ALGORITHM, "sealed": base64.b64encode(sealed).decode("ascii")}
    return SEALED_KEY_PREFIX + column, json.dumps(value, sort_keys=True)


def read_sealed(metadata: Mapping[bytes, bytes] | Mapping[str, str] | None, column: str, *, context: str) -> tuple[str, bytes]:
    """The recipient id and sealed data key of ``column`` from a file's metadata."""
    wanted = SEALED_KEY_PREFIX + column
    raw = None
    for key, value in (metadata or {}).items():
        if (key.decode() if isinstance(key, bytes) else key) == wanted:
            raw = value
    if raw is None:
        raise DataError(f"{context}column '{column}' holds recipient ciphertexts but the file carries no sealed data key for it")
    try:
        note = json.loads(raw)
        return str(note["recipient"]), base64.b64decode(note["sealed"], validate=True)
    except (ValueError, KeyError, TypeError):
        raise DataError(f"{context}column '{column}': the sealed data key in the file metadata is unreadable") from None


def open_data_key(sealed: bytes, private: SecretKey, *, column: str, context: str = "") -> bytes:
    """Open a sealed data key with the recipient's private key."""
    try:
        data_key = SealedBox(PrivateKey(private.material)).decrypt(sealed)
    except (CryptoError, ValueError, TypeError):
        raise KeyringError(
            f"{context}column '{column}': recipient key '{private.id}' cannot open the sealed data key "
            "(the keyring holds other material under this id, or the metadata was altered)"
        ) from None
    if len(data_key) != DATA_KEY_BYTES:
        raise DataError(f"{context}column '{column}': the sealed data key has the wrong length")
    return data_key


__all__ = [
    "RecipientKey",
    "SEALED_KEY_PREFIX",
    "new_data_key",
    "open_data_key",
    "public_key_of",
    "read_sealed",
    "sealed_entry",
]
