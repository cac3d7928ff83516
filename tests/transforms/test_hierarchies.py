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


def test_a_band_ends_at_top_where_top_coding_begins(tmp_path) -> None:
    """Issue 23 / SPEC §5: values >= top are coded '>=90', so the band below top must not read [78, 98)."""
    spec = {"interval": {"widths": [5, 10, 20], "bottom": 18, "top": 90}}
    h = build_hierarchy(spec, "age", pa.array([17, 18, 79, 85, 89, 90, 97, None]))
    assert h.level(1).to_pylist() == ["<18", "[18, 23)", "[78, 83)", "[83, 88)", "[88, 90)", ">=90", ">=90", None]
    assert h.level(2).to_pylist() == ["<18", "[18, 28)", "[78, 88)", "[78, 88)", "[88, 90)", ">=90", ">=90", None]
    assert h.level(3).to_pylist() == ["<18", "[18, 38)", "[78, 90)", "[78, 90)", "[78, 90)", ">=90", ">=90", None]
    assert h.level(4).to_pylist() == ["*"] * 8
    path = tmp_path / "age.csv"  # still ARX's format, and read back the same
    write_arx_csv(h, path)
    assert path.read_text().splitlines()[4] == "89;[88, 90);[88, 90);[78, 90);*"
    assert build_hierarchy({"csv": str(path)}, "age", pa.array([17, 18, 79, 85, 89, 90, 97])).levels[2].to_pylist() == h.level(3).to_pylist()[:7]


DOCUMENTED = [Path(__file__).resolve().parents[2] / name for name in ("README.md", "docs/k_anonymity.md")]


@pytest.mark.parametrize("doc", DOCUMENTED, ids=lambda p: p.name)
def test_the_documented_examples_are_what_the_builders_make(doc: Path) -> None:
    """Issue 23: the README showed ZIP masking ending in '*' where the output read '*****'."""
    text = doc.read_text()
    zip_line = next(line for line in text.splitlines() if "zip: {mask:" in line and "81667 →" in line)
    shown = [part.strip() for part in zip_line.split("# ", 1)[1].split("→")]
    h = build_hierarchy({"mask": {"char": "*"}}, "zip", pa.array(["81667"]))
    assert shown == ["81667", *(h.level(i).to_pylist()[0] for i in range(1, h.height + 1))]
    age_line = next(line for line in text.splitlines() if "age: {interval:" in line and "87 →" in line)
    chain, _, coded = age_line.split("# ", 1)[1].partition(";")
    spec = {"interval": {"widths": [5, 10, 20], "bottom": 18, "top": 90}}
    assert "widths: [5, 10, 20], bottom: 18, top: 90" in age_line
    h = build_hierarchy(spec, "age", pa.array([87, 95]))
    assert [part.strip() for part in chain.split("→")] == ["87", *(h.level(i).to_pylist()[0] for i in range(1, h.height + 1))]
    assert coded.strip() == f"95 → {h.level(1).to_pylist()[1]}"
