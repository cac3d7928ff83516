"""The stage interface: the three kinds of stage the runner knows (plus the training sink).

A stage is a small class with keyword-only parameters, a stable registry ``name`` and a ``kind``:

* ``map`` — row-local, one batch at a time (:class:`MapStage`);
* ``global`` — two passes: ``observe`` every batch, ``decide`` once, then ``apply`` (:class:`GlobalStage`);
* ``release`` — ``observe`` every batch, then ``release`` noisy values once (:class:`ReleaseStage`);
* ``sink`` — consumes the finished output (:class:`SinkStage`).

The runner dispatches on these four base classes (``isinstance``), never on ``kind`` or ``name``;
``kind`` is what the report calls the stage. Stages work on whole Arrow tables; :meth:`MapStage.apply`
also takes a pandas DataFrame or Series and returns the same kind of object, never mutating its input.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol, TypeVar, Union

import numpy as np
import pyarrow as pa

from privprep.schemas.base import StrictModel
from privprep.schemas.config import ColumnSpec
from privprep.schemas.errors import DataError
from privprep.schemas.keyring import SecretKey
from privprep.schemas.stages import StageKind

if TYPE_CHECKING:  # pandas is imported only when a pandas object is passed in (it costs ~0.4 s)
    import pandas as pd

    from .privacy_account import PrivacyAccount

Frame = TypeVar("Frame", "pd.DataFrame", "pd.Series", pa.Table, pa.RecordBatch)
KeyResolver = Callable[[str, "str | None"], SecretKey]


@dataclass(frozen=True)
class StageContext:
    """What a stage may need from the run to build itself from its config params."""

    columns: dict[str, ColumnSpec] = field(default_factory=dict)
    resolve_key: KeyResolver | None = None
    base_dir: Path = Path(".")
    path: str = "stages"
    budget: Any = None  # the config's ``budget:`` (privacy unit and contribution bounds for DP stages)


class Stage(ABC):
    """Base of every stage. Subclasses set ``name``, ``kind`` and ``Params``."""

    name: ClassVar[str]
    kind: ClassVar[StageKind]
    Params: ClassVar[type[StrictModel]]

    @classmethod
    @abstractmethod
    def from_config(cls, params: Any, *, context: StageContext) -> "Stage":
        """Build the stage from its validated config params."""

    @abstractmethod
    def input_columns(self) -> list[str]:
        """Columns this stage reads (the runner projects scans to them)."""

    def output_schema(self, schema: pa.Schema) -> pa.Schema:
        """The schema after this stage; raises :class:`DataError` if the input schema does not fit."""
        return schema

    def keys_used(self) -> list[str]:
        """Ids of the keyring keys this stage uses (never the material)."""
        return []

    def report(self) -> dict[str, Any]:
        """This stage's entry in ``report.json`` (besides name, kind, rows and timing)."""
        return {}

    @property
    def per_file(self) -> bool:
        """Whether the stage keys each output file on its own (recipient encryption): the runner then
        calls :meth:`begin_file` as each part starts and cuts batches at part boundaries."""
        return False

    def begin_file(self) -> dict[str, str]:
        """A new output part starts: the key-value metadata it must carry (e.g. a sealed data key)."""
        return {}

    def __dask_tokenize__(self) -> tuple[str, int]:
        """A token that never hashes parameters or key material (engines name tasks after it)."""
        return (type(self).__qualname__, id(self))

    def _require(self, schema: pa.Schema, columns: list[str]) -> None:
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise DataError(f"stage '{self.name}': column(s) not in the data: {', '.join(missing)}")


class MapStage(Stage):
    """A row-local stage: the output of a batch depends on that batch alone, row by row."""

    kind: ClassVar[StageKind] = "map"

    @abstractmethod
    def transform(self, table: pa.Table) -> pa.Table:
        """Transform a whole Arrow table; must not change the number or order of rows."""

    def apply(self, data: Frame) -> Frame:
        """Apply the stage to a pandas DataFrame/Series or an Arrow Table/RecordBatch; returns a new object."""
        if isinstance(data, pa.Table):
            return self.transform(data)
        if isinstance(data, pa.RecordBatch):
            return _to_batch(self.transform(pa.Table.from_batches([data])))
        import pandas as pd

        if isinstance(data, pd.Series):
            name = data.name if data.name is not None else "value"
            frame = self.apply(data.to_frame(name=name))
            return frame.iloc[:, 0].rename(data.name)
        if isinstance(data, pd.DataFrame):
            return self._apply_pandas(data)
        raise TypeError(f"{type(self).__name__}.apply takes a pandas DataFrame/Series or a pyarrow Table/RecordBatch")

    def _apply_pandas(self, frame: pd.DataFrame) -> pd.DataFrame:
        columns = self.input_columns() or list(frame.columns)
        self._require(pa.schema([(str(c), pa.null()) for c in frame.columns]), columns)
        table = _arrow_from_pandas(frame, columns)
        out = self.transform(table)
        result = frame.drop(columns=[c for c in columns if c not in out.column_names])
        for name in out.column_names:
            series = out.column(name).to_pandas()
            series.index = frame.index  # by position, never by label
            result[name] = series
        return result


