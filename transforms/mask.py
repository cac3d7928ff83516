"""Partial masking: keep a few leading and trailing characters, replace the rest.

A value not longer than ``keep_first + keep_last`` is masked entirely, so no value is ever revealed
whole; the masked value keeps the original length; nulls stay null.

>>> import pandas as pd
>>> Mask(columns=["phone"], keep_last=4).apply(pd.Series(["555-123-4567", "12"], name="phone")).tolist()
['********4567', '**']
"""

from __future__ import annotations

from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from privprep.schemas.stages import MaskParams

from .base import StageContext
from .column_stage import ColumnStage
from .columns import as_text_or_binary
from .registry import register


@register
class Mask(ColumnStage):
    """Replace all but ``keep_first`` leading and ``keep_last`` trailing characters with ``char``."""

    name: ClassVar[str] = "mask"
    Params = MaskParams

    def __init__(
        self, *, columns: list[str] | None = None, keep_first: int = 0, keep_last: int = 0, char: str = "*"
    ) -> None:
        if keep_first < 0 or keep_last < 0:
            raise ValueError("keep_first and keep_last must be 0 or more")
        if len(char) != 1:
            raise ValueError("char must be a single character")
        self.columns = list(columns) if columns else None
        self.keep_first, self.keep_last, self.char = keep_first, keep_last, char

    @classmethod
    def from_config(cls, params: MaskParams, *, context: StageContext) -> "Mask":
        return cls(columns=params.columns, keep_first=params.keep_first, keep_last=params.keep_last, char=params.char)

    def report(self) -> dict[str, Any]:
        return {"columns": self.input_columns(), "keep_first": self.keep_first, "keep_last": self.keep_last}

    def output_field(self, column: str, kind: pa.DataType) -> pa.Field:
        return pa.field(column, pa.string())

    def transform_column(self, values: pa.ChunkedArray, column: str) -> pa.Array:
        text = as_text_or_binary(values.combine_chunks(), column)
        if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
            text = text.cast(pa.string())
        length = pc.utf8_length(text)
        short = pc.less_equal(length, self.keep_first + self.keep_last)
        empty = pa.scalar("", text.type)
        first = pc.if_else(short, empty, pc.utf8_slice_codeunits(text, 0, self.keep_first))
        last = empty if self.keep_last == 0 else pc.utf8_slice_codeunits(text, -self.keep_last)
        last = pc.if_else(short, empty, last)
        hidden = pc.if_else(short, length, pc.subtract(length, self.keep_first + self.keep_last))
        stars = pc.binary_repeat(pa.scalar(self.char, text.type), hidden)
        return pc.binary_join_element_wise(first, stars, last, empty).cast(pa.string())
