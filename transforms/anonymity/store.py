"""Tuple counts spilled to disk: what :class:`~.tuples.TupleCounter` becomes once a table has more
distinct quasi-identifier tuples than memory should hold.

A store is a temporary directory of chunk files, each holding the integer codes of a run of tuples
(one narrow array per column) and their row counts. The dictionaries that give the codes meaning
stay in memory, so the files hold no cell value. A tuple may appear in more than one chunk (each
chunk is deduplicated on its own); every reader sums counts per tuple or per class, so duplicates
only cost disk space. The directory is private (mode 0700) and removed by :meth:`close`, when the
store is garbage-collected, or at interpreter exit.

>>> import numpy as np, pyarrow as pa
>>> store = TupleStore(["zip"], chunk_tuples=2)
>>> store.append(np.array([[0], [1], [2]], dtype=np.int32), np.array([3, 1, 1]))
>>> store.dictionaries = (pa.array(["a", "b", "c"]),)
>>> [(codes[0].tolist(), counts.tolist()) for codes, counts in store.chunks()]
[([0, 1], [3, 1]), ([2], [1])]
>>> store.rows, store.stored, store.column_counts(0).tolist()  # weighted counts, as float64
(5, 3, [3.0, 1.0, 1.0])
>>> store.close()
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from privprep.schemas.errors import OutputError

CHUNK_TUPLES = 1 << 20


class TupleStore:
    """Chunks of (codes, counts) on disk; read back one chunk at a time."""

    def __init__(self, columns: list[str], *, chunk_tuples: int = CHUNK_TUPLES, directory: str | os.PathLike[str] | None = None) -> None:
        self.columns = tuple(columns)
        self.dictionaries: tuple[pa.Array, ...] = ()
        self.chunk_tuples = int(chunk_tuples)
        try:
            self._dir = Path(tempfile.mkdtemp(prefix="privprep-tuples-", dir=directory))
        except OSError as exc:
            raise spill_error(directory or tempfile.gettempdir(), exc) from None
        self._files: list[Path] = []
        self._sizes: list[int] = []
        self._layouts: list[list[tuple[int, np.dtype]]] = []  # per chunk: (byte offset, dtype) per column, counts last
        self.rows = 0
        self._finalizer = weakref.finalize(self, shutil.rmtree, self._dir, True)

    @property
    def directory(self) -> Path:
        """The store's private directory (also a place for a reader's scratch files)."""
        return self._dir

    @property
    def stored(self) -> int:
        """Tuples held (a tuple in two chunks counts twice)."""
        return sum(self._sizes)

    def index(self, column: str) -> int:
        return self.columns.index(column)

    def append(self, codes: np.ndarray | list[np.ndarray], counts: np.ndarray) -> None:
        """Write tuples with their counts: ``codes`` has one row per tuple and one column per store
        column, or is a list of one code array per store column."""
        columns = [codes[:, j] for j in range(codes.shape[1])] if isinstance(codes, np.ndarray) else list(codes)
        if len(columns) != len(self.columns):
            raise ValueError(f"append() takes {len(self.columns)} code columns")
        top = max((int(c.max(initial=0)) for c in columns), default=0)
        dtype = np.uint8 if top < 1 << 8 else np.uint16 if top < 1 << 16 else np.int32  # each chunk as narrow as it can be
        count_dtype = np.uint8 if counts.max(initial=0) < 1 << 8 else np.int64
        for start in range(0, len(counts), self.chunk_tuples):
            stop = min(len(counts), start + self.chunk_tuples)
            path = self._dir / f"chunk-{len(self._files):06d}.bin"
            arrays = [c[start:stop].astype(dtype) for c in columns]
            arrays.append(counts[start:stop].astype(count_dtype))
            layout, offset = [], 0
            try:
                with open(path, "wb") as handle:  # raw arrays back to back: one read each, no header to parse
                    for array in arrays:
                        handle.write(array.tobytes())
                        layout.append((offset, array.dtype))
                        offset += array.nbytes
            except OSError as exc:
                raise spill_error(self._dir.parent, exc) from None
            self._files.append(path)
            self._sizes.append(stop - start)
            self._layouts.append(layout)
        self.rows += int(counts.sum())

    def chunks(self, columns: list[int] | None = None) -> Iterator[tuple[list[np.ndarray], np.ndarray]]:
        """Per chunk: the code arrays of ``columns`` (all by default) and the counts, each unsigned or
        int32/int64, as narrow as the chunk allows."""
        wanted = range(len(self.columns)) if columns is None else columns
        for path, size, layout in zip(self._files, self._sizes, self._layouts):
            with open(path, "rb") as handle:
                out = []
                for j in [*wanted, -1]:
                    offset, dtype = layout[j]
                    handle.seek(offset)
                    out.append(np.fromfile(handle, dtype=dtype, count=size))
            yield out[:-1], out[-1]

    def column_counts(self, j: int, minlength: int = 0) -> np.ndarray:
        """Rows per code of column ``j``."""
        out = np.zeros(minlength, dtype=np.float64)
        for (codes,), counts in self.chunks([j]):
            part = np.bincount(codes, weights=counts, minlength=len(out))
            if len(part) > len(out):
                part[: len(out)] += out
                out = part
            else:
                out += part
        return out

    def close(self) -> None:
        """Delete the files (idempotent)."""
        self._finalizer()
        self._files, self._sizes, self._layouts = [], [], []


def spill_error(directory: str | os.PathLike[str], exc: OSError) -> OutputError:
    """A one-line error for a spill directory that cannot be written (no value, no path inside it)."""
    reason = exc.strerror or type(exc).__name__
    return OutputError(
        f"k_anonymity: cannot write its temporary tuple counts under '{directory}' ({reason}); "
        "set TMPDIR to a writable local directory with free space, or raise memory_tuples"
    )


__all__ = ["TupleStore", "CHUNK_TUPLES", "spill_error"]
