"""``privprep keys new --purpose recipient``: the private key in the keyring, the public key in a file."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from nacl.public import PrivateKey

from privprep.pipeline.keys.keyring import Keyring
from privprep.schemas.errors import KeyringError
from privprep.transforms.recipient import RecipientKey


def test_keys_new_writes_the_key_pair_files(tmp_path: Path, cli) -> None:
    ring_path = tmp_path / "analyst.keyring"
    result = cli("keys", "new", "--out", ring_path, "--purpose", "recipient", "--id", "analyst-1")
    assert result.code == 0, result.err
    public_path = tmp_path / "analyst-1.pub"
    assert oct(ring_path.stat().st_mode & 0o777) == "0o600"
    document = json.loads(public_path.read_text())
    assert document == {
        "version": 1, "id": "analyst-1", "purpose": "recipient", "algorithm": "X25519", "public_key": document["public_key"]
    }
    entry = json.loads(ring_path.read_text())["keys"][0]
    private = base64.b64decode(entry["material"])
    assert entry["algorithm"] == "X25519" and len(private) == 32
    assert base64.b64decode(document["public_key"]) == bytes(PrivateKey(private).public_key)
    assert entry["material"] not in public_path.read_text() + result.out + result.err
    assert RecipientKey.from_file(public_path).id == "analyst-1"
    listed = cli("keys", "list", ring_path)
    assert "analyst-1" in listed.out and "X25519" in listed.out and entry["material"] not in listed.out


def test_rotate_recipient_writes_a_new_public_key(tmp_path: Path, cli) -> None:
    ring_path = tmp_path / "analyst.keyring"
    assert cli("keys", "new", "--out", ring_path, "--purpose", "recipient", "--public-out", tmp_path / "a.pub").code == 0
    assert cli("keys", "rotate", ring_path, "--purpose", "recipient", "--public-out", tmp_path / "b.pub").code == 0
    first, second = RecipientKey.from_file(tmp_path / "a.pub"), RecipientKey.from_file(tmp_path / "b.pub")
    assert first.id != second.id and first.public != second.public
    ring = Keyring.load(ring_path)
    assert ring.resolve("recipient", None).id == second.id and ring.resolve("recipient", first.id)


def test_bad_public_key_files(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="not found"):
        RecipientKey.from_file(tmp_path / "nope.pub")
    (tmp_path / "bad.pub").write_text("{}")
    with pytest.raises(KeyringError, match="not a privprep recipient public key file"):
        RecipientKey.from_file(tmp_path / "bad.pub")
    (tmp_path / "short.pub").write_text(json.dumps({"id": "x", "public_key": base64.b64encode(b"abc").decode()}))
    with pytest.raises(KeyringError, match="3 bytes"):
        RecipientKey.from_file(tmp_path / "short.pub")


def test_missing_public_key_file_in_a_config_is_exit_2(workspace, cli) -> None:
    stages = [{"drop": {"columns": ["patient_id", "name"]}}, {"encrypt": {"columns": ["diagnosis"], "recipient": "nope.pub"}}]
    result = cli("run", workspace.config(stages=stages))
    assert result.code == 2 and "stages[1].encrypt" in result.err and "nope.pub" in result.err
