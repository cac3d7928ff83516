from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
import pytest

from privprep.schemas.errors import DataError
from privprep.transforms import Generalize


def test_fixed_levels_are_the_same_in_every_batch() -> None:
    stage = Generalize(hierarchies={"d": {"date": ["month", "year"]}}, levels={"d": 2})
    first = stage.apply(pa.table({"d": pa.array([dt.date(2001, 2, 3)], pa.date32())}))
    second = stage.apply(pa.table({"d": pa.array([dt.date(2001, 9, 9), dt.date(1999, 1, 1)], pa.date32())}))
    assert first.column("d").to_pylist() == ["2001"] and second.column("d").to_pylist() == ["2001", "1999"]


def test_level_at_or_above_height_is_star_and_level_zero_is_text() -> None:
    stage = Generalize(hierarchies={"a": {"interval": {"widths": [10]}}, "b": {"mask": {}}}, levels={"a": 5, "b": 0})
    out = stage.apply(pd.DataFrame({"a": [3, 14], "b": ["xy", "z"]}, index=[7, 8]))
    assert out["a"].tolist() == ["*", "*"] and out["b"].tolist() == ["xy", "z"] and list(out.index) == [7, 8]


def test_values_missing_from_a_map_are_an_error() -> None:
    stage = Generalize(hierarchies={"s": {"map": {"F": ["*"]}}}, levels={"s": 1})
    with pytest.raises(DataError, match="column 's': 1 distinct value"):
        stage.apply(pa.table({"s": ["F", "secret"]}))
