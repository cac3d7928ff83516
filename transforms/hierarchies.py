"""Generalization hierarchies (SPEC §5): for each distinct value of a quasi-identifier, its
generalized value at levels 1..n, the last one ``*``.

Hierarchies are built over the distinct values seen in the data (so a builder's height is known
before the search) from a spec: ``interval``, ``date``, ``mask``, ``map`` or an ARX ``csv`` file.
A missing value is a category of its own: it stays missing at every level below the top ``*``.

>>> import pyarrow as pa
>>> h = build_hierarchy({"mask": {}}, "zip", pa.array(["10001", "10002", None]))
>>> h.height, h.level(2).to_pylist()
(6, ['100**', '100**', None])
>>> build_hierarchy({"interval": {"widths": [10], "bottom": 18, "top": 90}}, "age", pa.array([17, 42, 89, 95])).level(1).to_pylist()
['<18', '[38, 48)', '[88, 90)', '>=90']
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import TypeAdapter

from privprep.schemas.errors import ConfigError, DataError
from privprep.schemas.hierarchies import HierarchySpec

from .columns import as_text_or_binary

TOP = "*"
_SPEC = TypeAdapter(HierarchySpec)


@dataclass(frozen=True)
class Hierarchy:
    """Levels of one quasi-identifier over its distinct values.

    ``values`` are the distinct original values (any Arrow type, nulls allowed); ``levels[i]`` is a
    string array aligned with them holding the value at level ``i + 1``; level 0 is the value's text.
    """

    column: str
    values: pa.Array
    levels: tuple[pa.Array, ...]

    @property
    def height(self) -> int:
        """Number of levels above the original values."""
        return len(self.levels)

    def level(self, level: int) -> pa.Array:
        """The values at ``level`` (0 = original, as text), aligned with :attr:`values`."""
        if level == 0:
            return _text(self.values, self.column)
        return self.levels[level - 1]

    def level_codes(self) -> list[np.ndarray]:
        """Dense integer codes per level (a missing value is a code of its own), aligned with values."""
        return [dense_codes(self.level(i)) for i in range(self.height + 1)]

    def to_arx_rows(self) -> list[list[str]]:
        """Rows of an ARX hierarchy file: the original value, then each level (missing values omitted)."""
        base = self.level(0).to_pylist()
        levels = [lvl.to_pylist() for lvl in self.levels]
        return [[v, *(lvl[i] for lvl in levels)] for i, v in enumerate(base) if v is not None]


def dense_codes(array: pa.Array) -> np.ndarray:
    """0..k-1 codes of a string array, nulls encoded as a code of their own."""
    encoded = pc.dictionary_encode(array, null_encoding="encode")
    return np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)


def build_hierarchy(spec: Any, column: str, values: pa.Array, *, base_dir: Path | None = None) -> Hierarchy:
    """Build the hierarchy of ``column`` from a spec (validated or a plain ``{builder: params}`` dict)
    over the distinct ``values`` (nulls allowed)."""
    if isinstance(spec, Mapping):
        spec = _SPEC.validate_python(dict(spec))
    builder, params = spec.tag, spec.params
    if builder == "interval":
        levels = _interval(values, column, params.widths, params.bottom, params.top)
    elif builder == "date":
        levels = _date(values, column, list(params))
    elif builder == "mask":
        levels = _mask(values, column, params.char, params.levels)
    elif builder == "map":
        levels = _lookup(values, column, {str(k): list(v) for k, v in params.items()}, "the inline map")
    elif builder == "csv":
        path = Path(params)
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        levels = _lookup(values, column, read_arx_csv(path), f"hierarchy file '{path}'")
    else:  # pragma: no cover - the spec model admits no other builder
        raise ConfigError(f"unknown hierarchy builder '{builder}'")
    levels = _with_top(levels, values)
    _check_consistent(column, levels, values)
    return Hierarchy(column=column, values=values, levels=tuple(levels))


# -- ARX files ---------------------------------------------------------------------------------------


def read_arx_csv(path: Path) -> dict[str, list[str]]:
    """Read an ARX hierarchy file: ``;``-separated, no header, value then levels."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"hierarchy file '{path}' not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"hierarchy file '{path}' cannot be read as UTF-8 text ({type(exc).__name__})") from None
    table: dict[str, list[str]] = {}
    width = None
    reader = csv.reader(io.StringIO(text), delimiter=";")
    number = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. a field over the csv module's size limit
            raise ConfigError(f"hierarchy file '{path}' line {reader.line_num}: {str(exc)[:100]}") from None
        number = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if width is None:
            width = len(row)
        if width < 2:
            raise ConfigError(f"hierarchy file '{path}' line {number}: 1 field; each line needs the value and its levels (value;level1;...)")
        if len(row) != width:
            raise ConfigError(f"hierarchy file '{path}' line {number}: {len(row)} fields, expected {width} (value;level1;...)")
        if row[0] in table:
            raise ConfigError(f"hierarchy file '{path}' line {number}: a value appears twice")
        table[row[0]] = row[1:]
    if not table:
        raise ConfigError(f"hierarchy file '{path}' is empty")
    return table


def write_arx_csv(hierarchy: Hierarchy, path: Path) -> None:
    """Write ``hierarchy`` as an ARX hierarchy file (readable by ARX and by :func:`read_arx_csv`)."""
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=";", lineterminator="\n").writerows(hierarchy.to_arx_rows())
    Path(path).write_text(buffer.getvalue(), encoding="utf-8")


# -- builders ----------------------------------------------------------------------------------------


