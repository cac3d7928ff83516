"""Crypto misuse (issue 16), through ``privprep decrypt`` on a whole run directory: flipped bytes in
ciphertexts and tokens anywhere, ciphertexts swapped between columns, moved between the files of
recipient mode, a token put where a ciphertext belongs, a tampered sealed data key, wrong, rotated
and substituted keyrings. Each is refused with one line naming the column (and the key id where the
value names one), exit 1 or 2, nothing written; never garbage output. Transform-level checks of the
same properties are in tests/transforms/test_encrypt.py and test_tokenize.py; the recipient producer
read-back in tests/pipeline/keys/test_encryption_security.py."""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privprep.pipeline.keys.keyring import Keyring
from tests.conftest import small_table
from tests.reliability.support import assert_clean_failure, tally

ENCRYPTED = ["patient_id", "name", "diagnosis"]  # tokenized, encrypted, encrypted


@pytest.fixture
def sealed(workspace, cli):
    analyst = workspace.root / "analyst" / "analyst.keyring"
    assert cli("keys", "new", "--out", analyst, "--purpose", "recipient", "--id", "analyst-1").code == 0
    config = workspace.config(
        stages=[
            {"tokenize": {"columns": ["patient_id"], "domain": "patients"}},
            {"encrypt": {"columns": ["name", "diagnosis"]}},
            {"encrypt": {"columns": ["zip"], "recipient": str(analyst.parent / "analyst-1.pub")}},
        ],
        io={"rows_per_file": 4, "batch_rows": 4},
    )
    assert cli("run", config, "--quiet").code == 0
    ring = Keyring.load(workspace.keyring)
    ids = {"encrypt": ring.resolve("encrypt", None).id, "tokenize": ring.resolve("tokenize", None).id}
    pristine = workspace.root / "pristine"
    shutil.copytree(workspace.out, pristine)
    return workspace, analyst, ids, pristine


def rewrite(part: Path, column: str, values: list) -> None:
    table = pq.read_table(part)
    metadata = table.schema.metadata
    index = table.schema.get_field_index(column)
    table = table.set_column(index, table.schema.field(column), pa.array(values, pa.binary()))
    pq.write_table(table.replace_schema_metadata(metadata), part)


def refused(cli, run_dir: Path, keyring: Path, columns: str, target: Path, *needles: str) -> str:
    result = cli("decrypt", run_dir, "--keyring", keyring, "--columns", columns, "--output", target)
    line = assert_clean_failure(result, (1, 2), *needles)
    assert not target.exists() and not any("privprep-tmp" in p.name for p in target.parent.iterdir())
    tally("crypto", f"misuse refused (exit {result.code})")
    return line


def restore(sealed_run) -> None:
    workspace, _, _, pristine = sealed_run
    shutil.rmtree(workspace.out)
    shutil.copytree(pristine, workspace.out)


def test_the_untouched_run_decrypts_to_the_input(sealed, cli) -> None:
    workspace, analyst, _, _ = sealed
    assert cli("decrypt", workspace.out, "--keyring", workspace.keyring, "--columns", ",".join(ENCRYPTED),
               "--output", workspace.root / "clear", "--quiet").code == 0
    table = pq.read_table(workspace.root / "clear" / "data")
    for column in ENCRYPTED:
        assert table.column(column).to_pylist() == small_table().column(column).to_pylist()
    assert cli("decrypt", workspace.out, "--keyring", analyst, "--columns", "zip", "--output", workspace.root / "z",
               "--quiet").code == 0
    assert pq.read_table(workspace.root / "z" / "data").column("zip").to_pylist() == small_table().column("zip").to_pylist()


@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(column=st.sampled_from(ENCRYPTED + ["zip"]), part=st.integers(0, 1), row=st.integers(0, 3),
       at=st.integers(0, 10_000), xor=st.integers(1, 255))
def test_a_flipped_byte_anywhere_in_a_value_is_refused(sealed, cli, column, part, row, at, xor) -> None:
    workspace, analyst, ids, _ = sealed
    try:
        path = workspace.out / "data" / f"part-0000{part}.parquet"
        values = pq.read_table(path).column(column).to_pylist()
        if values[row] is None:
            return
        value = bytearray(values[row])
        value[at % len(value)] ^= xor
        values[row] = bytes(value)
        rewrite(path, column, values)
        keyring = analyst if column == "zip" else workspace.keyring
        line = refused(cli, workspace.out, keyring, column, workspace.root / "x", f"column '{column}'", f"part-0000{part}")
        if "authentication" in line:  # the header was intact: the message names the key it tried
            assert "under key '" in line
    finally:
        restore(sealed)