class GlobalStage(Stage):
    """A two-pass stage: ``observe`` accumulates small sufficient statistics (never raw rows),
    ``decide`` runs once, ``apply`` transforms and may remove rows."""

    kind: ClassVar[StageKind] = "global"

    @abstractmethod
    def observe(self, table: pa.Table) -> None: ...

    @abstractmethod
    def decide(self) -> None: ...

    def merge(self, other: "Stage") -> None:
        """Fold in what ``other`` observed: a copy of this stage (made before any ``observe``) that
        observed other partitions of the input. Partitioned engines observe per partition and combine
        the copies in order, ``a.merge(b)`` with ``a`` before ``b``; the result must equal observing
        every batch on one object. Stages that cannot merge run on the streaming engine only."""
        raise NotImplementedError(f"stage '{self.name}' cannot combine partial observations (no merge())")

    @abstractmethod
    def transform(self, table: pa.Table) -> pa.Table: ...

    def apply(self, data: Frame) -> Frame:
        """Observe the whole of ``data``, decide, and transform it: for ETL use on one in-memory table.
        Returns a new object of the same kind; rows are matched by position, never by index label."""
        if _is_pandas_frame(data):
            columns = self.input_columns()
            self._require(pa.schema([(str(c), pa.null()) for c in data.columns]), columns)
            table = _arrow_from_pandas(data, columns)
            self.observe(table)
            self.decide()
            row = "__privprep_row__"
            out = self.transform(table.append_column(row, pa.array(np.arange(len(data)))))
            result = data.iloc[np.asarray(out.column(row).to_numpy())].copy()
            for name in out.column_names:
                if name != row:
                    series = out.column(name).to_pandas()
                    series.index = result.index
                    result[name] = series
            return result
        table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
        if not isinstance(table, pa.Table):
            raise TypeError(f"{type(self).__name__}.apply takes a pandas DataFrame or a pyarrow Table/RecordBatch")
        self.observe(table)
        self.decide()
        out = self.transform(table)
        return _to_batch(out) if isinstance(data, pa.RecordBatch) else out


class ReleaseStage(Stage):
    """A DP release: ``observe`` accumulates exact clipped statistics, ``release`` adds noise once."""

    kind: ClassVar[StageKind] = "release"

    @abstractmethod
    def observe(self, table: pa.Table) -> None: ...

    @abstractmethod
    def release(self, ledger: PrivacyAccount) -> list[dict[str, Any]]: ...

    def merge(self, other: "Stage") -> None:
        """Fold in what ``other`` observed: a copy of this stage (made before any ``observe``) that
        observed other partitions of the input. Partitioned engines observe per partition and combine
        the copies in order, ``a.merge(b)`` with ``a`` before ``b``; the result must equal observing
        every batch on one object. Stages that cannot merge run on the streaming engine only."""
        raise NotImplementedError(f"stage '{self.name}' cannot combine partial observations (no merge())")


class SinkStage(Stage):
    """Consumes the finished, sanitized output (the DP-SGD training stage)."""

    kind: ClassVar[StageKind] = "sink"

    @abstractmethod
    def consume(self, data_dir: Path, run_dir: Path, ledger: PrivacyAccount) -> dict[str, Any]: ...


class Transforming(Protocol):
    """What the write pass runs on each batch: a map or global stage (or a pass-through in its place)."""

    def transform(self, table: pa.Table) -> pa.Table: ...


#: The stages pass 2 runs on every batch, in config order.
RowStage = Union[MapStage, GlobalStage]
#: The stages pass 1 feeds: they ``observe`` every batch and can ``merge`` partial observations.
ObservingStage = Union[GlobalStage, ReleaseStage]
#: The four kinds of stage, as the runner dispatches on them (``isinstance``).
STAGE_BASES: tuple[type[Stage], ...] = (MapStage, GlobalStage, ReleaseStage, SinkStage)


def _is_pandas_frame(data: Any) -> bool:
    """Whether ``data`` is a pandas DataFrame, without importing pandas for Arrow input."""
    if isinstance(data, (pa.Table, pa.RecordBatch)):
        return False
    import pandas as pd

    return isinstance(data, pd.DataFrame)


def _arrow_from_pandas(frame: "pd.DataFrame", columns: list[str]) -> pa.Table:
    arrays = []
    for column in columns:
        try:
            arrays.append(pa.array(frame[column], from_pandas=True))
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            raise DataError(
                f"column '{column}' mixes value types that Arrow cannot hold in one column; "
                "convert it first, e.g. df[col].astype(str)"
            ) from None
    return pa.table(arrays, names=[str(c) for c in columns])


def _to_batch(table: pa.Table) -> pa.RecordBatch:
    table = table.combine_chunks()
    batches = table.to_batches()
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=table.schema)


def resolve_columns(columns: list[str] | None, table: pa.Table) -> list[str]:
    """The stage's columns, or every column of the table when none were given (ETL use on one column)."""
    return list(columns) if columns else list(table.column_names)


__all__ = [
    "GlobalStage",
    "KeyResolver",
    "MapStage",
    "ObservingStage",
    "ReleaseStage",
    "RowStage",
    "STAGE_BASES",
    "SinkStage",
    "Stage",
    "StageContext",
    "StageKind",
    "Transforming",
    "resolve_columns",
]
