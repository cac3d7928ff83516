from __future__ import annotations

import base64
import json
import logging
import os
from pathlib import Path

import pytest

from privprep.pipeline.keys.keyring import Keyring
from privprep.schemas.errors import KeyringError


def material_of(path: Path) -> list[str]:
    return [k["material"] for k in json.loads(path.read_text())["keys"]]


def test_new_keyring_has_one_key_per_symmetric_purpose_and_mode_0600(tmp_path: Path, cli) -> None:
    path = tmp_path / "k" / "dev.keyring"
    result = cli("keys", "new", "--out", path)
    assert result.code == 0
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    document = json.loads(path.read_text())
    assert [k["purpose"] for k in document["keys"]] == ["pseudonymize", "tokenize", "encrypt"]
    assert {len(base64.b64decode(k["material"])) for k in document["keys"]} == {32, 64}
    for field in ("id", "purpose", "algorithm", "created", "material"):
        assert all(field in k for k in document["keys"])
    for secret in material_of(path):
        assert secret not in result.out + result.err


def test_list_shows_ids_never_material(tmp_path: Path, cli) -> None:
    path = tmp_path / "dev.keyring"
    cli("keys", "new", "--out", path)
    assert cli("keys", "new", "--out", path, "--purpose", "pseudonymize", "--id", "pseudo-2027", "--force").code == 0
    listed = cli("keys", "list", path)
    assert listed.code == 0 and "pseudo-2027" in listed.out and "tokenize" in listed.out
    as_json = json.loads(cli("keys", "list", path, "--json").out)
    assert [row["primary"] for row in as_json] == [False, True, True, True]
    for secret in material_of(path):
        assert secret not in listed.out + listed.err
        assert base64.b64decode(secret).hex() not in listed.out


def test_primary_key_is_the_newest_of_its_purpose(tmp_path: Path, cli) -> None:
    path = tmp_path / "dev.keyring"
    cli("keys", "new", "--out", path)
    first = Keyring.load(path).resolve("pseudonymize", None)
    assert cli("keys", "rotate", path, "--purpose", "pseudonymize").code == 0
    ring = Keyring.load(path)
    assert ring.resolve("pseudonymize", None).id != first.id
    assert ring.resolve("pseudonymize", first.id).material == first.material


def test_duplicate_id_and_id_without_purpose_are_refused(tmp_path: Path, cli) -> None:
    path = tmp_path / "dev.keyring"
    assert cli("keys", "new", "--out", path, "--purpose", "encrypt", "--id", "e1").code == 0
    again = cli("keys", "new", "--out", path, "--purpose", "encrypt", "--id", "e1", "--force")
    assert again.code == 2 and "key id 'e1' already exists" in again.err
    assert cli("keys", "new", "--out", tmp_path / "b.keyring", "--id", "x").code == 2


def test_exist_ok_leaves_the_keyring_alone(tmp_path: Path, cli) -> None:
    path = tmp_path / "dev.keyring"
    cli("keys", "new", "--out", path)
    before = path.read_bytes()
    assert cli("keys", "new", "--out", path, "--exist-ok").code == 0
    assert path.read_bytes() == before


def test_keys_new_over_an_existing_keyring_refuses_to_replace_its_primary_keys(tmp_path: Path, cli) -> None:
    """Issue 23: a second ``keys new`` silently made new primary keys, so later pseudonyms no longer joined."""
    path = tmp_path / "dev.keyring"
    assert cli("keys", "new", "--out", path).code == 0
    before = path.read_bytes()
    again = cli("keys", "new", "--out", path)
    assert again.code == 2 and path.read_bytes() == before
    lines = again.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in again.err
    assert f"privprep keys rotate {path} --purpose P" in lines[0] and "--exist-ok" in lines[0] and "--force" in lines[0]
    one = cli("keys", "new", "--out", path, "--purpose", "tokenize", "--id", "t2")
    assert one.code == 2 and f"keys rotate {path} --purpose tokenize" in one.err and path.read_bytes() == before
    for material in material_of(path):
        assert material not in again.err + one.err


def test_keys_new_force_rotates_and_a_new_purpose_needs_no_force(tmp_path: Path, cli) -> None:
    path = tmp_path / "dev.keyring"
    assert cli("keys", "new", "--out", path).code == 0
    first = Keyring.load(path).primary_ids()
    assert cli("keys", "new", "--out", path, "--purpose", "recipient", "--id", "r1").code == 0  # nothing replaced
    assert Keyring.load(path).primary_ids() == first | {"r1"}
    assert cli("keys", "new", "--out", path, "--force").code == 0
    ring = Keyring.load(path)
    assert len(ring.entries()) == 7 and ring.primary_ids().isdisjoint(first) and "r1" in ring.primary_ids()
    both = cli("keys", "new", "--out", path, "--force", "--exist-ok")
    assert both.code == 2 and "give one of them" in both.err and len(Keyring.load(path).entries()) == 7


def test_exist_ok_creates_a_missing_keyring(tmp_path: Path, cli) -> None:
    path = tmp_path / "new.keyring"
    assert cli("keys", "new", "--out", path, "--exist-ok").code == 0
    assert [e.purpose for e in Keyring.load(path).entries()] == ["pseudonymize", "tokenize", "encrypt"]


def test_missing_unknown_and_wrong_purpose_keys(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="not found; create one"):
        Keyring.load(tmp_path / "nope.keyring")
    ring = Keyring.create(tmp_path / "dev.keyring", purpose="encrypt", key_id="e1")
    with pytest.raises(KeyringError, match="key id 'ghost' not found"):
        ring.resolve("encrypt", "ghost")
    with pytest.raises(KeyringError, match=r"key id 'E1' not found in keyring '.*' \(did you mean 'e1'\?\)"):
        ring.resolve("encrypt", "E1")
    with pytest.raises(KeyringError, match=r"unknown key purpose 'tokenise' \(did you mean 'tokenize'\?\)"):
        ring.add("tokenise")
    with pytest.raises(KeyringError, match="is a 'encrypt' key, not a 'pseudonymize' key"):
        ring.resolve("pseudonymize", "e1")
    with pytest.raises(KeyringError, match="no 'tokenize' key"):
        ring.resolve("tokenize", None)


def test_malformed_keyrings(tmp_path: Path) -> None:
    path = tmp_path / "bad.keyring"
    path.write_text("{not json")
    with pytest.raises(KeyringError, match="not a JSON keyring"):
        Keyring.load(path)
    path.write_text(json.dumps({"version": 1, "keys": [{"id": "a"}]}))
    with pytest.raises(KeyringError, match="malformed"):
        Keyring.load(path)
    good = Keyring.create(tmp_path / "g.keyring", purpose="encrypt", key_id="e1")
    document = json.loads(good.path.read_text())
    document["keys"][0]["material"] = base64.b64encode(b"short").decode()
    path.write_text(json.dumps(document))
    with pytest.raises(KeyringError, match="key 'e1' .* 5 bytes"):
        Keyring.load(path)


def test_loose_permissions_are_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ring = Keyring.create(tmp_path / "dev.keyring")
    os.chmod(ring.path, 0o644)
    with caplog.at_level(logging.WARNING, logger="privprep"):
        Keyring.load(ring.path)
    assert "chmod 600" in caplog.text
