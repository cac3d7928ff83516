"""Reading the input as a stream of Arrow batches, and writing the output in Parquet parts.

Inputs are a Parquet file, a directory of Parquet files (searched recursively, hidden and ``_``
files skipped, in sorted order), a glob, or CSV files. Every file's footer is checked up front so a
truncated or foreign file fails before anything is written, naming the file. Scans read only the
columns asked for, with bounded readahead, so memory does not grow with the input.
"""

from __future__ import annotations

import glob
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from privprep.schemas.errors import InputError

from .storage import StoreOptions, arrow_location, discover_objects, is_uri, open_source, scrub

log = logging.getLogger(__name__)
PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv")


@dataclass
class InputSource:
    """The input files of a run, their common schema and row count."""

    files: list[Path]
    format: str
    schema: pa.Schema
    rows: int | None
    delimiter: str = ","

    @classmethod
    def open(cls, spec: str, *, delimiter: str = ",", storage: StoreOptions | None = None) -> "InputSource":
        """``spec``: a local path or glob, or an object store URI (``s3://bucket/prefix/``, see :mod:`storage`)."""
        files = discover(spec, storage)
        kinds = {("csv" if f.name.lower().endswith(CSV_SUFFIXES) else "parquet") for f in files}
        if len(kinds) > 1:
            raise InputError(f"input '{spec}' mixes CSV and Parquet files; point it at one kind")
        fmt = kinds.pop()
        if fmt == "parquet":
            schema, rows = _check_parquet(files)
        else:
            schema, rows = _check_csv(files, delimiter), None
        return cls(files=files, format=fmt, schema=schema, rows=rows, delimiter=delimiter)

    def pieces(self, rows: int = 1_048_576) -> list["Piece"]:
        """The input cut into pieces of about ``rows`` rows, in order: runs of whole row groups of one
        Parquet file, or one CSV file each. Both engines read the same pieces the same way, so batch
        boundaries (and every partial sum over a batch) are the same whichever engine runs."""
        if self.format != "parquet":
            return [Piece(file=f, row_groups=None, rows=None) for f in self.files]
        pieces: list[Piece] = []
        for file in self.files:
            meta = pq.read_metadata(open_source(file))
            group: list[int] = []
            count = 0
            for i in range(meta.num_row_groups):
                group.append(i)
                count += meta.row_group(i).num_rows
                if count >= rows:
                    pieces.append(Piece(file=file, row_groups=tuple(group), rows=count))
                    group, count = [], 0
            if group or not pieces or pieces[-1].file != file:
                pieces.append(Piece(file=file, row_groups=tuple(group), rows=count))
        return pieces

    def batches(
        self, columns: list[str] | None = None, *, batch_rows: int = 65_536, piece_rows: int = 1_048_576,
        dictionary: bool = False,
    ) -> Iterator[pa.Table]:
        """Yield the input in order as tables of at most ``batch_rows`` rows, only ``columns``.

        Parquet files are read one after the other, a run of row groups at a time, so memory is bounded
        by one row group whatever the input size (a dataset scanner may buffer up to 1 GiB ahead of a
        slow consumer). CSV goes through a dataset scanner with bounded readahead. With ``dictionary``,
        Parquet string and binary columns come as dictionary arrays of the input type's values (the
        file's dictionary pages, no strings materialized per row), for readers that only count values."""
        for piece in self.pieces(piece_rows):
            yield from self.read(piece, columns, batch_rows=batch_rows, dictionary=dictionary)

    def read(
        self, piece: "Piece", columns: list[str] | None = None, *, batch_rows: int = 65_536, dictionary: bool = False
    ) -> Iterator[pa.Table]:
        """Yield one piece as tables of at most ``batch_rows`` rows, only ``columns``, cast to the input schema."""
        names = columns if columns is not None else self.schema.names
        target = pa.schema([self.schema.field(name) for name in names])
        if self.format != "parquet":
            yield from self._csv_batches(piece.file, names, batch_rows)
            return
        as_dictionary = [f.name for f in target if dictionary and _dictionary_readable(f.type)]
        if as_dictionary:
            target = pa.schema([pa.field(f.name, pa.dictionary(pa.int32(), f.type), f.nullable, f.metadata)
                                if f.name in as_dictionary else f for f in target])
        try:
            reader = pq.ParquetFile(open_source(piece.file), read_dictionary=as_dictionary or None)
            if piece.row_groups == ():
                return
            batches = reader.iter_batches(batch_size=batch_rows, row_groups=list(piece.row_groups or ()) or None,
                                          columns=names, use_threads=True)
            for batch in batches:
                if batch.num_rows:
                    table = pa.Table.from_batches([batch])
                    yield table if table.schema.equals(target) else table.select(names).cast(target)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"input file '{piece.file}' could not be read ({_short(exc)})") from None

    def _csv_batches(self, file: Path, columns: list[str], batch_rows: int) -> Iterator[pa.Table]:
        import pyarrow.dataset as ds  # here: importing it loads pandas (~0.4 s), which Parquet input never needs

        fmt = ds.CsvFileFormat(
            parse_options=pacsv.ParseOptions(delimiter=self.delimiter),
            convert_options=pacsv.ConvertOptions(column_types=self.schema),
        )
        where, filesystem = arrow_location(file)
        scanner = ds.dataset([where], format=fmt, schema=self.schema, filesystem=filesystem).scanner(
            columns=columns, batch_size=batch_rows, batch_readahead=2, fragment_readahead=1, use_threads=True,
        )
        try:
            for batch in scanner.to_batches():
                if batch.num_rows:
                    yield pa.Table.from_batches([batch])
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"input file '{file}' could not be read ({_short(exc, self.schema)})") from None


