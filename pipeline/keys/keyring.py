"""Keyring files (SPEC §6): create, add, list and resolve keys. Material never leaves this module
except inside a :class:`SecretKey`, and is never printed or logged.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "dev.keyring"
>>> ring = Keyring.create(path)
>>> [k.purpose for k in ring.entries()], oct(path.stat().st_mode & 0o777)
(['pseudonymize', 'tokenize', 'encrypt'], '0o600')
>>> ring.resolve("pseudonymize", None).id == ring.entries()[0].id
True
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import secrets
import stat
from pathlib import Path

from nacl.public import PrivateKey
from pydantic import ValidationError

from privprep.schemas.errors import KeyringError
from privprep.schemas.keyring import ALGORITHMS, SYMMETRIC_PURPOSES, KeyEntry, KeyringFile, PublicKeyFile, SecretKey
from privprep.schemas.suggest import did_you_mean

from ..files.fsutil import write_text_atomic
from ..files.storage import is_uri

log = logging.getLogger(__name__)
ENV_VAR = "PRIVPREP_KEYRING"


class Keyring:
    """A keyring file in memory. Within a purpose the last key is the primary one."""

    def __init__(self, path: Path, document: KeyringFile) -> None:
        self.path = Path(path)
        self._document = document

    # -- loading and saving -------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Keyring":
        """Read a keyring; a missing or malformed file is a :class:`KeyringError`; loose permissions warn."""
        if isinstance(path, str) and is_uri(path):
            raise KeyringError(f"keyring '{path}' is in an object store; a keyring is read from a local file only")
        path = Path(path)
        if not path.is_file():
            raise KeyringError(
                f"keyring '{path}' not found; create one with: privprep keys new --out {path}"
            )
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning(
                "keyring '%s' is readable by group or others (mode %s); restrict it with: chmod 600 %s",
                path, oct(mode), path,
            )
        try:
            document = KeyringFile.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            raise KeyringError(f"keyring '{path}' is not a JSON keyring file") from None
        except ValidationError as exc:
            where = ".".join(str(p) for p in exc.errors()[0]["loc"])
            raise KeyringError(f"keyring '{path}' is malformed at '{where}': {exc.errors()[0]['msg']}") from None
        ids = [entry.id for entry in document.keys]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:  # which material would a ciphertext naming that id get? refuse rather than guess
            raise KeyringError(f"keyring '{path}' holds key id(s) {', '.join(repeated)} more than once; each key id must be unique")
        ring = cls(path, document)
        for entry in document.keys:
            ring._decode(entry)  # fail early on bad material, naming the key id
        return ring

    @classmethod
    def create(
        cls, path: str | os.PathLike[str], *, purpose: str | None = None, key_id: str | None = None, force: bool = False
    ) -> "Keyring":
        """Create a keyring (or add to an existing one): one new key of ``purpose``, or without a purpose one
        new primary key for each symmetric purpose.

        A new key becomes its purpose's primary key, so adding one of a purpose the keyring already holds
        is a rotation (new pseudonyms and tokens no longer join earlier outputs): that is refused unless
        ``force`` is given; :meth:`add` (``privprep keys rotate``) rotates one purpose deliberately.
        Adding a purpose the keyring does not hold yet needs no ``force``.

        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "dev.keyring"
        >>> first = Keyring.create(path)
        >>> Keyring.create(path)
        Traceback (most recent call last):
        ...
        privprep.schemas.errors.KeyringError: keyring '...' already exists with primary pseudonymize, tokenize, encrypt keys; ...
        >>> len(Keyring.create(path, purpose="recipient").entries())  # a new purpose: nothing is replaced
        4
        """
        path = Path(path)
        ring = cls.load(path) if path.exists() else cls(path, KeyringFile())
        purposes = [purpose] if purpose else list(SYMMETRIC_PURPOSES)
        if key_id is not None and len(purposes) != 1:
            raise KeyringError("--id needs --purpose: without it one key per purpose is made")
        held = {entry.purpose for entry in ring.entries()}
        replaced = [name for name in purposes if name in held]
        if replaced and not force:
            several = len(replaced) > 1
            effect = ("new pseudonyms and tokens would no longer join earlier outputs"
                      if {"pseudonymize", "tokenize"} & set(replaced) else "new runs would use the new key")
            raise KeyringError(
                f"keyring '{path}' already exists with primary {', '.join(replaced)} key{'s' if several else ''}; "
                f"{'new ones' if several else 'a new one'} would become primary ({effect}). To rotate deliberately use: "
                f"privprep keys rotate {path} --purpose {'P' if several else replaced[0]}; "
                "to keep the keyring: --exist-ok; to add new primary keys anyway: --force"
            )
        for name in purposes:
            ring.add(name, key_id=key_id)
        ring.save()
        return ring

    def save(self) -> None:
        """Write the keyring atomically with mode 0600."""
        write_text_atomic(self.path, self._document.model_dump_json(indent=2) + "\n", mode=0o600)

    # -- keys ---------------------------------------------------------------------------------
    def add(self, purpose: str, *, key_id: str | None = None) -> KeyEntry:
        """Add a fresh random key of ``purpose``; it becomes that purpose's primary key."""
        if purpose not in ALGORITHMS:
            raise KeyringError(f"unknown key purpose '{purpose}'{did_you_mean(purpose, ALGORITHMS)}; use one of: {', '.join(ALGORITHMS)}")
        algorithm, length = ALGORITHMS[purpose]
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        key_id = key_id or f"{purpose}-{now:%Y%m%d}-{secrets.token_hex(3)}"
        if any(entry.id == key_id for entry in self._document.keys):
            raise KeyringError(f"key id '{key_id}' already exists in keyring '{self.path}'")
        entry = KeyEntry(
            id=key_id,
            purpose=purpose,  # type: ignore[arg-type]
            algorithm=algorithm,
            created=now,
            material=base64.b64encode(_new_material(purpose, length)).decode("ascii"),
        )
        self._document = self._document.model_copy(update={"keys": [*self._document.keys, entry]})
        return entry

    def entries(self) -> list[KeyEntry]:
        """The keys, in file order."""
        return list(self._document.keys)

    def primary_ids(self) -> set[str]:
        """Ids of the primary key of each purpose."""
        latest: dict[str, str] = {}
        for entry in self._document.keys:
            latest[entry.purpose] = entry.id
        return set(latest.values())

    def resolve(self, purpose: str, key_id: str | None) -> SecretKey:
        """The key ``key_id`` (checked to be of ``purpose``), or the primary key of ``purpose``."""
        candidates = [entry for entry in self._document.keys if entry.purpose == purpose]
        if key_id is None:
            if not candidates:
                raise KeyringError(
                    f"keyring '{self.path}' has no '{purpose}' key; add one with: "
                    f"privprep keys new --out {self.path} --purpose {purpose}"
                )
            return self._decode(candidates[-1])
        for entry in self._document.keys:
            if entry.id == key_id:
                if entry.purpose != purpose:
                    raise KeyringError(f"key '{key_id}' is a '{entry.purpose}' key, not a '{purpose}' key")
                return self._decode(entry)
        ids = [entry.id for entry in self._document.keys if entry.purpose == purpose]
        raise KeyringError(f"key id '{key_id}' not found in keyring '{self.path}'{did_you_mean(key_id, ids)}")

    def write_public_key(self, key_id: str, path: str | os.PathLike[str]) -> Path:
        """Write the public half of recipient key ``key_id`` to ``path`` (a JSON file, not secret), atomically."""
        private = self.resolve("recipient", key_id)
        public = bytes(PrivateKey(private.material).public_key)
        document = PublicKeyFile(id=private.id, public_key=base64.b64encode(public).decode("ascii"))
        path = Path(path)
        write_text_atomic(path, document.model_dump_json(indent=2) + "\n", mode=0o644)
        return path

    def _decode(self, entry: KeyEntry) -> SecretKey:
        try:
            material = base64.b64decode(entry.material, validate=True)
        except ValueError:
            raise KeyringError(f"key '{entry.id}' in keyring '{self.path}' has material that is not base64") from None
        expected = ALGORITHMS[entry.purpose][1]
        if len(material) != expected:
            raise KeyringError(
                f"key '{entry.id}' in keyring '{self.path}' has {len(material)} bytes of material, expected {expected}"
            )
        return SecretKey(id=entry.id, purpose=entry.purpose, material=material)


def _new_material(purpose: str, length: int) -> bytes:
    """Fresh key material: random bytes, or for ``recipient`` an X25519 private key (PyNaCl)."""
    if purpose == "recipient":
        return bytes(PrivateKey.generate())
    return secrets.token_bytes(length)


def default_public_path(keyring: Path, key_id: str) -> Path:
    """Where ``privprep keys new --purpose recipient`` writes the public key unless told: beside the keyring."""
    return keyring.parent / f"{key_id}.pub"


def keyring_path(configured: str | os.PathLike[str] | None) -> Path | None:
    """The keyring to use: the config's, else ``$PRIVPREP_KEYRING``, else none."""
    if configured:
        return Path(configured)
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else None
