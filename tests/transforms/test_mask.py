from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from privprep.transforms import Mask


@pytest.mark.parametrize(
    ("value", "first", "last", "expected"),
    [
        ("555-123-4567", 0, 4, "********4567"),
        ("555-123-4567", 3, 0, "555*********"),
        ("alice@example.org", 1, 4, "a************.org"),
        ("abcd", 2, 2, "****"),  # not longer than what would be kept: masked whole
        ("abc", 2, 2, "***"),
        ("", 1, 1, ""),
        ("Zoë Müller", 1, 2, "Z*******er"),  # characters, not bytes
    ],
)
def test_mask_values(value: str, first: int, last: int, expected: str) -> None:
    out = Mask(columns=["v"], keep_first=first, keep_last=last).apply(pa.table({"v": [value]}))
    assert out.column("v")[0].as_py() == expected


def test_nulls_stay_null_and_numbers_become_text() -> None:
    out = Mask(columns=["v"], keep_last=2).apply(pa.table({"v": pa.array([12345, None], pa.int64())}))
    assert out.column("v").to_pylist() == ["***45", None]


def test_custom_char_and_pandas_index() -> None:
    frame = pd.DataFrame({"v": ["abcdef", "xyz"]}, index=["r1", "r2"])
    out = Mask(columns=["v"], keep_first=1, char="#").apply(frame)
    assert out.loc["r1", "v"] == "a#####" and out.loc["r2", "v"] == "x##"
    assert frame.loc["r1", "v"] == "abcdef"


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        Mask(columns=["v"], char="**")
    with pytest.raises(ValueError):
        Mask(columns=["v"], keep_first=-1)
