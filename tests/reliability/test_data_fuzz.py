"""Data fuzzing (issue 16): truncated, zero-byte and corrupted Parquet, column types unlike the declared
roles, 0 rows, all-null columns, NaN/inf, 1 MB strings, mixed schemas across the files of a directory,
malformed CSV. Each either runs (exit 0) or fails with exit 1 or 2 and one line naming the file or the
column; never a traceback, nothing written, the input untouched, no cell value quoted."""

from __future__ import annotations

import copy
import io
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privprep.pipeline.keys.keyring import Keyring
from tests.conftest import small_table, tree_digest
from tests.reliability.support import assert_clean_failure, tally
from tests.reliability.test_config_fuzz import VALID

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
NAMES = list(VALID["columns"])
SECRET = "SECRET-CELL-"  # every string cell of a fuzzed file starts with it: an error line must never quote one


def _replace(table: pa.Table, name: str, array: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, array)


def _csv(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer)
    return buffer.getvalue()


T = small_table()
N = T.num_rows
GOOD_CSV = _csv(T)
HEADER = GOOD_CSV.split(b"\n")[0]
Files = list[tuple[str, "pa.Table | bytes"]]
CASES: dict[str, Files] = {
    # column types unlike the declared roles and stages
    "income as strings": [("a.parquet", _replace(T, "income", pa.array([f"{SECRET}{i}" for i in range(N)])))],
    "age as strings": [("a.parquet", _replace(T, "age", pa.array([f"{SECRET}{i}" for i in range(N)])))],
    "zip as integers": [("a.parquet", _replace(T, "zip", pa.array(range(N), pa.int64())))],
    "diagnosis as integers": [("a.parquet", _replace(T, "diagnosis", pa.array(range(N))))],
    "diagnosis as binary": [("a.parquet", _replace(T, "diagnosis", pa.array([b"\x00\xff"] * N)))],
    "income as a struct": [("a.parquet", _replace(T, "income", pa.array([{"a": 1}] * N)))],
    "zip as a list": [("a.parquet", _replace(T, "zip", pa.array([[SECRET]] * N)))],
    "zip as a map": [("a.parquet", _replace(T, "zip", pa.array([[(SECRET, 1)]] * N, pa.map_(pa.string(), pa.int64()))))],
    "patient_id as a list": [("a.parquet", _replace(T, "patient_id", pa.array([[SECRET]] * N)))],
    "diagnosis as a struct": [("a.parquet", _replace(T, "diagnosis", pa.array([{"a": SECRET}] * N)))],
    "age as timestamps": [("a.parquet", _replace(T, "age", pa.array(np.arange(N).astype("datetime64[s]"))))],
    "age as durations": [("a.parquet", _replace(T, "age", pa.array([1] * N, pa.duration("s"))))],
    "age as booleans": [("a.parquet", _replace(T, "age", pa.array([True] * N)))],
    "income as decimals": [("a.parquet", _replace(T, "income", pa.array([1] * N, pa.decimal128(10, 2))))],
    "income past 2**53 (uint64)": [("a.parquet", _replace(T, "income", pa.array([2**64 - 1] * N, pa.uint64())))],
    "age past 2**53": [("a.parquet", _replace(T, "age", pa.array([-(10**18)] * N)))],
    "zip dictionary-encoded": [("a.parquet", _replace(T, "zip", T["zip"].combine_chunks().dictionary_encode()))],
    "patient_id floats with NaN": [("a.parquet", _replace(T, "patient_id", pa.array([float("nan"), 1.0, -0.0, 0.0, float("inf"), 2.0, 3.0, None])))],
    # NaN, inf, nulls
    "age NaN and inf": [("a.parquet", _replace(T, "age", pa.array([float("nan"), float("inf"), -float("inf"), 1.0, 2.0, 1e308, -0.0, 3.5])))],
    "income NaN and inf": [("a.parquet", _replace(T, "income", pa.array([float("nan"), float("inf"), -float("inf"), 1.0, 2.0, 1e308, -0.0, 3.5])))],
    "income all null (int64)": [("a.parquet", _replace(T, "income", pa.array([None] * N, pa.int64())))],
    "income of type null": [("a.parquet", _replace(T, "income", pa.array([None] * N, pa.null())))],
    "zip of type null": [("a.parquet", _replace(T, "zip", pa.array([None] * N, pa.null())))],
    "patient_id of type null": [("a.parquet", _replace(T, "patient_id", pa.array([None] * N, pa.null())))],
    "diagnosis of type null": [("a.parquet", _replace(T, "diagnosis", pa.array([None] * N, pa.null())))],
    "every column null": [("a.parquet", pa.table({name: pa.array([None] * N, pa.null()) for name in T.column_names}))],
    "0 rows": [("a.parquet", T.slice(0, 0))],
    "0 rows and 8 rows": [("a.parquet", T.slice(0, 0)), ("b.parquet", T)],
    # 1 MB strings
    "1 MB identifiers and sensitive values": [("a.parquet", _replace(_replace(T, "patient_id", pa.array([SECRET + "p" * (1 << 20)] * N)),
                                                                      "diagnosis", pa.array([SECRET + "d" * (1 << 20)] * N)))],
    "1 MB quasi-identifier (mask hierarchy)": [("a.parquet", _replace(T, "zip", pa.array([SECRET + "z" * (1 << 20)] + ["10001"] * (N - 1))))],
    "control characters in values": [("a.parquet", _replace(T, "zip", pa.array(["\u202e\x00\n☃"] * N)))],
    # broken Parquet
    "zero-byte Parquet": [("a.parquet", b"")],
    "zero-byte second file": [("a.parquet", T), ("b.parquet", b"")],
    "magic bytes only": [("a.parquet", b"PAR1PAR1")],
    "garbage footer": [("a.parquet", b"PAR1" + bytes(range(100)) + b"\x10\x00\x00\x00PAR1")],
    "a CSV file named .parquet": [("a.parquet", GOOD_CSV)],
    # mixed schemas across the files of a directory
    "reordered columns": [("a.parquet", T), ("b.parquet", T.select(list(reversed(T.column_names))))],
    "a missing column": [("a.parquet", T), ("b.parquet", T.drop_columns(["income"]))],
    "an extra column": [("a.parquet", T), ("b.parquet", T.append_column("extra", pa.array([1] * N)))],
    "int and string": [("a.parquet", T), ("b.parquet", _replace(T, "age", pa.array([f"{SECRET}{i}" for i in range(N)])))],
    "int32 and int64": [("a.parquet", T), ("b.parquet", _replace(T, "age", pa.array(range(N), pa.int32())))],
    "int and float": [("a.parquet", T), ("b.parquet", _replace(T, "income", pa.array([1.5] * N)))],
    "string and null": [("a.parquet", T), ("b.parquet", _replace(T, "zip", pa.array([None] * N, pa.null())))],
    "string and dictionary": [("a.parquet", T), ("b.parquet", _replace(T, "zip", T["zip"].combine_chunks().dictionary_encode()))],
    "CSV and Parquet": [("a.csv", GOOD_CSV), ("b.parquet", T)],
    # malformed CSV
    "CSV unbalanced quote": [("a.csv", HEADER + f'\n"{SECRET},Ann,10001,31,flu,5\n'.encode())],
    "CSV ragged rows": [("a.csv", HEADER + f"\n{SECRET},Ann,10001\nP2,Bob,1,2,3,4,5,6,7\n".encode())],
    "CSV random bytes": [("a.csv", HEADER + b"\n" + bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8)))],
    "CSV with a NUL": [("a.csv", HEADER + b"\nP1,A\x00nn,10001,31,flu,5\n" * 4)],
    "CSV with a BOM": [("a.csv", b"\xef\xbb\xbf" + GOOD_CSV)],
    "CSV without a header": [("a.csv", f"{SECRET},Ann,10001,31,flu,5\n".encode())],
    "CSV with semicolons": [("a.csv", GOOD_CSV.replace(b",", b";"))],
    "CSV empty": [("a.csv", b"")],
    "CSV header only": [("a.csv", HEADER + b"\n")],
    "CSV repeated header name": [("a.csv", HEADER.replace(b'"age"', b'"zip"') + b"\n")],
    "CSV type changes after the first block": [("a.csv", HEADER + b"\n" + b"P1,Ann,10001,31,flu,5\n" * 70_000
                                                + f"P2,Bob,10002,{SECRET},flu,7\n".encode())],
    "CSV files with different headers": [("a.csv", GOOD_CSV), ("b.csv", GOOD_CSV.replace(b"income", b"salary"))],
    "CSV files with different types": [("a.csv", GOOD_CSV), ("b.csv", GOOD_CSV.replace(b",31,", f",{SECRET},".encode()))],
    "CSV files reordered": [("a.csv", GOOD_CSV), ("b.csv", _csv(T.select(list(reversed(T.column_names)))))],
    "CSV files, one missing a column": [("a.csv", GOOD_CSV), ("b.csv", _csv(T.drop_columns(["income"])))],
    "CSV with CRLF": [("a.csv", GOOD_CSV.replace(b"\n", b"\r\n"))],
    "CSV in Latin-1": [("a.csv", GOOD_CSV.replace("Zoë".encode(), "Zoë".encode("latin-1")))],
}


