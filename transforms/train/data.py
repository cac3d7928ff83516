"""From Arrow columns to training arrays: image tensors, class indices, the held-out split, default δ.

No torch here: the checks run (and fail with one clear line) before any model is built.

* **Images** are an Arrow list column, flat (``fixed_size_list<uint8, 64>``) or nested (``list<list<uint8>>``):
  every row must have the same number of values (a ragged column is an error). The shape is
  ``image_shape`` when given ([H, W] or [C, H, W]), else the nested dimensions, else a flat length
  that is a square (1 channel) or three times a square (3 channels).
* **Pixels** are scaled from a declared range to [-1, 1] (values outside it are clipped): the image
  column's ``bounds`` when declared, else the type's range (uint8 → [0, 255], floats → [0, 1]). Never
  from the data, so the scaling leaks nothing. (Centred inputs train better with tanh units.)
* **Labels** are mapped to class indices by their position in the label column's declared
  ``categories``; a missing label or one outside the categories is an error that counts the rows.

>>> import pyarrow as pa
>>> table = pa.table({"image": pa.array([[0, 16, 8, 0]] * 2, pa.list_(pa.uint8(), 4)), "label": [1, 0]})
>>> ex = examples_from_table(table, image="image", label="label", classes=[0, 1], pixel_range=(0, 16))
>>> ex.images.shape, ex.images[0].ravel().tolist(), ex.labels.tolist()
((2, 1, 2, 2), [-1.0, 1.0, 0.0, -1.0], [1, 0])
>>> default_delta(2945), default_delta(60000), default_delta(100000)
(0.0001, 1e-05, 1e-06)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from privprep.schemas.errors import ConfigError, DataError

_FLOAT_RANGE = (0.0, 1.0)


@dataclass(frozen=True)
class Examples:
    """Training examples: ``images`` float32 (n, C, H, W) in [-1, 1], ``labels`` int64 class indices."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, index: np.ndarray) -> "Examples":
        return Examples(self.images[index], self.labels[index])


def default_delta(rows: int) -> float:
    """The largest power of ten strictly below ``1/rows``: δ for a dataset of ``rows`` records."""
    if rows < 1:
        raise ValueError("rows must be >= 1")
    return 10.0 ** -(math.floor(math.log10(rows)) + 1)


