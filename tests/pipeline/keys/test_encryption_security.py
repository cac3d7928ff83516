"""Security properties of a whole run (issue 4), each asserting one specific outcome:
no plaintext of a protected column anywhere in the run directory, no key material anywhere a user
can see, the recipient-mode producer cannot decrypt, a partial key holder reads only its columns."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from privprep.pipeline.keys.keyring import Keyring
from tests.pipeline.keys.test_decrypt import assert_clean_failure

CANARIES = {
    "patient_id": "CANARY-TOKENIZED-7f3a9c21",
    "name": "CANARY-ENCRYPTED-91bd04e6",
    "diagnosis": "CANARY-RECIPIENT-55e1c3aa",
    "zip": "CANARY-COLUMNENC-3c0d8b17",
}
CONTROL = "CANARY-PLAINTEXT-CONTROL-d2"
ROWS = 300


def canary_table() -> pa.Table:
    """Canaries in every protected column (repeated, so Parquet dictionaries would hold them), a plain control."""
    def column(value: str) -> list[str]:
        return [value if i % 3 else f"{value}-{i}" for i in range(ROWS)]

    return pa.table({
        **{name: column(value) for name, value in CANARIES.items()},
        "age": pa.array(range(ROWS), pa.int64()),
        "note": column(CONTROL),
    })


COLUMNS = {
    "patient_id": {"role": "identifier"},
    "name": {"role": "identifier"},
    "diagnosis": {"role": "sensitive"},
    "zip": {"role": "quasi_identifier"},
    "age": {"role": "quasi_identifier"},
    "note": {"role": "insensitive"},
}


@pytest.fixture
def secured(workspace, cli, monkeypatch):
    """A run with every kind of protection, uncompressed so a plaintext canary would show verbatim."""
    source = workspace.root / "canaries.parquet"
    pq.write_table(canary_table(), source, compression="none")
    analyst = workspace.root / "analyst" / "analyst.keyring"
    assert cli("keys", "new", "--out", analyst, "--purpose", "recipient", "--id", "analyst-1").code == 0
    ring = Keyring.load(workspace.keyring)
    ring.add("encrypt", key_id="footer-k")
    ring.add("encrypt", key_id="zip-k")
    ring.add("encrypt", key_id="name-k")  # the primary 'encrypt' key: the encrypt stage uses it
    ring.save()
    data_keys: list[bytes] = []
    from privprep.transforms import encrypt as encrypt_module

    original = encrypt_module.new_data_key

    def recording() -> bytes:
        data_keys.append(original())
        return data_keys[-1]

    monkeypatch.setattr(encrypt_module, "new_data_key", recording)
    config = workspace.config(
        input=str(source),
        columns=COLUMNS,
        stages=[
            {"tokenize": {"columns": ["patient_id"]}},
            {"encrypt": {"columns": ["name"]}},
            {"encrypt": {"columns": ["diagnosis"], "recipient": str(analyst.parent / "analyst-1.pub")}},
        ],
        output_encryption={"columns": {"zip": "zip-k"}, "footer_key": "footer-k"},
        io={"compression": "none", "rows_per_file": 120, "batch_rows": 50},
    )
    result = cli("run", config)
    assert result.code == 0, result.err
    return workspace, analyst, data_keys, result


def every_byte(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def key_material(*keyrings: Path) -> list[bytes]:
    """Every secret of the keyrings, in the forms it could leak in: base64, raw, hex."""
    forms = []
    for path in keyrings:
        for entry in json.loads(path.read_text())["keys"]:
            raw = base64.b64decode(entry["material"])
            forms += [entry["material"].encode(), raw, raw.hex().encode()]
    return forms


def test_no_plaintext_of_a_protected_column_anywhere_in_the_run_directory(secured) -> None:
    workspace, _, _, _ = secured
    blob = every_byte(workspace.out)
    assert CONTROL.encode() in blob  # the scan does see plaintext where there is some
    assert len(list((workspace.out / "data").iterdir())) == 3
    for column, canary in CANARIES.items():
        assert canary.encode() not in blob, column
        assert canary[:16].encode() not in blob, column


def test_no_key_material_in_output_report_logs_or_messages(secured, cli, caplog) -> None:
    workspace, analyst, data_keys, run_result = secured
    secrets = key_material(workspace.keyring, analyst) + data_keys
    assert len(data_keys) == 3  # one data key per output file
    blob = every_byte(workspace.out)
    with caplog.at_level(logging.DEBUG, logger="privprep"):
        outputs = [run_result.out + run_result.err]
        for columns, keyring in (("name,zip", workspace.keyring), ("diagnosis", workspace.keyring), ("diagnosis", analyst)):
            result = cli("decrypt", workspace.out, "--keyring", keyring, "--columns", columns, "--output", workspace.root / "d", "--overwrite")
            outputs.append(result.out + result.err)
        listed = cli("keys", "list", workspace.keyring)
        outputs.append(listed.out + listed.err)
    seen = blob + "".join(outputs).encode() + caplog.text.encode()
    seen += every_byte(workspace.root / "d") if (workspace.root / "d").exists() else b""
    for secret in secrets:
        assert secret not in seen


def test_the_recipient_mode_producer_cannot_decrypt_its_own_output(secured, cli) -> None:
    workspace, analyst, _, _ = secured
    result = cli("decrypt", workspace.out, "--keyring", workspace.keyring, "--columns", "diagnosis", "--output", workspace.root / "p")
    assert_clean_failure(result, 2, "column 'diagnosis'", "recipient key 'analyst-1'")
    assert not (workspace.root / "p").exists()
    ring = json.loads(workspace.keyring.read_text())
    assert all(entry["purpose"] != "recipient" for entry in ring["keys"])  # the producer never held the private key
    # the analyst holds the private key but not the column-encryption footer key: refused, cleanly
    result = cli("decrypt", workspace.out, "--keyring", analyst, "--columns", "diagnosis", "--output", workspace.root / "p")
    assert_clean_failure(result, 2, "'footer-k'")


PARTIAL_READER = textwrap.dedent(
    """
    import sys
    from privprep.pipeline.keys.column_encryption import read_table
    from privprep.pipeline.keys.keyring import Keyring
    from privprep.schemas.errors import KeyringError

    ring = Keyring.load(sys.argv[2])
    table = read_table(sys.argv[1], keyring=ring, columns=["note", "age", "name"])
    print("read", table.num_rows, table.column_names)
    for columns in (["zip"], None, ["note", "zip"]):
        try:
            read_table(sys.argv[1], keyring=ring, columns=columns)
            print("NOT REFUSED", columns)
        except KeyringError as exc:
            print("refused:", exc)
    print("alive")
    """
)


def test_a_partial_key_holder_reads_its_columns_and_is_refused_the_rest(secured, cli, tmp_path) -> None:
    workspace, _, _, _ = secured
    document = json.loads(workspace.keyring.read_text())
    document["keys"] = [k for k in document["keys"] if k["id"] != "zip-k"]
    partial = tmp_path / "partial.keyring"
    partial.write_text(json.dumps(document))
    partial.chmod(0o600)
    part = workspace.out / "data" / "part-00000.parquet"
    done = subprocess.run([sys.executable, "-c", PARTIAL_READER, str(part), str(partial)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr  # the Python process must not abort
    lines = done.stdout.splitlines()
    assert lines[0] == "read 120 ['note', 'age', 'name']"
    refusals = [line for line in lines if line.startswith("refused:")]
    assert len(refusals) == 3 and all("column 'zip' is encrypted with key 'zip-k'" in line for line in refusals)
    assert lines[-1] == "alive" and "NOT REFUSED" not in done.stdout
    # the same holder decrypts what it can: 'zip' is left out with a warning, not fatal
    result = cli("decrypt", workspace.out, "--keyring", partial, "--columns", "name", "--output", tmp_path / "d")
    assert result.code == 0 and "column 'zip' is left out" in result.err
    table = pq.read_table(tmp_path / "d" / "data")
    assert "zip" not in table.column_names and table.column("name")[1].as_py() == CANARIES["name"]
    report = json.loads((tmp_path / "d" / "report.json").read_text())
    assert report["stages"][0]["omitted_columns"] == {"zip": "zip-k"}


def test_full_key_holder_gets_every_value_back(secured, cli) -> None:
    workspace, analyst, _, _ = secured
    both = workspace.root / "both.keyring"
    document = json.loads(workspace.keyring.read_text())
    document["keys"] += json.loads(analyst.read_text())["keys"]
    both.write_text(json.dumps(document))
    both.chmod(0o600)
    columns = "patient_id,name,diagnosis,zip"
    result = cli("decrypt", workspace.out, "--keyring", both, "--columns", columns, "--output", workspace.root / "all", "--quiet")
    assert result.code == 0, result.err
    table = pq.read_table(workspace.root / "all" / "data")
    expected = canary_table()
    for column in (*CANARIES, "age", "note"):
        assert table.column(column).to_pylist() == expected.column(column).to_pylist(), column
