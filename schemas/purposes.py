"""Key purposes and their algorithms, without pydantic: the CLI's help texts need only these.

>>> ALGORITHMS["encrypt"]
('AES-256-GCM', 32)
"""

from __future__ import annotations

#: Purposes of symmetric keys: ``privprep keys new`` without ``--purpose`` makes one key of each.
SYMMETRIC_PURPOSES: tuple[str, ...] = ("pseudonymize", "tokenize", "encrypt")
#: Algorithm name and key length in bytes per purpose.
ALGORITHMS: dict[str, tuple[str, int]] = {
    "pseudonymize": ("HMAC-SHA256", 32),
    "tokenize": ("AES-SIV-512", 64),
    "encrypt": ("AES-256-GCM", 32),
    "recipient": ("X25519", 32),
}

__all__ = ["ALGORITHMS", "SYMMETRIC_PURPOSES"]
