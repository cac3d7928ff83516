"""Tokens against the documented layout, checked with the `cryptography` library's AES-SIV directly."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from privprep.schemas.errors import DataError, KeyringError, PrivprepError
from privprep.schemas.keyring import SecretKey
from privprep.transforms import Encrypt, Tokenize, detokenize_column, registry

KEY = SecretKey(id="tok-2026", purpose="tokenize", material=bytes(range(64)))
ROTATED = SecretKey(id="tok-2027", purpose="tokenize", material=bytes(range(1, 65)))


def tokens(values: list, domain: str | None = "patients", key: SecretKey = KEY, kind: pa.DataType | None = None) -> list:
    table = pa.table({"id": pa.array(values, kind)})
    return Tokenize(columns=["id"], domain=domain, key=key).apply(table).column("id").to_pylist()


def test_layout_and_reference_aes_siv() -> None:
    token = tokens(["alice"])[0]
    head = bytes([0x11, len("tok-2026")]) + b"tok-2026"
    assert token.startswith(head) and len(token) == len(head) + 16 + len("alice")
    assert token[len(head) :] == AESSIV(KEY.material).encrypt(b"alice", [head, b"patients"])


def test_deterministic_within_a_domain_and_joinable() -> None:
    first = tokens(["alice", "bob", None, "alice", ""])
    assert first[0] == first[3] != first[1] and first[2] is None and first[4] is not None
    assert tokens(["bob"]) == [first[1]]  # another batch, same token
    assert tokens(["alice"], domain="other") != [first[0]]
    assert tokens(["123"]) == tokens([123], kind=pa.int64())  # canonical text, like pseudonyms


def test_same_token_in_another_process() -> None:
    code = (
        "import pyarrow as pa; from privprep.transforms import Tokenize; "
        "from privprep.schemas.keyring import SecretKey; "
        "k = SecretKey(id='tok-2026', purpose='tokenize', material=bytes(range(64))); "
        "print(Tokenize(columns=['id'], domain='patients', key=k).apply(pa.table({'id': ['alice']})).column('id')[0].as_py().hex())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert bytes.fromhex(out) == tokens(["alice"])[0]


@pytest.mark.parametrize(
    "values, kind",
    [(["a", None, "Zoë", "x" * 50_000], pa.string()), ([5, None, -1], pa.int64()), ([b"\x00", None], pa.binary())],
)
def test_detokenize_round_trip(values: list, kind: pa.DataType) -> None:
    out = tokens(values, kind=kind)
    back = detokenize_column(pa.array(out, pa.binary()), domain="patients", keys=KEY, original_type=kind)
    assert back.to_pylist() == values and back.type == kind


def test_every_single_flipped_byte_is_rejected() -> None:
    token = tokens(["alice"])[0]
    for position in range(len(token)):
        for flip in (0x01, 0x80, 0xFF):
            altered = bytearray(token)
            altered[position] ^= flip
            with pytest.raises(PrivprepError) as caught:
                detokenize_column(pa.array([bytes(altered)]), domain="patients", keys=[KEY, ROTATED])
            assert "alice" not in str(caught.value)


def test_token_from_another_domain_fails() -> None:
    token = tokens(["alice"], domain="emails")
    with pytest.raises(DataError, match=r"1 token\(s\) fail authentication under key 'tok-2026'"):
        detokenize_column(pa.array(token), domain="patients", keys=KEY)


def test_missing_key_names_its_id_and_rotation_keeps_old_tokens_readable() -> None:
    old = tokens(["alice"])
    new = tokens(["alice"], key=ROTATED)
    assert old != new  # a new epoch: tokens under the new key do not join with older ones
    with pytest.raises(KeyringError, match="needs tokenize key 'tok-2026'"):
        detokenize_column(pa.array(old), domain="patients", keys=ROTATED)
    both = detokenize_column(pa.array(old + new), domain="patients", keys=[KEY, ROTATED], original_type=pa.string())
    assert both.to_pylist() == ["alice", "alice"]


def test_ciphertexts_and_tokens_are_not_confused() -> None:
    enc = SecretKey(id="enc-1", purpose="encrypt", material=bytes(32))
    ciphertext = Encrypt(columns=["id"], key=enc).apply(pa.table({"id": ["a"]})).column("id")
    with pytest.raises(DataError, match="not tokens; decrypt it instead"):
        detokenize_column(ciphertext, domain="id", keys=[enc])


def test_stage_contract() -> None:
    stage = Tokenize(columns=["id"], key=KEY)
    assert registry.get("tokenize") is Tokenize
    assert stage.output_schema(pa.schema([("id", pa.string())])).field("id").type == pa.binary()
    assert stage.keys_used() == ["tok-2026"] and stage.report()["format"].startswith("privprep-token-v1")
    with pytest.raises(ValueError):
        Tokenize(key=b"k" * 32)