@pytest.fixture
def ring(tmp_path: Path) -> Path:
    path = tmp_path / "template.keyring"
    Keyring.create(path)
    return path


def run_on_files(cli, tmp_path: Path, ring: Path, files: Files, *, config: dict[str, Any] | None = None) -> Any:
    """Write ``files`` into a fresh input folder, run VALID's pipeline over it, check the outcome."""
    box = Path(tempfile.mkdtemp(dir=tmp_path))
    try:
        (box / "keys").mkdir()
        shutil.copy(ring, box / "keys" / "test.keyring")
        (box / "in").mkdir()
        for name, content in files:
            if isinstance(content, bytes):
                (box / "in" / name).write_bytes(content)
            else:
                pq.write_table(content, box / "in" / name)
        document = copy.deepcopy(config or VALID)
        document["input"] = "in"
        (box / "pipeline.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
        before = tree_digest(box / "in")
        result = cli("run", box / "pipeline.yaml", "--quiet")
        tally("data", "ran (exit 0)" if result.code == 0 else f"clear error (exit {result.code})")
        assert tree_digest(box / "in") == before, "the input was modified"
        assert [p.name for p in box.iterdir() if "privprep-" in p.name] == []
        if result.code:
            line = assert_clean_failure(result, (1, 2))
            assert SECRET not in result.err, "an error quotes a cell value"
            assert not (box / "out").exists()
            named = [str(box / "in"), *(f"'{n}'" for n in NAMES), "stages[", "k_anonymity"]
            assert any(n in line for n in named), f"the error names no file, column or stage: {line}"
        else:
            assert (box / "out" / "report.json").is_file()
            assert not any(SECRET.encode() in p.read_bytes() for p in (box / "out").rglob("*") if p.is_file()
                           and p.suffix != ".parquet")
        return result
    finally:
        shutil.rmtree(box, ignore_errors=True)


EXPECTED_EXIT = {  # the cases whose outcome is specific
    "zero-byte Parquet": 2, "magic bytes only": 2, "garbage footer": 2, "a CSV file named .parquet": 2,
    "reordered columns": 2, "a missing column": 2, "an extra column": 2, "int and string": 2, "CSV and Parquet": 2,
    "CSV unbalanced quote": 2, "CSV ragged rows": 2, "CSV repeated header name": 2, "CSV files with different headers": 2,
    "CSV files, one missing a column": 2, "CSV files reordered": 2, "CSV type changes after the first block": 2,
    "zip as a list": 1, "zip as a map": 1, "patient_id as a list": 1, "diagnosis as a struct": 1,
    "1 MB quasi-identifier (mask hierarchy)": 1, "CSV without a header": 1,
    "0 rows": 0, "0 rows and 8 rows": 0, "int32 and int64": 0, "income past 2**53 (uint64)": 0, "age past 2**53": 0,
    "income NaN and inf": 0, "income all null (int64)": 0, "1 MB identifiers and sensitive values": 0,
}
BIG_BATCHES = {**VALID, "io": {"batch_rows": 65_536}}  # for the 70,000-row case


@pytest.mark.parametrize("case", list(CASES))
def test_bad_data_fails_cleanly_or_runs(cli, tmp_path, ring, case) -> None:
    config = BIG_BATCHES if case == "CSV type changes after the first block" else None
    result = run_on_files(cli, tmp_path, ring, CASES[case], config=config)
    if case in EXPECTED_EXIT:
        assert result.code == EXPECTED_EXIT[case], result.err
    if case == "CSV type changes after the first block":  # the column number of Arrow's message becomes its name
        assert "column 'age'" in result.err


# -- hypothesis: random tables and damaged files ------------------------------------------------------

TYPES = ["string", "large_string", "int64", "int32", "float64", "bool", "null", "binary", "dictionary", "timestamp",
         "date32", "decimal", "list"]


@st.composite
def column(draw: Any, rows: int) -> pa.Array:
    kind = draw(st.sampled_from(TYPES))
    nulls = draw(st.lists(st.booleans(), min_size=rows, max_size=rows))
    if kind == "null":
        return pa.array([None] * rows, pa.null())
    if kind in ("string", "large_string", "dictionary", "binary", "list"):
        texts = [None if n else SECRET + draw(st.text(max_size=8)) for n in nulls]
        if kind == "binary":
            return pa.array([None if t is None else t.encode("utf-8", "surrogatepass") for t in texts], pa.binary())
        if kind == "list":
            return pa.array([None if t is None else [t] for t in texts])
        array = pa.array(texts, pa.large_string() if kind == "large_string" else pa.string())
        return array.dictionary_encode() if kind == "dictionary" else array
    if kind == "float64":
        values = draw(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=rows, max_size=rows))
        return pa.array([None if n else v for n, v in zip(nulls, values)], pa.float64())
    if kind == "bool":
        return pa.array([None if n else bool(i % 2) for i, n in enumerate(nulls)])
    values = draw(st.lists(st.integers(-(2**62), 2**62), min_size=rows, max_size=rows))
    values = [None if n else v for n, v in zip(nulls, values)]
    if kind == "int32":
        return pa.array([None if v is None else v % (2**31) for v in values], pa.int32())
    if kind == "timestamp":
        return pa.array([None if v is None else v % (2**40) for v in values], pa.timestamp("s"))
    if kind == "date32":
        return pa.array([None if v is None else v % 50_000 for v in values], pa.date32())
    if kind == "decimal":
        return pa.array([None if v is None else v % 10**6 for v in values], pa.int64()).cast(pa.decimal128(24, 2))
    return pa.array(values, pa.int64())