def holdout_split(rows: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (train, held-out) row indices; the held-out part has ``round(fraction·rows)`` rows, at least 1."""
    if rows < 2:
        raise DataError(f"training needs at least 2 rows (one to train on, one to hold out); the data has {rows}")
    held = min(max(1, round(fraction * rows)), rows - 1)
    order = rng.permutation(rows)
    return np.sort(order[held:]), np.sort(order[:held])


def read_columns(data_dir: Path, columns: list[str], *, batch_rows: int = 65_536) -> pa.Table:
    """The named columns of every Parquet part under ``data_dir``, read batch by batch, in file order."""
    try:
        import pyarrow.dataset as ds  # here: importing it loads pandas (~0.4 s)

        dataset = ds.dataset(str(data_dir), format="parquet")
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"cannot open the sanitized output under '{data_dir}' ({type(exc).__name__})") from None
    missing = [c for c in columns if c not in dataset.schema.names]
    if missing:
        raise DataError(f"column(s) not in the data: {', '.join(missing)}")
    try:
        batches = list(dataset.to_batches(columns=columns, batch_size=batch_rows))
    except (OSError, pa.ArrowInvalid) as exc:  # e.g. columns under Parquet encryption
        raise DataError(f"cannot read columns {', '.join(columns)} of the output ({type(exc).__name__})") from None
    schema = pa.schema([dataset.schema.field(c) for c in columns])
    return pa.Table.from_batches(batches, schema=schema) if batches else schema.empty_table()


def examples_from_table(
    table: pa.Table,
    *,
    image: str,
    label: str,
    classes: Sequence[Any],
    image_shape: Sequence[int] | None = None,
    pixel_range: tuple[float, float] | None = None,
) -> Examples:
    """Check and convert the ``image`` and ``label`` columns of ``table`` (see the module docstring)."""
    missing = [c for c in (image, label) if c not in table.column_names]
    if missing:
        raise DataError(f"column(s) not in the data: {', '.join(missing)}")
    if table.num_rows == 0:
        raise DataError("the data has no rows to train on")
    values, dims = _flatten_images(table.column(image).combine_chunks(), image)
    shape = resolve_shape(dims, image_shape, column=image)
    low, high = pixel_range if pixel_range is not None else default_pixel_range(values.type, column=image)
    pixels = values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    scaled = np.clip((pixels - np.float32(low)) / np.float32((high - low) / 2) - 1, -1.0, 1.0, dtype=np.float32)
    images = scaled.reshape((table.num_rows, *shape))
    return Examples(np.ascontiguousarray(images), class_indices(table.column(label), classes, column=label))


def _flatten_images(column: pa.Array, name: str) -> tuple[pa.Array, list[int]]:
    """Flat pixel values and the per-row dimensions of a (possibly nested) list column."""
    if not _is_list(column.type):
        raise DataError(
            f"image column '{name}' has type {column.type}; it must hold one array of pixel values per row "
            "(a list or fixed-size list of numbers)"
        )
    if column.null_count:
        raise DataError(f"image column '{name}' has {column.null_count} missing image(s)")
    dims: list[int] = []
    values: pa.Array = column
    rows = len(column)
    while _is_list(values.type):
        lengths = pc.list_value_length(values)
        low, high = pc.min_max(lengths).values()
        if low.as_py() != high.as_py():
            raise DataError(
                f"image column '{name}' is ragged: its arrays have {low.as_py()} to {high.as_py()} values; "
                "every image must have the same shape"
            )
        if values.null_count:
            raise DataError(f"image column '{name}' has missing nested arrays")
        dims.append(int(low.as_py()))
        values = values.flatten()
    if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
        raise DataError(f"image column '{name}' holds {values.type} values; pixels must be numbers")
    if values.null_count:
        raise DataError(f"image column '{name}' has {values.null_count} missing pixel value(s)")
    if len(values) != rows * math.prod(dims):
        raise DataError(f"image column '{name}' could not be flattened to one array per row")
    return values, dims


def _is_list(data_type: pa.DataType) -> bool:
    return pa.types.is_list(data_type) or pa.types.is_large_list(data_type) or pa.types.is_fixed_size_list(data_type)


def resolve_shape(dims: list[int], image_shape: Sequence[int] | None, *, column: str) -> tuple[int, int, int]:
    """(channels, height, width) from ``image_shape`` or the column's own dimensions."""
    size = math.prod(dims)
    if image_shape is not None:
        shape = [int(v) for v in image_shape]
        if len(shape) not in (2, 3) or min(shape) < 1:
            raise ConfigError("image_shape must be [height, width] or [channels, height, width] of positive sizes")
        if math.prod(shape) != size:
            raise DataError(
                f"image column '{column}' has {size} values per row, but image_shape {shape} needs {math.prod(shape)}"
            )
        return tuple([1] * (3 - len(shape)) + shape)  # type: ignore[return-value]
    if len(dims) == 2:
        return (1, dims[0], dims[1])
    if len(dims) == 3:
        return (dims[0], dims[1], dims[2])
    for channels in (1, 3):
        side = math.isqrt(size // channels)
        if size % channels == 0 and side * side * channels == size and side > 0:
            return (channels, side, side)
    raise DataError(
        f"image column '{column}' has {size} values per row, which is not a square image; "
        "give image_shape: [height, width] or [channels, height, width]"
    )


def default_pixel_range(data_type: pa.DataType, *, column: str) -> tuple[float, float]:
    """The range pixels are scaled from when the image column declares no ``bounds``."""
    if pa.types.is_unsigned_integer(data_type):
        return (0.0, float(np.iinfo(data_type.to_pandas_dtype()).max))
    if pa.types.is_floating(data_type):
        return _FLOAT_RANGE
    raise DataError(
        f"image column '{column}' holds {data_type} pixels with no declared range; "
        f"add bounds: [low, high] to columns.{column}"
    )


def class_indices(values: pa.ChunkedArray | pa.Array, classes: Sequence[Any], *, column: str) -> np.ndarray:
    """The position of every label in ``classes``; missing or undeclared labels are a :class:`DataError`."""
    name = column
    labels = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if pa.types.is_dictionary(labels.type):
        labels = labels.dictionary_decode()
    if labels.null_count:
        raise DataError(f"label column '{name}' has {labels.null_count} missing label(s)")
    try:
        declared = pa.array(list(classes)).cast(labels.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        raise DataError(f"the declared categories of label column '{name}' do not fit its type {labels.type}") from None
    index = pc.index_in(labels, value_set=declared)
    outside = index.null_count
    if outside:
        raise DataError(
            f"label column '{name}' has {outside} row(s) with a label outside its {len(classes)} declared categories"
        )
    return index.to_numpy(zero_copy_only=False).astype(np.int64)


__all__ = [
    "Examples",
    "class_indices",
    "default_delta",
    "default_pixel_range",
    "examples_from_table",
    "holdout_split",
    "read_columns",
    "resolve_shape",
]
