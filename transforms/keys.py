"""How decryption finds keys: a lookup ``(purpose, key_id) -> SecretKey``.

A keyring's ``resolve`` is one (``Keyring.load(path).resolve``); in ETL code a key or a list of keys
will do.

>>> key = SecretKey(id="enc-1", purpose="encrypt", material=b"\\x00" * 32)
>>> key_lookup([key])("encrypt", "enc-1") is key
True
>>> key_lookup(key)("encrypt", "enc-2")
Traceback (most recent call last):
privprep.schemas.errors.KeyringError: key id 'enc-2' is not among the keys given (ids: enc-1)
"""

from __future__ import annotations

from typing import Callable, Iterable, Union

from privprep.schemas.errors import KeyringError
from privprep.schemas.keyring import SecretKey

KeyLookup = Callable[[str, str], SecretKey]
Keys = Union[KeyLookup, SecretKey, Iterable[SecretKey]]


def key_lookup(keys: Keys) -> KeyLookup:
    """A lookup from a keyring's ``resolve``, a :class:`SecretKey`, or several of them."""
    if isinstance(keys, SecretKey):
        keys = [keys]
    if callable(keys):
        return keys  # type: ignore[return-value]
    by_id = {key.id: key for key in keys}

    def lookup(purpose: str, key_id: str) -> SecretKey:
        key = by_id.get(key_id)
        if key is None:
            raise KeyringError(f"key id '{key_id}' is not among the keys given (ids: {', '.join(by_id) or 'none'})")
        if key.purpose != purpose:
            raise KeyringError(f"key '{key_id}' is a '{key.purpose}' key, not a '{purpose}' key")
        return key

    return lookup


__all__ = ["KeyLookup", "Keys", "key_lookup"]