@st.composite
def table(draw: Any) -> pa.Table:
    rows = draw(st.integers(0, 12))
    return pa.table({name: draw(column(rows)) for name in NAMES})


@SETTINGS
@given(data=table())
def test_random_tables_fail_cleanly_or_run(cli, tmp_path, ring, data) -> None:
    run_on_files(cli, tmp_path, ring, [("a.parquet", data)])


@SETTINGS
@given(data=st.data())
def test_truncated_and_flipped_parquet_fails_cleanly_or_runs(cli, tmp_path, ring, data) -> None:
    buffer = io.BytesIO()
    pq.write_table(T, buffer, compression=data.draw(st.sampled_from(["none", "zstd", "snappy"]), label="compression"),
                   row_group_size=3)
    raw = bytearray(buffer.getvalue())
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[: data.draw(st.integers(0, len(raw) - 1), label="length")]
    else:
        for _ in range(data.draw(st.integers(1, 8), label="flips")):
            raw[data.draw(st.integers(0, len(raw) - 1), label="at")] ^= data.draw(st.integers(1, 255), label="xor")
    run_on_files(cli, tmp_path, ring, [("a.parquet", T), ("b.parquet", bytes(raw))])


@settings(SETTINGS, max_examples=20)
@given(data=st.data())
def test_damaged_csv_fails_cleanly_or_runs(cli, tmp_path, ring, data) -> None:
    raw = bytearray(GOOD_CSV.replace(b"P1", SECRET.encode()))
    for _ in range(data.draw(st.integers(1, 6), label="edits")):
        at = data.draw(st.integers(0, len(raw) - 1), label="at")
        raw[at:at + 1] = data.draw(st.sampled_from([b"", b'"', b",", b"\n", b"\x00", b"\xff", b";", b'""', b"\r"]), label="byte")
    run_on_files(cli, tmp_path, ring, [("a.csv", bytes(raw))])


CHECK_CASES = ["zip as a list", "zip as a map", "zero-byte Parquet", "0 rows", "age NaN and inf", "zip of type null",
               "CSV repeated header name", "CSV unbalanced quote", "CSV files with different headers", "reordered columns",
               "1 MB quasi-identifier (mask hierarchy)"]


@pytest.mark.parametrize("case", CHECK_CASES)
def test_check_over_bad_data_fails_cleanly_or_measures(cli, tmp_path, case) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name, content in CASES[case]:
        if isinstance(content, bytes):
            (folder / name).write_bytes(content)
        else:
            pq.write_table(content, folder / name)
    before = tree_digest(folder)
    result = cli("check", folder, "--qi", "zip,age", "--sensitive", "diagnosis", "--k", "2", "--json")
    tally("check", "measured (exit 0/1)" if result.code in (0, 1) and not result.err else f"clear error (exit {result.code})")
    if result.err:
        assert_clean_failure(result, (1, 2))
    else:
        assert result.code in (0, 1) and "k" in json.loads(result.out)
    assert SECRET not in result.out + result.err
    assert tree_digest(folder) == before
