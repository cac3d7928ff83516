"""Remove columns.

>>> import pandas as pd
>>> Drop(columns=["name"]).apply(pd.DataFrame({"id": [1], "name": ["x"]})).columns.tolist()
['id']
"""

from __future__ import annotations

from typing import Any, ClassVar

import pyarrow as pa

from privprep.schemas.stages import DropParams

from .base import MapStage, StageContext
from .registry import register


@register
class Drop(MapStage):
    """Remove ``columns`` from the output."""

    name: ClassVar[str] = "drop"
    Params = DropParams

    def __init__(self, *, columns: list[str]) -> None:
        if not columns:
            raise ValueError("drop needs at least one column")
        self.columns = list(columns)

    @classmethod
    def from_config(cls, params: DropParams, *, context: StageContext) -> "Drop":
        return cls(columns=params.columns)

    def input_columns(self) -> list[str]:
        return list(self.columns)

    def output_schema(self, schema: pa.Schema) -> pa.Schema:
        self._require(schema, self.columns)
        return pa.schema([f for f in schema if f.name not in self.columns], metadata=schema.metadata)

    def report(self) -> dict[str, Any]:
        return {"columns": list(self.columns)}

    def transform(self, table: pa.Table) -> pa.Table:
        self._require(table.schema, self.columns)
        return table.drop_columns(self.columns)
