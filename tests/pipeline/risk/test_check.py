from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from privprep.schemas.keyring import SecretKey
from privprep.transforms import Encrypt, Tokenize
from tests.conftest import TEST_DATA, tree_digest

PYCANON = TEST_DATA / "pycanon"


def write(tmp_path: Path, frame: pd.DataFrame) -> Path:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


def test_check_json_shape_and_values(tmp_path: Path, cli) -> None:
    frame = pd.DataFrame({"zip": ["1", "1", "1", "2", "2", None], "sex": ["F"] * 6, "dx": ["a", "b", "a", "c", "c", "a"]})
    path = write(tmp_path, frame)
    before = tree_digest(path)
    result = cli("check", path, "--qi", "zip,sex", "--sensitive", "dx", "--json")
    assert result.code == 0
    out = json.loads(result.out)
    assert out["k"] == 1 and out["equivalence_classes"] == 3  # the missing zip is a class of its own
    assert out["risk"] == {"prosecutor_max": 1.0, "prosecutor_avg": 0.5, "sample_uniques": pytest.approx(1 / 6)}
    assert out["l_diversity"] == 1 and out["sensitive"]["dx"]["distinct_l"] == 1
    assert tree_digest(path) == before


def test_check_with_k_target_exits_1_when_not_met(tmp_path: Path, cli) -> None:
    path = write(tmp_path, pd.DataFrame({"zip": ["1", "1", "2"]}))
    failed = cli("check", path, "--qi", "zip", "--k", "2")
    assert failed.code == 1 and "fails (1 rows" in failed.out
    assert cli("check", path, "--qi", "zip", "--k", "1").code == 0


def test_check_unknown_column_is_a_usage_error(tmp_path: Path, cli) -> None:
    path = write(tmp_path, pd.DataFrame({"zip": ["1"]}))
    result = cli("check", path, "--qi", "zip,nope")
    assert result.code == 2 and "nope" in result.err and "Traceback" not in result.err
    typo = cli("check", path, "--qi", "zp")
    assert typo.code == 2 and "not in input" in typo.err and "zp (did you mean 'zip'?)" in typo.err


def test_pycanon_k5_table_is_5_anonymous(cli) -> None:
    qis = "Teacher,Gender,Ethnic,Freeredu,wesson"
    original = json.loads(cli("check", PYCANON / "StudentsMath_Score.csv", "--qi", qis, "--sensitive", "Score", "--json").out)
    released = json.loads(cli("check", PYCANON / "StudentsMath_Score_k5.csv", "--qi", qis, "--json").out)
    assert original["rows"] == 216 and released["k"] >= 5
    frame = pd.read_csv(PYCANON / "StudentsMath_Score.csv")
    assert original["k"] == frame.groupby(qis.split(","), dropna=False).size().min()
    assert original["equivalence_classes"] == frame.groupby(qis.split(","), dropna=False).ngroups


# -- encrypted and tokenized columns (issue 23) ---------------------------------------------------------------

ENC_KEY = SecretKey(id="enc-1", purpose="encrypt", material=bytes(range(32)))
TOK_KEY = SecretKey(id="tok-1", purpose="tokenize", material=bytes(range(64)))


def protected_table() -> tuple[pa.Table, pd.DataFrame]:
    """zip, a tokenized QI and an encrypted sensitive column, as a run writes them (field notes kept)."""
    plain = pd.DataFrame({"zip": ["1", "1", "1", "2", "2", "2", "2"], "nid": ["a", "a", "b", "c", "c", "c", None],
                          "dx": ["flu", "cold", "flu", "flu", "flu", "cold", "flu"]})
    table = pa.Table.from_pandas(plain, preserve_index=False)
    table = Tokenize(columns=["nid"], domain="nid", key=TOK_KEY).apply(table)
    return Encrypt(columns=["dx"], key=ENC_KEY).apply(table), plain