def _dictionary_readable(kind: pa.DataType) -> bool:
    return (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)
            or pa.types.is_large_binary(kind))


@dataclass(frozen=True)
class Piece:
    """A unit of reading: row groups ``row_groups`` of ``file`` (None: the whole file); a partition on Dask."""

    file: Path
    row_groups: tuple[int, ...] | None
    rows: int | None


def discover(spec: str, storage: StoreOptions | None = None) -> list[Path]:
    """The input files named by ``spec`` (file, directory or glob), sorted; none found is an error."""
    if is_uri(spec):
        return discover_objects(spec, storage, PARQUET_SUFFIXES + CSV_SUFFIXES)  # type: ignore[return-value]
    path = Path(spec).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*")
            if p.is_file() and p.name.lower().endswith(PARQUET_SUFFIXES + CSV_SUFFIXES)
            and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
        )
        if not files:
            raise InputError(f"input directory '{spec}' holds no .parquet or .csv files")
        return files
    if glob.has_magic(spec):
        files = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        if not files:
            raise InputError(f"input pattern '{spec}' matches no files")
        return files
    raise InputError(f"input '{spec}' not found; give a Parquet or CSV file, a directory or a glob")


def _check_parquet(files: list[Path]) -> tuple[pa.Schema, int]:
    schema: pa.Schema | None = None
    rows = 0
    for file in files:
        try:
            meta = pq.read_metadata(open_source(file))
            file_schema = pq.read_schema(open_source(file))
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(
                f"input file '{file}' is not a readable Parquet file ({_short(exc)}); it may be truncated or of another format"
            ) from None
        rows += meta.num_rows
        file_schema = file_schema.remove_metadata()
        _check_unique_names(file, file_schema)
        if schema is None:
            schema = file_schema
        elif file_schema.names != schema.names:
            raise InputError(f"input file '{file}' has columns {file_schema.names}, unlike '{files[0]}' ({schema.names})")
        elif not file_schema.equals(schema):
            try:
                schema = pa.unify_schemas([schema, file_schema], promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                raise InputError(f"input file '{file}' has column types that differ from '{files[0]}'") from None
    assert schema is not None
    return schema, rows


def _check_csv(files: list[Path], delimiter: str) -> pa.Schema:
    """The first file's schema (types inferred from its first block); every file must have its header."""
    schema: pa.Schema | None = None
    for file in files:
        try:
            reader = pacsv.open_csv(open_source(file), parse_options=pacsv.ParseOptions(delimiter=delimiter))
            file_schema = reader.schema
            reader.close()
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"input file '{file}' is not readable CSV ({_short(exc)})") from None
        _check_unique_names(file, file_schema)
        if schema is None:
            schema = file_schema
        elif file_schema.names != schema.names:  # a missing column would read as nulls, an extra one vanish
            raise InputError(f"input file '{file}' has columns {file_schema.names}, unlike '{files[0]}' ({schema.names})")
    assert schema is not None
    return schema


def _check_unique_names(file: Path, schema: pa.Schema) -> None:
    """A column name may appear once: a repeated header would make every reference to it ambiguous."""
    seen: set[str] = set()
    for name in schema.names:
        if name in seen:
            raise InputError(f"input file '{file}' has the column '{name}' more than once; give each column a unique name")
        seen.add(name)


