from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

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


def test_pycanon_k5_table_is_5_anonymous(cli) -> None:
    qis = "Teacher,Gender,Ethnic,Freeredu,wesson"
    original = json.loads(cli("check", PYCANON / "StudentsMath_Score.csv", "--qi", qis, "--sensitive", "Score", "--json").out)
    released = json.loads(cli("check", PYCANON / "StudentsMath_Score_k5.csv", "--qi", qis, "--json").out)
    assert original["rows"] == 216 and released["k"] >= 5
    frame = pd.read_csv(PYCANON / "StudentsMath_Score.csv")
    assert original["k"] == frame.groupby(qis.split(","), dropna=False).size().min()
    assert original["equivalence_classes"] == frame.groupby(qis.split(","), dropna=False).ngroups
