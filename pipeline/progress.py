"""Progress on long work: a rich bar when stderr is a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator

log = logging.getLogger("privprep")


class Progress:
    """Reports progress of the passes of a run. ``quiet`` silences it entirely."""

    def __init__(self, *, quiet: bool = False, terminal: bool | None = None) -> None:
        self.quiet = quiet
        self.terminal = sys.stderr.isatty() if terminal is None else terminal

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
        """A task of ``total`` rows; the yielded function advances it by a number of rows."""
        if self.quiet:
            yield lambda rows: None
            return
        started = time.perf_counter()
        if self.terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn
            from rich.console import Console

            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            with Bar(*columns, console=Console(stderr=True), transient=True) as bar:
                task_id = bar.add_task(description, total=total)
                yield lambda rows: bar.advance(task_id, rows)
        else:
            log.info("%s ...", description)
            yield lambda rows: None
        log.info("%s done in %.2f s", description, time.perf_counter() - started)
