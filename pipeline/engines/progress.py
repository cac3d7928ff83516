"""Progress and log lines of long work.

* On a terminal (stderr is a tty): a rich progress bar per pass over the rows and a spinner per stage
  step (a lattice search, a DP release, training), each followed by a "done" log line.
* Elsewhere: plain log lines when a pass or step starts and ends, and every ``log_every`` seconds in
  between (``writing: 1,200,000 of 20,000,000 rows (6%)``).
* ``--log-format json`` (:func:`configure_logging`): one JSON object per line, with the structured
  fields of each event (``event``, ``task``, ``rows``, ``total``, ``seconds``) beside the message.

Log lines carry counts, names and times only, never a cell value or key.

>>> import io, json, logging
>>> stream = io.StringIO()
>>> configure_logging(quiet=False, log_format="json", stream=stream)
>>> with Progress(terminal=False).task("writing", 10) as advance:
...     advance(10)
>>> [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
['task_start', 'task_done']
>>> logging.getLogger("privprep").handlers.clear()
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import IO, Any, Callable, Iterator

log = logging.getLogger("privprep")
LOG_FORMATS = ("text", "json")
#: Structured fields a log record may carry (``extra=``); the JSON format writes them out.
FIELDS = ("event", "task", "rows", "total", "seconds", "run_dir", "rows_removed", "path")


class Progress:
    """Reports progress of the passes and stage steps of a run. ``quiet`` silences it entirely."""

    def __init__(self, *, quiet: bool = False, terminal: bool | None = None, console: Any = None, log_every: float = 10.0) -> None:
        self.quiet = quiet
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self.console = console
        self.log_every = log_every

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
        """A pass over ``total`` rows (None: unknown); the yielded function advances it by a number of rows."""
        if self.quiet:
            yield lambda rows: None
            return
        started = time.perf_counter()
        done = [0]
        if self.terminal:
            from rich.progress import (BarColumn, MofNCompleteColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                       TextColumn("rows"), TimeElapsedColumn())
            if total:  # an estimate of the time left, where the total is known
                columns += (TextColumn("elapsed,"), TimeRemainingColumn(), TextColumn("left"))
            with self._bar(*columns) as bar:
                task_id = bar.add_task(description, total=total)

                def advance(rows: int) -> None:
                    done[0] += rows
                    bar.advance(task_id, rows)

                yield advance
        else:
            log.info("%s ...", description, extra={"event": "task_start", "task": description, "total": total})
            last = [started]

            def advance(rows: int) -> None:
                done[0] += rows
                now = time.perf_counter()
                if now - last[0] >= self.log_every:
                    last[0] = now
                    share = f" ({done[0] / total:.0%})" if total else ""
                    of = f" of {total:,}" if total else ""
                    log.info("%s: %s%s rows%s", description, f"{done[0]:,}", of, share,
                             extra={"event": "task_progress", "task": description, "rows": done[0], "total": total})

            yield advance
        seconds = time.perf_counter() - started
        log.info("%s done in %.2f s", description, seconds,
                 extra={"event": "task_done", "task": description, "rows": done[0], "seconds": round(seconds, 4)})

    @contextmanager
    def step(self, description: str) -> Iterator[None]:
        """One stage's work without a row count (a search, a release, training): a spinner on a terminal."""
        if self.quiet:
            yield
            return
        started = time.perf_counter()
        if self.terminal:
            from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

            with self._bar(SpinnerColumn(), TextColumn("[bold]{task.description}"), TimeElapsedColumn()) as bar:
                bar.add_task(description, total=None)
                yield
        else:
            log.info("%s ...", description, extra={"event": "step_start", "task": description})
            yield
        seconds = time.perf_counter() - started
        log.info("%s done in %.2f s", description, seconds, extra={"event": "step_done", "task": description, "seconds": round(seconds, 4)})

    def _bar(self, *columns: Any) -> Any:
        from rich.console import Console
        from rich.progress import Progress as Bar

        return Bar(*columns, console=self.console or Console(stderr=True), transient=True)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(*, quiet: bool, log_format: str = "text", stream: IO[str] | None = None) -> None:
    """Send privprep's log lines to ``stream`` (stderr): plain ``privprep: ...`` lines or JSON lines."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter("privprep: %(message)s"))
    root = logging.getLogger("privprep")
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if quiet else logging.INFO)


def json_logging() -> bool:
    """Whether privprep's log lines are JSON (``--log-format json``)."""
    return any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger("privprep").handlers)


__all__ = ["LOG_FORMATS", "JsonFormatter", "Progress", "configure_logging", "json_logging"]
