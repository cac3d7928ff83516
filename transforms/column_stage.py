"""Map stages that rewrite each of their columns on its own: the column/schema boilerplate once.

:class:`ColumnStage` walks the stage's columns (every column of the input when none are named, for
ETL use on one Series), checks they exist, and replaces each column and its field in place; a subclass
says only what a column becomes (:meth:`~ColumnStage.output_field`, :meth:`~ColumnStage.transform_column`).
``protects = True`` refuses types whose values cannot be turned into bytes and back (nested, times of
day, durations), as every reversible protection must.

:class:`KeyedColumnStage` adds the keyring key: raw bytes become an ``inline`` key of the stage's
``purpose``, :meth:`~KeyedColumnStage.from_config` resolves the configured key id (or the purpose's
primary key), ``keys_used`` names it, and cipher objects listed in ``transient`` are dropped when the
stage is pickled and rebuilt by :meth:`~KeyedColumnStage.open` when it is unpickled.

>>> class Upper(ColumnStage):
...     name = "upper"
...     def __init__(self, *, columns=None):
...         self.columns = list(columns) if columns else None
...     @classmethod
...     def from_config(cls, params, *, context):
...         return cls(columns=params.columns)
...     def output_field(self, column, kind):
...         return pa.field(column, pa.string())
...     def transform_column(self, values, column):
...         return pa.compute.utf8_upper(values)
>>> import pyarrow.compute
>>> Upper(columns=["a"]).apply(pa.table({"a": ["x", None], "b": [1, 2]})).to_pydict()
{'a': ['X', None], 'b': [1, 2]}
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import pyarrow as pa

from privprep.schemas.keyring import SecretKey

from .base import MapStage, StageContext, resolve_columns
from .protected import check_supported


class ColumnStage(MapStage):
    """A map stage that replaces each of ``self.columns`` (``None``: every column) by a new column."""

    columns: list[str] | None
    protects: ClassVar[bool] = False  # refuse types that cannot be turned into bytes and back

    @abstractmethod
    def output_field(self, column: str, kind: pa.DataType) -> pa.Field:
        """The field of ``column`` after this stage, given its type before."""

    @abstractmethod
    def transform_column(self, values: pa.ChunkedArray, column: str) -> pa.Array | pa.ChunkedArray:
        """The new values of ``column`` (same length and order)."""

    def input_columns(self) -> list[str]:
        return list(self.columns or [])

    def output_schema(self, schema: pa.Schema) -> pa.Schema:
        self._require(schema, self.input_columns())
        for column in self.input_columns():
            index = schema.get_field_index(column)
            schema = schema.set(index, self.output_field(column, self._checked(schema.field(index).type, column)))
        return schema

    def transform(self, table: pa.Table) -> pa.Table:
        for column in resolve_columns(self.columns, table):
            self._require(table.schema, [column])
            index = table.schema.get_field_index(column)
            kind = self._checked(table.schema.field(index).type, column)
            table = table.set_column(index, self.output_field(column, kind), self.transform_column(table.column(index), column))
        return table

    def _checked(self, kind: pa.DataType, column: str) -> pa.DataType:
        if self.protects:
            check_supported(kind, column, self.name)
        return kind


class KeyedColumnStage(ColumnStage):
    """A column stage under one keyring key of ``purpose``; ``options`` are the params passed on from the config."""

    purpose: ClassVar[str]
    options: ClassVar[tuple[str, ...]] = ("columns",)
    transient: ClassVar[tuple[str, ...]] = ()  # cipher objects: not pickled, rebuilt by open()
    key: SecretKey

    @classmethod
    def secret_key(cls, key: SecretKey | bytes) -> SecretKey:
        """``key`` as a keyring key: raw bytes become an ``inline`` key of this stage's purpose."""
        if isinstance(key, (bytes, bytearray)):
            return SecretKey(id="inline", purpose=cls.purpose, material=bytes(key))
        return key

    @classmethod
    def from_config(cls, params: Any, *, context: StageContext) -> "KeyedColumnStage":
        assert context.resolve_key is not None
        options = {name: getattr(params, name) for name in cls.options}
        return cls(key=context.resolve_key(cls.purpose, params.key), **options)

    def keys_used(self) -> list[str]:
        return [self.key.id]

    def open(self) -> None:
        """Build the cipher objects from the key (after construction and after unpickling)."""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for name in self.transient:
            state.pop(name, None)  # a cipher object does not pickle; rebuilt from the key
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.open()


__all__ = ["ColumnStage", "KeyedColumnStage"]
