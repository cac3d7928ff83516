"""Overlapping the streaming write pass: reading ahead and writing behind on worker threads.

The stages of a batch run in Python (the keyed hashes hold the GIL); Parquet decoding, encoding and
compression run in Arrow's C++ code, which releases it. With the next batch read on one thread and
the previous one written on another, the pass takes about as long as its slowest part instead of
the sum of all three. Order is kept (one reader, one writer, FIFO queues) and memory stays bounded
(at most ``depth`` batches wait on each side). An error on a worker is raised in the caller at its
next call; stopping early (an error in a stage) stops the workers.

>>> list(prefetch(iter(range(5))))
[0, 1, 2, 3, 4]
>>> seen = []
>>> writer = WriteBehind(seen.append, depth=2)
>>> for i in range(3):
...     writer.write(i)
>>> writer.join(); seen
[0, 1, 2]
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
_DONE = object()


def prefetch(items: Iterable[T], *, depth: int = 2) -> Iterator[T]:
    """Yield ``items`` in order while a worker thread produces up to ``depth`` ahead."""
    slots: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if not _put(slots, (None, item), stop):
                    return
            _put(slots, (None, _DONE), stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            _put(slots, (exc, None), stop)

    worker = threading.Thread(target=produce, name="privprep-read", daemon=True)
    worker.start()
    try:
        while True:
            error, item = slots.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        _drain(slots)
        worker.join()


class WriteBehind:
    """Call ``write`` on each item, in order, on one worker thread, at most ``depth`` items behind."""

    def __init__(self, write: Callable[[Any], None], *, depth: int = 2) -> None:
        self._write = write
        self._slots: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._consume, name="privprep-write", daemon=True)
        self._worker.start()

    def write(self, item: Any) -> None:
        """Queue ``item``; raises the worker's error, if it had one."""
        self._raise()
        if not _put(self._slots, item, self._stop):
            self._raise()

    def join(self) -> None:
        """Wait until every queued item is written; raises the worker's error, if it had one."""
        _put(self._slots, _DONE, self._stop)
        self._worker.join()
        self._raise()

    def abort(self) -> None:
        """Stop without writing what is still queued (the run failed)."""
        self._stop.set()
        _drain(self._slots)
        self._worker.join()

    def _consume(self) -> None:
        while True:
            try:  # a timeout, so that abort() wakes a worker waiting on an empty queue
                item = self._slots.get(timeout=0.05)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            if item is _DONE or self._stop.is_set():
                return
            try:
                self._write(item)
            except BaseException as exc:  # noqa: BLE001 - raised in the caller
                self._error = exc
                self._stop.set()
                _drain(self._slots)
                return

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error


def _put(slots: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    """Put ``item`` unless ``stop`` is set first; whether it was put."""
    while not stop.is_set():
        try:
            slots.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _drain(slots: queue.Queue[Any]) -> None:
    while True:
        try:
            slots.get_nowait()
        except queue.Empty:
            return


__all__ = ["WriteBehind", "prefetch"]