def _text(values: pa.Array, column: str) -> pa.Array:
    text = as_text_or_binary(values, column)
    try:
        return text.cast(pa.string()) if text.type != pa.string() else text
    except pa.ArrowInvalid:  # binary that is not UTF-8: ciphertexts, tokens, images
        raise DataError(f"column '{column}' holds binary values that are not text (encrypted or tokenized by an "
                        "earlier stage?); a hierarchy generalizes text, numbers or dates") from None


def _lookup(values: pa.Array, column: str, table: dict[str, list[str]], source: str) -> list[pa.Array]:
    text = _text(values, column)
    keys = pa.array(list(table), pa.string())
    index = pc.index_in(text, value_set=keys)
    missing = pc.sum(pc.and_(pc.is_null(index), pc.is_valid(text))).as_py() or 0
    if missing:
        raise DataError(
            f"column '{column}': {missing} distinct value(s) in the data have no row in {source}; "
            "add a row for each value (privprep never lists the values)"
        )
    widths = {len(v) for v in table.values()}
    if len(widths) != 1:
        raise ConfigError(f"{source}: every value needs the same number of levels")
    rows = list(table.values())
    return [pa.array([row[i] for row in rows], pa.string()).take(index) for i in range(widths.pop())]


def _numbers(values: pa.Array, column: str) -> np.ndarray:
    if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type) or pa.types.is_decimal(values.type)):
        try:
            values = pc.cast(values, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise DataError(f"column '{column}': an interval hierarchy needs numbers; the column has type {values.type}") from None
    return np.asarray(pc.cast(values, pa.float64(), safe=False).to_numpy(zero_copy_only=False), dtype=float)


def _number_text(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _interval(values: pa.Array, column: str, widths: list[float], bottom: float | None, top: float | None) -> list[pa.Array]:
    numbers = _numbers(values, column)
    valid = ~np.isnan(numbers)
    origin = bottom if bottom is not None else 0.0
    out = []
    for width in widths:
        start = origin + np.floor((numbers - origin) / width) * width
        end = start + width if top is None else np.minimum(start + width, top)  # a band never reaches past top: >=top is coded
        labels = np.array(
            [f"[{_number_text(s)}, {_number_text(e)})" if ok else None for s, e, ok in zip(start, end, valid)], dtype=object
        )
        if bottom is not None:
            labels[valid & (numbers < bottom)] = f"<{_number_text(bottom)}"
        if top is not None:
            labels[valid & (numbers >= top)] = f">={_number_text(top)}"
        out.append(pa.array(labels, pa.string()))
    return out


_DATE_FORMATS = {
    "day": lambda d: d.isoformat(),
    "month": lambda d: f"{d.year:04d}-{d.month:02d}",
    "quarter": lambda d: f"{d.year:04d}-Q{(d.month - 1) // 3 + 1}",
    "year": lambda d: f"{d.year:04d}",
    "5y": lambda d: f"{d.year - d.year % 5:04d}-{d.year - d.year % 5 + 4:04d}",
    "10y": lambda d: f"{d.year - d.year % 10:04d}-{d.year - d.year % 10 + 9:04d}",
}


def _date(values: pa.Array, column: str, units: list[str]) -> list[pa.Array]:
    try:
        dates = values if pa.types.is_date(values.type) else pc.cast(values, pa.timestamp("s")).cast(pa.date32())
        days = dates.cast(pa.date32()).to_pylist()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise DataError(f"column '{column}': a date hierarchy needs dates; the column has type {values.type}") from None
    return [pa.array([_DATE_FORMATS[u](d) if d is not None else None for d in days], pa.string()) for u in units]


#: The most levels a mask hierarchy may have (one per masked character).
MAX_MASK_LEVELS = 64


def _mask(values: pa.Array, column: str, char: str, levels: int | None) -> list[pa.Array]:
    """ZIP-style: level i replaces the last i characters (built on distinct values, so a loop is cheap)."""
    text = _text(values, column).to_pylist()
    longest = max((len(t) for t in text if t is not None), default=0)
    count = levels if levels is not None else longest
    if count > MAX_MASK_LEVELS:  # one level per character: a long value would make a lattice no search can cover
        raise DataError(
            f"column '{column}': a mask hierarchy would have {count:,} levels (its longest value has {longest:,} "
            f"characters); at most {MAX_MASK_LEVELS} are allowed: set mask.levels, or use a map or csv hierarchy"
        )
    return [
        pa.array([None if t is None else t[: max(len(t) - i, 0)] + char * min(i, len(t)) for t in text], pa.string())
        for i in range(1, count + 1)
    ]


def _with_top(levels: list[pa.Array], values: pa.Array) -> list[pa.Array]:
    if levels:
        last = levels[-1]
        valid = pc.drop_null(last)
        if len(valid) and pc.all(pc.equal(valid, TOP)).as_py() and last.null_count == 0:
            return levels
    return [*levels, pa.array([TOP] * len(values), pa.string())]


def _check_consistent(column: str, levels: list[pa.Array], values: pa.Array) -> None:
    """Each level must be a function of the one below: equal values never split apart higher up."""
    chain = [_text(values, column), *levels]
    for lower, upper in zip(chain, chain[1:]):
        pairs = pa.table({"lower": lower, "upper": upper}).group_by("lower").aggregate([("upper", "count_distinct")])
        if pc.max(pairs.column("upper_count_distinct")).as_py() not in (None, 0, 1):
            raise ConfigError(f"hierarchy of column '{column}': a value at one level maps to several values at the next")