def test_ciphertexts_swapped_between_columns_are_refused(sealed, cli) -> None:
    workspace, _, ids, _ = sealed
    path = workspace.out / "data" / "part-00000.parquet"
    table = pq.read_table(path)
    name, diagnosis = table.column("name").to_pylist(), table.column("diagnosis").to_pylist()
    rewrite(path, "name", diagnosis)
    refused(cli, workspace.out, workspace.keyring, "name", workspace.root / "x", "column 'name'", f"'{ids['encrypt']}'",
            "fail authentication")
    rewrite(path, "name", name[:3] + diagnosis[3:])  # one row only
    refused(cli, workspace.out, workspace.keyring, "name", workspace.root / "x", "column 'name'", "first at row 3")


def test_a_token_in_a_ciphertext_column_and_back_is_refused(sealed, cli) -> None:
    workspace, _, _, _ = sealed
    path = workspace.out / "data" / "part-00000.parquet"
    table = pq.read_table(path)
    tokens, names = table.column("patient_id").to_pylist(), table.column("name").to_pylist()
    rewrite(path, "name", tokens)
    refused(cli, workspace.out, workspace.keyring, "name", workspace.root / "x", "column 'name'")
    rewrite(path, "name", names)
    rewrite(path, "patient_id", names)
    refused(cli, workspace.out, workspace.keyring, "patient_id", workspace.root / "x", "column 'patient_id'")


def test_recipient_values_moved_between_files_are_refused(sealed, cli) -> None:
    workspace, analyst, _, _ = sealed
    first, second = (workspace.out / "data" / f"part-0000{i}.parquet" for i in (0, 1))
    moved = pq.read_table(first).column("zip").to_pylist()
    rewrite(second, "zip", moved)  # values sealed under part 0's data key, in part 1
    refused(cli, workspace.out, analyst, "zip", workspace.root / "x", "column 'zip'", "'analyst-1'", "part-00001")