def _short(exc: BaseException, schema: pa.Schema | None = None) -> str:
    """The first line of a library error, without quoting data: Arrow's CSV errors quote the offending
    row or value, which may be a protected cell, so those parts are cut; a column number becomes its name.

    >>> _short(ValueError('CSV parse error: Expected 6 columns, got 1: "P1,Ann,10001'))
    'CSV parse error: Expected 6 columns, got 1'
    >>> _short(ValueError("In CSV column #1: Row #3: CSV conversion error to int64: invalid value 'old'"),
    ...        pa.schema([("name", pa.string()), ("age", pa.int64())]))
    "In CSV column 'age': Row #3: CSV conversion error to int64: invalid value"
    """
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = re.sub(r"(Expected \d+ columns?, got \d+)\s*:.*", r"\1", text)
    text = re.sub(r"(invalid value|Invalid value|value)\s+'.*?'(\s|$)", r"\1\2", text).rstrip()
    text = re.sub(r"(Row #\d+)\s*:\s*\".*", r"\1", text)
    if schema is not None:
        text = re.sub(r"column #(\d+)", lambda m: _column_name(schema, int(m.group(1))), text)
    return scrub(text)[:160]  # an object store's error may echo a credential of the environment


def _column_name(schema: pa.Schema, index: int) -> str:
    return f"column '{schema.names[index]}'" if 0 <= index < len(schema.names) else f"column #{index}"


@dataclass(frozen=True)
class WriterSpec:
    """How a run's output parts are written, wherever and by whichever engine (it pickles)."""

    schema: pa.Schema
    rows_per_file: int
    compression: str

    def open(self, directory: Path, *, encryption: Callable[[], Any] | None = None,
             file_metadata: Callable[[], dict[str, str]] | None = None, prefix: str = "part") -> "PartWriter":
        """A :class:`PartWriter` of parts under ``directory`` (see there for ``encryption`` and ``file_metadata``)."""
        return PartWriter(directory, self.schema, rows_per_file=self.rows_per_file, compression=self.compression,
                          encryption=encryption, file_metadata=file_metadata, prefix=prefix)


class PartWriter:
    """Write tables as ``part-00000.parquet``, ``part-00001.parquet`` ... of at most ``rows_per_file`` rows."""

    def __init__(
        self,
        directory: Path,
        schema: pa.Schema,
        *,
        rows_per_file: int,
        compression: str,
        encryption: Callable[[], Any] | None = None,
        file_metadata: Callable[[], dict[str, str]] | None = None,
        prefix: str = "part",
    ) -> None:
        """``encryption`` makes fresh Parquet ``FileEncryptionProperties`` for each part (pyarrow does not
        reuse them); ``file_metadata`` is called when a part starts and gives its key-value metadata;
        parts are named ``{prefix}-00000.parquet`` ..."""
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self.rows_per_file = rows_per_file
        self.compression = None if compression == "none" else compression
        self.files: list[Path] = []
        self.file_rows: list[int] = []
        self.prefix = prefix
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._rows_in_file = 0
        self._encryption = encryption
        self._file_metadata = file_metadata

    def pieces(self, table: pa.Table) -> Iterator[pa.Table]:
        """Slices of ``table`` (rows before the stages) that each fit in the current part; a new part is
        started before a slice when the current one is full. Transform and :meth:`write` each slice before
        taking the next, and stages that key per file (recipient encryption) see every part start."""
        start = 0
        while start < table.num_rows:
            if self._writer is None or self._rows_in_file >= self.rows_per_file:
                self._roll()
            take = min(table.num_rows - start, self.rows_per_file - self._rows_in_file)
            yield table.slice(start, take)
            start += take

    def write(self, table: pa.Table) -> None:
        if table.schema != self.schema:
            table = table.cast(self.schema)
        start = 0
        while start < table.num_rows:
            if self._writer is None or self._rows_in_file >= self.rows_per_file:
                self._roll()
            take = min(table.num_rows - start, self.rows_per_file - self._rows_in_file)
            assert self._writer is not None
            self._writer.write_table(table.slice(start, take))
            self._rows_in_file += take
            self.file_rows[-1] += take
            self.rows += take
            start += take

    def close(self, *, empty_part: bool = True) -> list[Path]:
        """Finish the last part; with no rows at all, write one valid empty part (or none)."""
        if self._writer is None:
            if not empty_part:
                return self.files
            self._roll()  # an empty input still gives one valid, empty part
        assert self._writer is not None
        self._writer.close()
        self._writer = None
        return self.files

    def _roll(self) -> None:
        if self._writer is not None:
            self._writer.close()
        path = self.directory / f"{self.prefix}-{len(self.files):05d}.parquet"
        schema = self.schema
        if self._file_metadata is not None:
            schema = schema.with_metadata({**(schema.metadata or {}), **self._file_metadata()})
        properties = self._encryption() if self._encryption is not None else None
        self._writer = pq.ParquetWriter(path, schema, compression=self.compression, encryption_properties=properties)
        self.files.append(path)
        self.file_rows.append(0)
        self._rows_in_file = 0
