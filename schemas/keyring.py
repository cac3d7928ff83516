"""The keyring file (SPEC §6): a JSON document of keys, each ``{id, purpose, algorithm, created, material}``.

The material is base64 in the file and :class:`SecretKey` in memory; neither ``repr`` nor ``str`` of a
key shows it, so a key in a log line or an error message leaks nothing.

>>> key = SecretKey(id="pseudonymize-1", purpose="pseudonymize", material=b"\\x00" * 32)
>>> key
SecretKey(id='pseudonymize-1', purpose='pseudonymize')
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import Field

from .base import KeyId, StrictModel
from .purposes import ALGORITHMS, SYMMETRIC_PURPOSES

Purpose = Literal["pseudonymize", "tokenize", "encrypt", "recipient"]


class KeyEntry(StrictModel):
    """One key as stored in the keyring file."""

    id: KeyId
    purpose: Purpose
    algorithm: str
    created: dt.datetime
    material: Annotated[str, Field(min_length=1, repr=False, description="base64 key material")]


class KeyringFile(StrictModel):
    """The keyring file. Within a purpose, the last key listed is the primary one."""

    version: Literal[1] = 1
    keys: list[KeyEntry] = Field(default_factory=list)


class PublicKeyFile(StrictModel):
    """A recipient's public key file (``privprep keys new --purpose recipient`` writes it beside the keyring).

    Not secret: hand it to the producers who encrypt for this recipient. ``id`` is the id of the private
    key in the recipient's keyring, and it is the key id written into every ciphertext sealed to it.
    """

    version: Literal[1] = 1
    id: KeyId
    purpose: Literal["recipient"] = "recipient"
    algorithm: Literal["X25519"] = "X25519"
    public_key: Annotated[str, Field(min_length=1, description="base64 of the 32-byte X25519 public key")]


@dataclass(frozen=True)
class SecretKey:
    """Key material with its id and purpose; never shows the material in repr or str."""

    id: str
    purpose: str
    material: bytes = field(repr=False)

    def __str__(self) -> str:
        return f"key '{self.id}' ({self.purpose})"


__all__ = ["ALGORITHMS", "SYMMETRIC_PURPOSES", "KeyEntry", "KeyringFile", "PublicKeyFile", "Purpose", "SecretKey"]