def test_check_refuses_encrypted_columns_and_says_what_to_measure(tmp_path: Path, cli) -> None:
    table, _ = protected_table()
    path = tmp_path / "run.parquet"
    pq.write_table(table, path)
    assert table.schema.field("dx").metadata  # the field note is there; the next file has none
    bare = tmp_path / "bare.parquet"  # e.g. a copy made by another tool: values only, no note
    pq.write_table(pa.table({n: pa.chunked_array(table.column(n).chunks, table.column(n).type) for n in table.column_names},
                            schema=pa.schema([pa.field(f.name, f.type) for f in table.schema])), bare)
    assert not pq.read_schema(bare).field("dx").metadata
    for source in (path, bare):
        as_sensitive = cli("check", source, "--qi", "zip", "--sensitive", "dx")
        assert as_sensitive.code == 2 and as_sensitive.out == "" and "Traceback" not in as_sensitive.err
        line, = as_sensitive.err.strip().splitlines()
        assert "--sensitive column 'dx' is encrypted" in line and "k and risk over the --qi without it" in line
        assert "privprep decrypt" in line and "distinct l" not in line
        as_qi = cli("check", source, "--qi", "zip,dx", "--json")
        assert as_qi.code == 2 and "--qi column 'dx' is encrypted" in as_qi.err and "other quasi-identifiers" in as_qi.err


def test_check_over_tokens_measures_the_original_classes_with_a_warning(tmp_path: Path, cli) -> None:
    table, plain = protected_table()
    path = tmp_path / "run.parquet"
    pq.write_table(table.drop_columns(["dx"]).append_column("dx", pa.array(plain["dx"])), path)
    result = cli("check", path, "--qi", "zip,nid", "--sensitive", "dx", "--json")
    assert result.code == 0, result.err
    out = json.loads(result.out)
    groups = plain.groupby(["zip", "nid"], dropna=False)
    assert out["k"] == groups.size().min() == 1 and out["equivalence_classes"] == groups.ngroups == 4
    assert out["l_diversity"] == groups["dx"].nunique().min() == 1
    assert "column 'nid' is tokenized" in out["warnings"][0] and "warning: column 'nid' is tokenized" in result.err
    as_sensitive = json.loads(cli("check", path, "--qi", "zip", "--sensitive", "nid", "--json").out)
    assert as_sensitive["l_diversity"] == plain.groupby("zip")["nid"].nunique(dropna=False).min() == 2
    assert as_sensitive["sensitive"]["nid"]["t_distance"] == "equal" and "equal distance" in as_sensitive["warnings"][0]


def test_check_measures_other_binary_columns_as_they_are(tmp_path: Path, cli) -> None:
    path = tmp_path / "b.parquet"
    pq.write_table(pa.table({"zip": ["1", "1", "2", "2"], "blob": [b"\x00\xff", b"\x00\xff", b"\x11", b"\x11\x05"]}), path)
    result = cli("check", path, "--qi", "zip,blob", "--json")
    assert result.code == 0 and json.loads(result.out)["k"] == 1 and "warnings" not in json.loads(result.out)


def test_check_reads_string_columns_as_dictionaries_with_the_same_result(tmp_path: Path) -> None:
    from privprep.pipeline.risk.check import measure

    frame = pd.DataFrame({"zip": ["1", "2", None, "1"] * 50 + ["3"], "dx": (["a", "b", "b", None] * 50) + ["c"]})
    path = tmp_path / "groups.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=64)  # a dictionary per row group
    result = measure(str(path), ["zip"], ["dx"], batch_rows=50)
    sizes = frame.fillna("<null>").groupby("zip").size()  # pandas as the reference
    assert result["k"] == int(sizes.min()) == 1 and result["equivalence_classes"] == len(sizes) == 4
    assert result["l_diversity"] == 1  # zip 3 holds only dx c
    # zip 1 holds a and null 50 each; the table: a 50, b 100, null 50, c 1 of 201
    q = {"a": 50 / 201, "b": 100 / 201, None: 50 / 201, "c": 1 / 201}
    emd = {"1": 0.5 * (abs(0.5 - q["a"]) + q["b"] + abs(0.5 - q[None]) + q["c"]),
           "2": 0.5 * (q["a"] + abs(1 - q["b"]) + q[None] + q["c"]),
           "3": 0.5 * (q["a"] + q["b"] + q[None] + abs(1 - q["c"]))}
    assert result["t_closeness"] == pytest.approx(max(emd.values()), abs=1e-12)