def test_a_tampered_sealed_data_key_is_refused(sealed, cli) -> None:
    workspace, analyst, _, _ = sealed
    path = workspace.out / "data" / "part-00000.parquet"
    table = pq.read_table(path)
    metadata = dict(table.schema.metadata)
    keys = [k for k in metadata if b"zip" in k or b"recipient" in k.lower() or b"sealed" in k.lower()]
    assert keys, list(metadata)
    for key in keys:
        raw = bytearray(metadata[key])
        raw[len(raw) // 2] ^= 0x01
        metadata[key] = bytes(raw)
    pq.write_table(table.replace_schema_metadata(metadata), path)
    refused(cli, workspace.out, analyst, "zip", workspace.root / "x", "column 'zip'")


def test_wrong_rotated_and_substituted_keyrings_are_refused(sealed, cli) -> None:
    workspace, analyst, ids, _ = sealed
    other = workspace.root / "other.keyring"
    Keyring.create(other)
    for column, purpose in (("name", "encrypt"), ("patient_id", "tokenize")):
        refused(cli, workspace.out, other, column, workspace.root / "x", f"column '{column}'", f"'{ids[purpose]}'")
    # rotated: new primary keys; the old ones stay and still decrypt ...
    rotated = workspace.root / "rotated.keyring"
    shutil.copy(workspace.keyring, rotated)
    os.chmod(rotated, 0o600)
    for purpose in ("encrypt", "tokenize"):
        assert cli("keys", "rotate", rotated, "--purpose", purpose).code == 0
    assert cli("decrypt", workspace.out, "--keyring", rotated, "--columns", "name,patient_id", "--output",
               workspace.root / "ok", "--quiet").code == 0
    # ... and a keyring from which the old keys were removed names the key the values need
    document = json.loads(rotated.read_text())
    document["keys"] = [k for k in document["keys"] if k["id"] not in ids.values()]
    rotated.write_text(json.dumps(document))
    for column, purpose in (("name", "encrypt"), ("patient_id", "tokenize")):
        refused(cli, workspace.out, rotated, column, workspace.root / "x", f"column '{column}'", f"'{ids[purpose]}'")
    # the same key ids with other material: authentication fails, never garbage
    substituted = workspace.root / "substituted.keyring"
    document = json.loads(workspace.keyring.read_text())
    for entry in document["keys"]:
        entry["material"] = base64.b64encode(os.urandom(len(base64.b64decode(entry["material"])))).decode()
    substituted.write_text(json.dumps(document))
    os.chmod(substituted, 0o600)
    refused(cli, workspace.out, substituted, "name", workspace.root / "x", "column 'name'", f"'{ids['encrypt']}'", "authentication")
    refused(cli, workspace.out, substituted, "patient_id", workspace.root / "x", "column 'patient_id'", f"'{ids['tokenize']}'")
    # the producer's keyring for recipient values, and the analyst's for symmetric ones
    refused(cli, workspace.out, workspace.keyring, "zip", workspace.root / "x", "column 'zip'", "'analyst-1'")
    refused(cli, workspace.out, analyst, "name", workspace.root / "x", "column 'name'", f"'{ids['encrypt']}'")


def _damage(run_dir: Path, how: str) -> None:
    part = run_dir / "data" / "part-00000.parquet"
    if how == "report.json not JSON":
        (run_dir / "report.json").write_text("{{{")
    elif how == "report.json a list":
        (run_dir / "report.json").write_text("[1, 2]")
    elif how == "zero-byte part":
        part.write_bytes(b"")
    elif how == "truncated part":
        part.write_bytes(part.read_bytes()[:300])
    elif how == "a foreign part":
        pq.write_table(small_table(), run_dir / "data" / "part-00009.parquet")
    elif how in ("privprep note damaged", "privprep note names another type"):
        from privprep.transforms.protected import FIELD_KEY

        table = pq.read_table(part)
        index = table.schema.get_field_index("name")
        field = table.schema.field(index)
        note = json.loads(field.metadata[FIELD_KEY])
        if how == "privprep note damaged":
            text = b"{not json"
        else:
            note["arrow_type"] = base64.b64encode(pa.schema([pa.field("x", pa.int64())]).serialize().to_pybytes()).decode()
            text = json.dumps(note).encode()
        field = field.with_metadata({**field.metadata, FIELD_KEY: text})
        schema = table.schema.set(index, field)
        pq.write_table(pa.Table.from_arrays(table.columns, schema=schema), part)


@pytest.mark.parametrize("how", ["report.json not JSON", "report.json a list", "zero-byte part", "truncated part",
                                 "a foreign part", "privprep note damaged", "privprep note names another type"])
@pytest.mark.report_unchecked  # the damaged report.json is the point
def test_decrypting_a_damaged_run_directory_fails_cleanly(sealed, cli, how) -> None:
    workspace, _, _, _ = sealed
    _damage(workspace.out, how)
    result = cli("decrypt", workspace.out, "--keyring", workspace.keyring, "--columns", "name,patient_id",
                 "--output", workspace.root / "x")
    tally("crypto", "damaged run decrypted (exit 0)" if result.code == 0 else f"damaged run refused (exit {result.code})")
    if result.code == 0:  # only the report was damaged: the values are still authenticated
        assert how.startswith("report.json")
        table = pq.read_table(workspace.root / "x" / "data")
        assert table.column("name").to_pylist() == small_table().column("name").to_pylist()
    else:
        assert_clean_failure(result, (1, 2))
        assert not (workspace.root / "x").exists()


@pytest.mark.parametrize("case", ["repeated key id", "nested too deeply"])
def test_a_keyring_that_is_ambiguous_or_hostile_is_refused(workspace, cli, case) -> None:
    """Found by this suite: a repeated key id was accepted (which material a ciphertext naming it gets
    was up to list order), and deep nesting was a RecursionError (exit 70)."""
    document = json.loads(workspace.keyring.read_text())
    if case == "repeated key id":
        twin = {**document["keys"][0], "material": base64.b64encode(os.urandom(32)).decode()}
        text = json.dumps({**document, "keys": document["keys"] + [twin]})
    else:
        text = '{"version": 1, "keys": [], "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    workspace.keyring.write_text(text)
    result = cli("run", workspace.config())
    assert_clean_failure(result, (2,), str(workspace.keyring))
    assert not workspace.out.exists()
