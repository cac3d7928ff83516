from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.compute as pc
import pytest

from privprep.schemas.errors import ConfigError, DataError
from privprep.transforms.hierarchies import build_hierarchy, read_arx_csv, write_arx_csv
from tests.conftest import TEST_DATA

ADULT = TEST_DATA / "adult"
# levels per column counting level 0, from the data's README
ADULT_LEVELS = {"sex": 2, "age": 5, "race": 2, "marital-status": 3, "education": 4, "native-country": 3,
                "workclass": 3, "occupation": 3, "salary-class": 2}


def adult() -> pa.Table:
    return pacsv.read_csv(ADULT / "adult.csv.gz", parse_options=pacsv.ParseOptions(delimiter=";"))


@pytest.mark.parametrize("column", list(ADULT_LEVELS))
def test_arx_adult_hierarchies_load_unchanged(column: str) -> None:
    values = pc.unique(adult().column(column))
    hierarchy = build_hierarchy({"csv": str(ADULT / f"adult_hierarchy_{column}.csv")}, column, values)
    assert hierarchy.height + 1 == ADULT_LEVELS[column]
    assert set(hierarchy.level(hierarchy.height).to_pylist()) == {"*"}


def test_arx_round_trip(tmp_path: Path) -> None:
    source = ADULT / "adult_hierarchy_education.csv"
    values = pa.array(list(read_arx_csv(source)))
    hierarchy = build_hierarchy({"csv": str(source)}, "education", values)
    write_arx_csv(hierarchy, tmp_path / "edu.csv")
    assert read_arx_csv(tmp_path / "edu.csv") == read_arx_csv(source)
    assert sorted((tmp_path / "edu.csv").read_text().splitlines()) == sorted(source.read_text().splitlines())


def test_missing_values_in_hierarchy_name_column_and_count_not_values(tmp_path: Path) -> None:
    path = tmp_path / "sex.csv"
    path.write_text("F;*\nM;*\n")
    with pytest.raises(DataError) as err:
        build_hierarchy({"csv": str(path)}, "sex", pa.array(["F", "X-secret", "Y-secret", None]))
    assert "column 'sex': 2 distinct value(s)" in str(err.value) and "secret" not in str(err.value)


def test_inconsistent_levels_and_ragged_files(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("a;x;*\nb;x;*\nc;y;*\nd;y;z\n")
    with pytest.raises(ConfigError, match="maps to several"):
        build_hierarchy({"csv": str(path)}, "v", pa.array(["a", "b", "c", "d"]))
    path.write_text("a;x;*\nb;*\n")
    with pytest.raises(ConfigError, match="line 2"):
        read_arx_csv(path)
    with pytest.raises(ConfigError, match="not found"):
        read_arx_csv(tmp_path / "nope.csv")


def test_interval_with_bottom_and_top_coding() -> None:
    h = build_hierarchy({"interval": {"widths": [5, 10], "bottom": 20, "top": 60}}, "age", pa.array([17, 20, 24, 25, 59, 60, 99, None]))
    assert h.level(1).to_pylist() == ["<20", "[20, 25)", "[20, 25)", "[25, 30)", "[55, 60)", ">=60", ">=60", None]
    assert h.level(2).to_pylist() == ["<20", "[20, 30)", "[20, 30)", "[20, 30)", "[50, 60)", ">=60", ">=60", None]
    assert h.level(3).to_pylist() == ["*"] * 8 and h.height == 3


def test_date_levels() -> None:
    values = pa.array([dt.date(1987, 5, 3), dt.date(1994, 12, 31), None], pa.date32())
    h = build_hierarchy({"date": ["month", "quarter", "year", "5y", "10y"]}, "d", values)
    assert [h.level(i).to_pylist()[0] for i in range(1, 7)] == ["1987-05", "1987-Q2", "1987", "1985-1989", "1980-1989", "*"]
    assert h.level(2).to_pylist()[1] == "1994-Q4" and h.level(3).to_pylist()[2] is None


def test_mask_levels_and_explicit_count() -> None:
    h = build_hierarchy({"mask": {"char": "#", "levels": 2}}, "zip", pa.array(["81667", "81675"]))
    assert [h.level(i).to_pylist() for i in (1, 2, 3)] == [["8166#", "8167#"], ["816##", "816##"], ["*", "*"]]


def test_integer_column_with_text_hierarchy_and_inline_map() -> None:
    h = build_hierarchy({"map": {"1": ["low", "*"], "2": ["low", "*"], "9": ["high", "*"]}}, "grade", pa.array([1, 2, 9]))
    assert h.level(1).to_pylist() == ["low", "low", "high"] and h.height == 2
