"""The keyring-backed KMS client and Parquet modular encryption, checked with pyarrow and `cryptography`."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pyarrow as pa
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from privprep.pipeline.keys.column_encryption import (
    WRAP_PREFIX,
    ColumnEncryption,
    KeyringKmsClient,
    access_token,
    is_encrypted_file,
    read_table,
)
from privprep.pipeline.keys.keyring import Keyring
from privprep.schemas.errors import KeyringError


@pytest.fixture
def ring(tmp_path: Path) -> Keyring:
    keyring = Keyring.create(tmp_path / "k.keyring", purpose="encrypt", key_id="footer")
    keyring.add("encrypt", key_id="col-a")
    keyring.add("encrypt", key_id="col-b")
    keyring.save()
    return keyring


def test_key_wrapping_is_aes_gcm_under_the_keyring_key(ring: Keyring) -> None:
    client = KeyringKmsClient(ring)
    wrapped = client.wrap_key(b"k" * 32, "col-a")
    assert wrapped.startswith(WRAP_PREFIX)
    raw = base64.b64decode(wrapped[len(WRAP_PREFIX) :])
    master = ring.resolve("encrypt", "col-a").material
    assert AESGCM(master).decrypt(raw[:12], raw[12:], b"privprep/parquet-key-wrap/v1\0col-a") == b"k" * 32
    assert client.unwrap_key(wrapped, "col-a") == b"k" * 32
    with pytest.raises(KeyringError, match="'col-b' .* does not unwrap"):
        client.unwrap_key(wrapped, "col-b")  # a wrapped key moved to another master key id
    with pytest.raises(KeyringError, match="needs key 'ghost'"):
        client.wrap_key(b"k" * 32, "ghost")


def test_file_has_an_encrypted_footer_and_no_master_key(ring: Keyring, tmp_path: Path) -> None:
    spec = ColumnEncryption.build(ring, columns={"a": "col-a", "b": "col-b"}, footer_key="footer")
    table = pa.table({"a": ["x"] * 100, "b": list(range(100)), "c": [1.5] * 100})
    spec.write_table(table, tmp_path / "f.parquet", compression="none")
    data = (tmp_path / "f.parquet").read_bytes()
    assert data[:4] == b"PARE" and data[-4:] == b"PARE" and is_encrypted_file(tmp_path / "f.parquet")
    for entry in json.loads(ring.path.read_text())["keys"]:
        raw = base64.b64decode(entry["material"])
        assert raw not in data and entry["material"].encode() not in data
    assert read_table(tmp_path / "f.parquet", keyring=ring).to_pydict() == table.to_pydict()


def test_plaintext_columns_readable_with_the_footer_key_only(ring: Keyring, tmp_path: Path) -> None:
    ColumnEncryption.build(ring, columns={"a": "col-a"}, footer_key="footer").write_table(
        pa.table({"a": ["x"], "c": [1]}), tmp_path / "f.parquet"
    )
    document = json.loads(ring.path.read_text())
    document["keys"] = [k for k in document["keys"] if k["id"] == "footer"]
    (tmp_path / "footer-only.keyring").write_text(json.dumps(document))
    footer_only = Keyring.load(tmp_path / "footer-only.keyring")
    assert read_table(tmp_path / "f.parquet", keyring=footer_only, columns=["c"]).to_pylist() == [{"c": 1}]
    with pytest.raises(KeyringError, match="column 'a' is encrypted with key 'col-a'.*readable columns: c"):
        read_table(tmp_path / "f.parquet", keyring=footer_only)


def test_wrong_footer_material_and_no_keyring_are_key_errors(ring: Keyring, tmp_path: Path) -> None:
    ColumnEncryption.build(ring, columns={"a": "col-a"}, footer_key="footer").write_table(pa.table({"a": ["x"]}), tmp_path / "f.parquet")
    document = json.loads(ring.path.read_text())
    for entry in document["keys"]:
        entry["material"] = base64.b64encode(bytes(32)).decode()
    (tmp_path / "impostor.keyring").write_text(json.dumps(document))
    with pytest.raises(KeyringError, match="key 'footer' .* does not unwrap"):
        read_table(tmp_path / "f.parquet", keyring=Keyring.load(tmp_path / "impostor.keyring"))
    with pytest.raises(KeyringError, match="is encrypted"):
        read_table(tmp_path / "f.parquet", keyring=None)


def test_one_access_token_per_keyring(ring: Keyring, tmp_path: Path) -> None:
    other = Keyring.create(tmp_path / "other.keyring")
    assert access_token(ring) == access_token(Keyring.load(ring.path))
    assert access_token(ring) != access_token(other)
    assert all(base64.b64decode(e.material).hex() not in access_token(ring) for e in ring.entries())


def test_default_keys_are_the_primary_encrypt_key(ring: Keyring) -> None:
    spec = ColumnEncryption.build(ring, columns={"a": None})
    assert spec.columns == {"a": "col-b"} and spec.footer_key == "col-b"
    with pytest.raises(KeyringError, match="'nope'"):
        ColumnEncryption.build(ring, columns={"a": "nope"})


def test_rows_written_in_many_row_groups_and_files_read_back(ring: Keyring, tmp_path: Path) -> None:
    spec = ColumnEncryption.build(ring, columns={"a": "col-a"}, footer_key="footer")
    table = pa.table({"a": [f"v{i}" for i in range(10_000)], "n": list(range(10_000))})
    for name in ("one.parquet", "two.parquet"):  # fresh properties per file
        spec.write_table(table, tmp_path / name, row_group_size=1_000)
        assert read_table(tmp_path / name, keyring=ring).column("a").to_pylist() == table.column("a").to_pylist()
