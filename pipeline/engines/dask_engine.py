"""The Dask engine: the same stage objects as the streaming engine, over Dask partitions.

* The input's pieces (runs of whole Parquet row groups, see :meth:`InputSource.pieces`) are the
  partitions, read on the workers exactly as the streaming engine reads them.
* Pass 1: every partition is observed by its own copy of each global/release stage; the copies are
  combined by a tree reduction (``merge``, ``split_every`` at a time, left to right), and the result is
  merged into the client's stage, which then decides or releases on the client.
* Pass 2: ``dask.dataframe.from_map`` over the pieces, with an explicit ``meta``: one task per
  partition reads its piece batch by batch, runs every map and global stage on each batch exactly as
  the streaming engine does over its input, and writes the partition as Parquet parts; the parts are
  then renamed in input order into ``data/part-NNNNN.parquet``. A partition is never whole in memory
  and nothing moves between workers but the small table of parts (with each stage's rows and seconds).

The output has the same rows in the same order as the streaming engine's, the same pseudonyms,
tokens, generalization and suppression, and the same DP releases for the same seed (partial sums are
kept per batch and added exactly, see :class:`~privprep.transforms.dp.queries.PartialSums`); only
the cut into files and the random nonces of ciphertexts differ.

Keys: stages carry their keys inside the task definitions, which Dask keeps in memory and never
spills to disk (only task results spill, and no task result holds a key); key material has no
``repr`` and stages tokenize without hashing it. On a remote cluster use TLS (``tls://`` addresses).

>>> DaskEngine(scheduler="synchronous").describe()["scheduler"]
'synchronous'
"""

from __future__ import annotations

import copy
import logging
import os
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pandas as pd

from privprep.schemas.errors import NotAvailableError, UsageError
from privprep.transforms.base import GlobalStage, ReleaseStage, RowStage, Stage

from .engine import Observer, PassResult, StageTally, WriteResult
from ..files.io import InputSource, Piece, WriterSpec
from ..files.output_files import OutputFiles
from ..keys.column_encryption import ColumnEncryption
from .plan import Plan
from .progress import Progress

log = logging.getLogger(__name__)
LOCAL_SCHEDULERS = ("synchronous", "threads", "processes")
SPLIT_EVERY = 8


def _dask() -> Any:
    try:
        import dask
        import dask.dataframe  # noqa: F401
    except ImportError:
        raise NotAvailableError("--engine dask needs Dask: pip install 'privprep[dask]'") from None
    return dask


