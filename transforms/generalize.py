"""Fixed generalization: each column to a given level of its hierarchy, batch by batch (a map stage).

Use it when the levels are already decided (a published release format); ``k_anonymity`` chooses
them optimally instead. A level at or above a hierarchy's height gives ``*``.

>>> import pyarrow as pa
>>> stage = Generalize(hierarchies={"zip": {"mask": {}}, "age": {"interval": {"widths": [10]}}}, levels={"zip": 2, "age": 1})
>>> stage.apply(pa.table({"zip": ["81667", None], "age": [34, 71]})).to_pylist()
[{'zip': '816**', 'age': '[30, 40)'}, {'zip': None, 'age': '[70, 80)'}]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping

import pyarrow as pa
import pyarrow.compute as pc

from privprep.schemas.stages import GeneralizeParams

from .base import MapStage, StageContext
from .hierarchies import TOP, build_hierarchy, read_arx_csv
from .registry import register


@register
class Generalize(MapStage):
    """Replace each column's values by their value at ``levels[column]`` of ``hierarchies[column]``."""

    name: ClassVar[str] = "generalize"
    Params = GeneralizeParams

    def __init__(self, *, hierarchies: Mapping[str, Any], levels: Mapping[str, int], base_dir: Path | None = None) -> None:
        params = GeneralizeParams.model_validate({"hierarchies": dict(hierarchies), "levels": dict(levels)})
        self.hierarchies = dict(params.hierarchies)
        self.levels = dict(params.levels)
        self.base_dir = base_dir
        for spec in self.hierarchies.values():
            if spec.tag == "csv":
                path = Path(spec.params)
                read_arx_csv(path if path.is_absolute() or base_dir is None else base_dir / path)

    @classmethod
    def from_config(cls, params: GeneralizeParams, *, context: StageContext) -> "Generalize":
        return cls(hierarchies=params.hierarchies, levels=params.levels, base_dir=context.base_dir)

    def input_columns(self) -> list[str]:
        return list(self.levels)

    def output_schema(self, schema: pa.Schema) -> pa.Schema:
        self._require(schema, self.input_columns())
        for column in self.levels:
            schema = schema.set(schema.get_field_index(column), pa.field(column, pa.string()))
        return schema

    def report(self) -> dict[str, Any]:
        return {"levels": dict(self.levels), "hierarchies": {c: s.tag for c, s in self.hierarchies.items()}}

    def transform(self, table: pa.Table) -> pa.Table:
        self._require(table.schema, self.input_columns())
        for column, level in self.levels.items():
            values = table.column(column).combine_chunks()
            if pa.types.is_dictionary(values.type):
                values = values.dictionary_decode()
            encoded = pc.dictionary_encode(values, null_encoding="encode")
            hierarchy = build_hierarchy(self.hierarchies[column], column, encoded.dictionary, base_dir=self.base_dir)
            if level < hierarchy.height:
                generalized = hierarchy.level(level)
            else:
                generalized = pa.array([TOP] * len(encoded.dictionary), pa.string())
            out = generalized.take(encoded.indices)
            table = table.set_column(table.schema.get_field_index(column), pa.field(column, pa.string()), out)
        return table
