"""``privprep decrypt`` and its Python API: a new run directory, atomic, streaming, exit codes."""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from privprep.pipeline.keys.decrypt import decrypt_run
from privprep.pipeline.keys.keyring import Keyring
from privprep.schemas.errors import KeyringError, UsageError
from privprep.transforms.protected import Protection
from tests.conftest import small_table

STAGES = [
    {"tokenize": {"columns": ["patient_id"], "domain": "patients"}},
    {"encrypt": {"columns": ["name", "age", "diagnosis"]}},
]


def assert_clean_failure(result, code: int, *needles: str) -> None:
    """One ``privprep: error:`` line holding every needle, the expected exit code, no traceback."""
    assert result.code == code, result.err
    lines = [line for line in result.err.splitlines() if line.startswith("privprep: error:")]
    assert len(lines) == 1 and "Traceback" not in result.err, result.err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def run(workspace, cli):
    config = workspace.config(stages=STAGES, io={"batch_rows": 3, "rows_per_file": 5})
    assert cli("run", config, "--quiet").code == 0
    return workspace


def test_cli_decrypts_columns_into_a_new_run_directory(run, cli) -> None:
    target = run.root / "clear"
    result = cli("decrypt", run.out, "--keyring", run.keyring, "--columns", "patient_id,age", "--output", target, "--quiet")
    assert result.code == 0, result.err
    files = sorted(p.name for p in (target / "data").iterdir())
    assert files == ["part-00000.parquet", "part-00001.parquet"]
    table = pq.read_table(target / "data")
    original = small_table()
    assert table.column("patient_id").to_pylist() == original.column("patient_id").to_pylist()
    assert table.schema.field("age").type == pa.int64()
    assert table.column("age").to_pylist() == original.column("age").to_pylist()
    assert table.schema.field("name").type == pa.binary()  # not asked for: still encrypted
    assert Protection.from_field(table.schema.field("name")) is not None
    report = json.loads((target / "report.json").read_text())
    assert report["kind"] == "decrypt" and report["status"] == "success" and report["output"]["rows"] == 8
    assert report["stages"][0]["columns"] == ["patient_id", "age"]
    ring = Keyring.load(run.keyring)
    assert set(report["keys_used"]) == {ring.resolve("tokenize", None).id, ring.resolve("encrypt", None).id}
    assert not any("privprep-tmp" in p.name for p in run.root.iterdir())


def test_default_output_and_overwrite(run, cli) -> None:
    assert cli("decrypt", run.out, "--keyring", run.keyring, "--columns", "name", "--quiet").code == 0
    default = run.root / "out-decrypted"
    assert (default / "report.json").is_file()
    again = cli("decrypt", run.out, "--keyring", run.keyring, "--columns", "name")
    assert_clean_failure(again, 2, "already exists")
    assert cli("decrypt", run.out, "--keyring", run.keyring, "--columns", "name", "--overwrite", "--quiet").code == 0


def test_python_api_streams_with_small_batches(run) -> None:
    result = decrypt_run(run.out, keyring=run.keyring, columns=["diagnosis", "name"], output=run.root / "api", batch_rows=2)
    table = pq.read_table(result.run_dir / "data")
    assert table.column("diagnosis").to_pylist() == small_table().column("diagnosis").to_pylist()
    assert table.column("name").to_pylist() == small_table().column("name").to_pylist()
    assert result.report["input"]["files"] == 2


def test_missing_key_is_a_clean_exit_2_and_writes_nothing(run, cli) -> None:
    other = run.root / "other.keyring"
    Keyring.create(other)
    key_id = Keyring.load(run.keyring).resolve("encrypt", None).id
    result = cli("decrypt", run.out, "--keyring", other, "--columns", "name", "--output", run.root / "x")
    assert_clean_failure(result, 2, "column 'name'", f"'{key_id}'")
    assert not (run.root / "x").exists()


def test_tampered_value_in_a_later_file_leaves_no_output(run, cli) -> None:
    part = run.out / "data" / "part-00001.parquet"
    table = pq.read_table(part)
    values = table.column("name").to_pylist()
    values[1] = values[1][:-1] + bytes([values[1][-1] ^ 1])
    index = table.schema.get_field_index("name")
    pq.write_table(table.set_column(index, table.schema.field("name"), pa.array(values, pa.binary())), part)
    result = cli("decrypt", run.out, "--keyring", run.keyring, "--columns", "name", "--output", run.root / "x")
    assert_clean_failure(result, 1, "part-00001.parquet", "column 'name'", "row 1", "fail authentication")
    assert not (run.root / "x").exists() and not any("privprep-tmp" in p.name for p in run.root.iterdir())


def test_usage_errors(run, cli) -> None:
    assert_clean_failure(cli("decrypt", run.out, "--keyring", run.keyring, "--columns", "ghost"), 2, "ghost")
    assert_clean_failure(cli("decrypt", run.out, "--keyring", run.keyring, "--columns", "diagnosis,diagnsis"), 2,
                         "not in run files: diagnsis (did you mean 'diagnosis'?)")
    assert_clean_failure(cli("decrypt", run.out, "--keyring", run.keyring, "--columns", "zip"), 2, "zip", "nothing to decrypt")
    assert_clean_failure(cli("decrypt", run.root, "--keyring", run.keyring, "--columns", "name"), 2, "not a privprep run")
    with pytest.raises(UsageError):
        decrypt_run(run.out, keyring=run.keyring, columns=[" "])
    with pytest.raises(KeyringError, match="not found"):
        decrypt_run(run.out, keyring=run.root / "nope.keyring", columns=["name"])


def test_output_inside_the_run_is_refused(run, cli) -> None:
    result = cli("decrypt", run.out, "--keyring", run.keyring, "--columns", "name", "--output", run.out / "sub")
    assert_clean_failure(result, 2, "inside the run")


def test_decrypted_run_can_itself_be_decrypted_further(run, cli) -> None:
    assert cli("decrypt", run.out, "--keyring", run.keyring, "--columns", "name", "--output", run.root / "a", "--quiet").code == 0
    assert cli("decrypt", run.root / "a", "--keyring", run.keyring, "--columns", "age", "--output", run.root / "b", "--quiet").code == 0
    table = pq.read_table(run.root / "b" / "data")
    assert table.column("age").to_pylist() == small_table().column("age").to_pylist()
    shutil.rmtree(run.root / "a")