class DaskEngine:
    """Run the data passes on Dask.

    Parameters
    ----------
    scheduler:
        ``None``: start a local cluster of one single-threaded worker process per core; a scheduler
        address (``tcp://host:8786``, ``tls://...``) to use an existing cluster; or one of Dask's
        local schedulers ``synchronous``, ``threads``, ``processes`` (no cluster; for tests and debugging).
    workers:
        Worker processes of the local cluster (default: ``PRIVPREP_DASK_WORKERS``, else the machine's cores).
    client:
        An existing ``distributed.Client`` to run on (ETL code that already has one).
    """

    name = "dask"

    def __init__(self, *, scheduler: str | None = None, workers: int | None = None, client: Any = None) -> None:
        _dask()
        if workers is None and os.environ.get("PRIVPREP_DASK_WORKERS"):
            try:
                workers = int(os.environ["PRIVPREP_DASK_WORKERS"])
            except ValueError:
                raise UsageError("PRIVPREP_DASK_WORKERS must be a whole number of worker processes") from None
        if workers is not None and workers < 1:
            raise UsageError("the Dask local cluster needs at least 1 worker (PRIVPREP_DASK_WORKERS)")
        self.scheduler = scheduler
        self.workers = workers
        self.client = client
        self.partitions = 0
        self._given = client is not None
        self._label = "client" if client is not None else (scheduler or "local cluster")
        self._stack: ExitStack | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> "DaskEngine":
        dask = _dask()
        self._stack = ExitStack()
        # Keep Arrow types as they are; a stage sees exactly what the streaming engine gives it.
        self._stack.enter_context(dask.config.set({"dataframe.convert-string": False}))
        if self.client is not None:
            return self
        if self.scheduler in LOCAL_SCHEDULERS:
            self._stack.enter_context(dask.config.set(scheduler=self.scheduler))
            return self
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise NotAvailableError("--engine dask needs distributed: pip install 'privprep[dask]'") from None
        if self.scheduler is None:
            workers = self.workers or os.cpu_count() or 1
            # No spilling to disk and quiet workers: nothing of the data or the stages reaches disk or logs.
            # Tuned for one batch job: no statistical profiler (it samples every worker's stack every
            # 10 ms: 8 % of pass 2 here; a run has no dashboard to show it on), and the nanny's usual
            # environment without MALLOC_TRIM_THRESHOLD_ (returning freed memory at once, then
            # faulting it back in, cost another 7 %).
            self._stack.enter_context(dask.config.set({
                "distributed.worker.memory.spill": False,
                "distributed.worker.memory.target": False,
                "distributed.logging.distributed": "error",
                "distributed.worker.profile.enabled": False,
                "distributed.nanny.pre-spawn-environ": {
                    "OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1,
                    "MALLOC_TRIM_THRESHOLD_": None,  # Dask's way to leave it out (one set in the environment stays)
                },
            }))
            cluster = self._stack.enter_context(LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                silence_logs=logging.ERROR,
            ))
            self.client = self._stack.enter_context(Client(cluster))
        else:
            timeout = os.environ.get("PRIVPREP_DASK_CONNECT_TIMEOUT", "20s")
            try:
                self.client = self._stack.enter_context(Client(self.scheduler, timeout=timeout))
            except (OSError, TimeoutError, ValueError) as exc:
                self._stack.close()
                raise UsageError(f"--scheduler '{self.scheduler}': cannot reach the Dask scheduler ({type(exc).__name__}); "
                                 "check the address, or leave --scheduler out to start a local cluster") from None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._stack is not None:
            self._stack.close()  # closes the client and cluster this engine started, not one it was given
            self._stack = None
        if not self._given:
            self.client = None

    def describe(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": self.name, "partitions": self.partitions, "scheduler": self._label}
        if self.client is not None:
            try:
                entry["workers"] = len(self.client.scheduler_info().get("workers", {}))
            except Exception:  # pragma: no cover - informational only
                pass
        return entry

    # -- pass 1 ----------------------------------------------------------------------------------
    def observe(self, plan: Plan, observers: list[Observer], columns: list[str], progress: Progress,
                seconds: dict[int, float] | None = None) -> PassResult:
        from dask import delayed

        for observer in observers:
            if type(observer.stage).merge in (GlobalStage.merge, ReleaseStage.merge):
                raise NotAvailableError(
                    f"stage '{observer.stage.name}' cannot run on the Dask engine: it does not merge partial "
                    "observations (merge()); use --engine streaming"
                )
        io = plan.loaded.config.io
        pieces = plan.source.pieces(io.partition_rows)
        self.partitions = len(pieces)
        observe = delayed(_observe_piece, pure=False)
        combine = delayed(_combine, pure=False)
        with progress.step(f"observing {len(pieces)} partition(s) on Dask"):
            t0 = time.perf_counter()
            level = [observe(plan.source, piece, columns, observers, io.batch_rows) for piece in pieces]
            while len(level) > 1:  # a tree: SPLIT_EVERY partial results at a time, kept in input order
                level = [combine(*level[i:i + SPLIT_EVERY]) for i in range(0, len(level), SPLIT_EVERY)]
            (observed,) = self._compute(level[0])
        for observer, copy in zip(observers, observed):
            observer.stage.merge(copy)
        elapsed = time.perf_counter() - t0
        result = PassResult(seconds={o.index: elapsed / max(len(observers), 1) for o in observers})
        result._add_to(seconds)
        return result

    # -- pass 2 ----------------------------------------------------------------------------------
    def write(self, plan: Plan, data_dir: Path, outputs: OutputFiles, progress: Progress,
              seconds: dict[int, float] | None = None) -> WriteResult:
        import dask.dataframe as dd

        io = plan.loaded.config.io
        source = plan.source
        pieces = source.pieces(io.partition_rows)
        self.partitions = len(pieces)
        data_dir.mkdir(parents=True, exist_ok=True)
        row_stages = plan.row_steps
        indices = [i for i, _ in row_stages]
        # One task per partition reads its piece batch by batch, runs every row stage on each batch as
        # the streaming engine does, and writes the partition's parts: the partition is never whole in
        # memory, and nothing moves between workers but the small table of parts written.
        parts = dd.from_map(_write_piece, range(len(pieces)), pieces, source=source, stages=row_stages,
                            spec=plan.writer_spec, directory=str(data_dir), encryption=outputs.encryption,
                            batch_rows=io.batch_rows, meta=_written_meta(indices), enforce_metadata=False)
        with progress.step(f"writing {len(pieces)} partition(s) on Dask"):
            (table,) = self._compute(parts)
        summary = table[table["part"] < 0]
        table = table[table["part"] >= 0].sort_values(["partition", "part"], kind="stable")
        files = _rename_in_order(data_dir, table)
        rows_out = int(table["rows"].sum())
        if not files:  # every row suppressed or an empty input: one valid, empty part, like streaming
            files = outputs.open_writer(plan.writer_spec, data_dir).close()
        result = WriteResult(seconds={i: float(summary[f"seconds_{i}"].sum()) for i in indices},
                             rows_in=int(summary["rows"].sum()), rows_out=rows_out, files=files,
                             rows_in_by_stage={i: int(summary[f"in_{i}"].sum()) for i in indices},
                             rows_out_by_stage={i: int(summary[f"out_{i}"].sum()) for i in indices})
        result._add_to(seconds)
        return result

    def _compute(self, *collections: Any) -> tuple[Any, ...]:
        if self.client is not None:
            futures = self.client.compute(list(collections))
            return tuple(self.client.gather(futures))
        import dask

        return dask.compute(*collections)


# -- tasks (module-level functions: they run on the workers) -----------------------------------------

def _observe_piece(source: InputSource, piece: Piece, columns: list[str], observers: list[Observer],
                   batch_rows: int) -> list[Stage]:
    """Observe one partition, batch by batch as the streaming engine does; returns the observed copies."""
    observers = copy.deepcopy(observers)  # local schedulers pass the client's own objects: never mutate them
    for table in source.read(piece, columns, batch_rows=batch_rows):
        for observer in observers:
            observer.feed(table)
    return [observer.stage for observer in observers]


def _combine(*partials: list[Stage]) -> list[Stage]:
    first = partials[0]
    for other in partials[1:]:
        for mine, theirs in zip(first, other):
            mine.merge(theirs)
    return first


def _written_meta(indices: list[int]) -> pd.DataFrame:
    """One row per part written (``part`` >= 0) and one summary row per partition (``part`` -1: rows
    read, and rows in, rows out and seconds of each row stage by its index)."""
    columns: dict[str, pd.Series] = {
        "partition": pd.Series([], dtype="int64"), "part": pd.Series([], dtype="int64"),
        "file": pd.Series([], dtype="object"), "rows": pd.Series([], dtype="int64"),
    }
    for index in indices:
        columns[f"in_{index}"] = pd.Series([], dtype="int64")
        columns[f"out_{index}"] = pd.Series([], dtype="int64")
        columns[f"seconds_{index}"] = pd.Series([], dtype="float64")
    return pd.DataFrame(columns)


def _write_piece(number: int, piece: Piece, *, source: InputSource, stages: list[tuple[int, RowStage]],
                 spec: WriterSpec, directory: str, encryption: ColumnEncryption | None, batch_rows: int) -> pd.DataFrame:
    """Read one piece batch by batch, run the row stages (index, stage) on each batch and write the
    partition as Parquet parts named after its ``number``; returns the parts and the partition's
    counts (:func:`_written_meta`)."""
    # Per-file stages hold this partition's data keys: one copy per task (the others are only read).
    stages = [(i, copy.deepcopy(s) if s.per_file else s) for i, s in stages]
    outputs = OutputFiles(encryption=encryption, per_file=[s for _, s in stages if s.per_file])
    parts = outputs.open_writer(spec, Path(directory), prefix=f".partition-{number:06d}")
    tally = StageTally()
    read = 0
    for batch in outputs.batches(source.read(piece, batch_rows=batch_rows), parts):
        read += batch.num_rows
        parts.write(tally.run(batch, stages))
    files = parts.close(empty_part=False)  # a partition whose rows were all suppressed writes no part
    result = pd.DataFrame({
        "partition": pd.Series([number] * (len(files) + 1), dtype="int64"),
        "part": pd.Series([*range(len(files)), -1], dtype="int64"),
        "file": pd.Series([*(str(f) for f in files), ""], dtype="object"),
        "rows": pd.Series([*parts.file_rows, read], dtype="int64"),
    })
    for index, _ in stages:
        result[f"in_{index}"] = pd.Series([0] * len(files) + [tally.rows_in[index]], dtype="int64")
        result[f"out_{index}"] = pd.Series([0] * len(files) + [tally.rows_out[index]], dtype="int64")
        result[f"seconds_{index}"] = pd.Series([0.0] * len(files) + [tally.seconds[index]], dtype="float64")
    return result


def _rename_in_order(data_dir: Path, table: pd.DataFrame) -> list[Path]:
    """Partition parts to ``part-00000.parquet`` ... in input order (partition, then part)."""
    files: list[Path] = []
    for name in table["file"]:
        target = data_dir / f"part-{len(files):05d}.parquet"
        os.replace(name, target)
        files.append(target)
    return files


__all__ = ["DaskEngine"]
