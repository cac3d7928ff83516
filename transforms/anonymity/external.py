"""Evaluating lattice nodes over a :class:`~.store.TupleStore` in bounded memory.

The in-memory :class:`~.criteria.Evaluator` holds every distinct tuple. This one reads the store a
chunk at a time and splits each node's classes into buckets by a hash of the class key, so a class
never spans two buckets and each bucket is judged exactly on its own: memory follows the bucket
size (``bucket_tuples`` over all threads), not the table. Rows suppressed add up over buckets, so a node whose
suppression passes the limit is rejected without reading the remaining buckets. The numeric work
(class keys and the split per chunk, reading and numbering a bucket while the previous one is
judged) runs on ``threads`` threads, in order, so the result does not depend on them. Results are the
same as the in-memory evaluator's; classes are identified by their key in the generalized values'
mixed radix (what the ``k_anonymity`` stage's second pass computes for each row).

>>> import numpy as np, pyarrow as pa
>>> from .tuples import TupleCounter
>>> from ..hierarchies import build_hierarchy
>>> counter = TupleCounter(["zip"], spill_tuples=2)
>>> for z in (["10001", "10002"], ["10002", "20001"], ["10011", "10012"]):
...     counter.observe(pa.table({"zip": z}))
>>> store = counter.result()
>>> hierarchy = build_hierarchy({"mask": {}}, "zip", store.dictionaries[0])
>>> ev = ChunkedEvaluator(store, {"zip": hierarchy}, Criteria(k=2), bucket_tuples=2)
>>> [ev.evaluate((level,)).suppressed_rows for level in (0, 1, 5)]
[4, 1, 0]
>>> store.close()
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np

from ..hierarchies import Hierarchy
from .criteria import Criteria, NodeResult, factorize, judge, value_rank
from .store import TupleStore, spill_error

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_T = TypeVar("_T")
_R = TypeVar("_R")


class ChunkedEvaluator:
    """Evaluates nodes against :class:`Criteria` over tuples on disk, ``bucket_tuples`` at a time."""

    def __init__(self, store: TupleStore, hierarchies: dict[str, Hierarchy], criteria: Criteria, *, bucket_tuples: int,
                 threads: int | None = None) -> None:
        self.store = store
        self.threads = max(1, threads if threads is not None else min(os.cpu_count() or 1, 4))
        self.criteria = criteria
        self.qis = list(hierarchies)
        self.hierarchies = hierarchies
        self.n = store.rows
        self.limit = int(np.floor(criteria.suppression_limit * self.n + 1e-9))
        self.heights = [hierarchies[q].height for q in self.qis]
        self._tables = [[codes.astype(np.int32) for codes in hierarchies[q].level_codes()] for q in self.qis]
        self.cards = [[int(codes.max(initial=-1)) + 1 for codes in tables] for tables in self._tables]
        self._qi_columns = [store.index(q) for q in self.qis]
        names = [c.column for c in criteria.l_diversity] + [name for name, _ in criteria.t_closeness]
        self._sensitive = {name: value_rank(store.dictionaries[store.index(name)]) for name in dict.fromkeys(names)}
        self._overall = {}  # t-closeness compares each class with the whole table, not with its bucket
        for name, _ in criteria.t_closeness:
            j, rank = store.index(name), self._sensitive[name]
            counts = store.column_counts(j, minlength=len(store.dictionaries[j]))
            whole = np.bincount(rank, weights=counts, minlength=len(counts)) if rank is not None else counts
            self._overall[name] = whole / max(whole.sum(), 1)
        self._order = ["k", *(f"l_diversity[{c.column}]" for c in criteria.l_diversity), *(f"t_closeness[{n}]" for n, _ in criteria.t_closeness)]
        # each thread holds a bucket: together they hold about ``bucket_tuples`` tuples
        self.buckets = max(1, math.ceil(store.stored * self.threads / max(int(bucket_tuples), 1)))
        self.checks = 0

    @staticmethod
    def packable(store: TupleStore, qis: list[str]) -> bool:
        """Whether every node's class keys fit 62 bits (always, unless the quasi-identifiers together
        have more than about 4.6e18 combinations of values)."""
        return sum(math.log2(max(len(store.dictionaries[store.index(q)]), 1)) for q in qis) < 62

    def is_valid(self, node: tuple[int, ...]) -> tuple[bool, bool]:
        """(valid, monotone part valid), reading no more buckets than it takes to decide."""
        self.checks += 1
        result = self._evaluate(node, early=True, keep=False)
        return result.valid, result.monotone_valid

    def evaluate(self, node: tuple[int, ...], *, count: bool = True) -> NodeResult:
        """Every class of ``node`` (keys, sizes, violating) and its suppression."""
        self.checks += count
        return self._evaluate(node, early=False, keep=True)

    def bottom_profile(self) -> tuple[np.ndarray, np.ndarray, int]:
        """The distinct class sizes of the bottom node, how many classes have each, and the number of
        distinct tuples over all stored columns (a tuple stored in two chunks counts once)."""
        values, classes, tuples = [], [], 0
        extra = [j for j in range(len(self.store.columns)) if j not in self._qi_columns]
        radix = [len(self.store.dictionaries[j]) for j in extra]
        def profile(bucket: Bucket) -> tuple[np.ndarray, np.ndarray, int]:
            _keys, ids, counts, _sensitive, more = bucket
            sizes = np.bincount(ids, weights=counts).astype(np.int64)
            v, c = np.unique(sizes[sizes > 0], return_counts=True)
            return v, c, _count_distinct([ids, *more], [int(ids.max(initial=0)) + 1, *radix])

        for v, c, distinct in self._buckets(tuple(0 for _ in self.qis), extra=extra, then=profile):
            values.append(v)
            classes.append(c)
            tuples += distinct
        if not values:
            return np.empty(0, np.int64), np.empty(0, np.int64), 0
        v, inverse = np.unique(np.concatenate(values), return_inverse=True)
        return v, np.bincount(inverse, weights=np.concatenate(classes)).astype(np.int64), tuples

    # -- internals ---------------------------------------------------------------------------------
    def _evaluate(self, node: tuple[int, ...], *, early: bool, keep: bool) -> NodeResult:
        suppressed = mono_suppressed = n_classes = 0
        failed: set[str] = set()
        kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        def judged(bucket: Bucket) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]]:
            keys, ids, counts, sensitive, _ = bucket
            return keys, judge(self.criteria, ids, len(keys), counts, sensitive, self._overall)

        buckets = self._buckets(node, then=judged)
        for keys, (sizes, violating, mono_violating, names) in buckets:
            suppressed += int(sizes[violating].sum())
            mono_suppressed += int(sizes[mono_violating].sum())
            present = sizes > 0
            n_classes += int(present.sum())
            failed.update(names)
            if keep:
                kept.append((keys[present], sizes[present], violating[present]))
            if early and mono_suppressed > self.limit:
                buckets.close()  # neither the node nor its monotone part can be valid now: drop its files
                break
        valid = suppressed <= self.limit
        monotone_valid = valid if self.criteria.monotone else mono_suppressed <= self.limit
        keys_all = np.concatenate([k for k, _, _ in kept]) if kept else np.empty(0, np.int64)
        sizes_all = np.concatenate([s for _, s, _ in kept]) if kept else np.empty(0, np.int64)
        violating_all = np.concatenate([v for _, _, v in kept]) if kept else np.empty(0, bool)
        return NodeResult(
            node, None, n_classes, sizes_all, violating_all, suppressed, valid, monotone_valid,  # type: ignore[arg-type]
            [name for name in self._order if name in failed], class_keys=keys_all,
        )

    def _buckets(self, node: tuple[int, ...], *, then: Callable[[Bucket], _R],
                 extra: list[int] = ()) -> Iterator[_R]:  # type: ignore[assignment]
        """Per bucket of classes, ``then`` of: the class keys, each tuple's index among them, the tuple
        counts, the sensitive codes and the codes of the ``extra`` store columns (``then`` runs on the
        pool, so the next bucket is judged while the caller adds up this one).

        One pass computes every tuple's class key and writes the tuples, split by a hash of the key,
        to one file set per bucket; the buckets are then read back in order. A bucket's classes
        are numbered by the key itself when the key space is small, else by one sort."""
        tables = [self._tables[i][level] for i, level in enumerate(node)]
        radix = [self.cards[i][level] for i, level in enumerate(node)]
        space = math.prod(radix)
        sensitive_columns = [self.store.index(name) for name in self._sensitive]
        wanted = [*self._qi_columns, *sensitive_columns, *extra]
        d = len(self._qi_columns)
        n_sensitive = len(sensitive_columns)

        def keyed(chunk: tuple[list[np.ndarray], np.ndarray]) -> list[np.ndarray]:
            columns, counts = chunk
            return [_generalized_key(columns[:d], tables, radix), counts, *columns[d:]]

        with ThreadPoolExecutor(self.threads, thread_name_prefix="privprep-kanon") as pool:
            if self.buckets == 1:
                parts = list(_in_order(pool, keyed, self.store.chunks(wanted), self.threads - 1))
                if parts:
                    yield then(self._bucket_arrays([np.concatenate(arrays) for arrays in zip(*parts)], space, n_sensitive))
                return
            widths = [np.dtype(np.int64), np.dtype(np.int32 if self.store.rows < 1 << 31 else np.int64)]
            widths += [_code_dtype(len(self.store.dictionaries[j])) for j in wanted[d:]]
            try:
                spill = _BucketFiles(self.store.directory, self.buckets, widths)
            except OSError as exc:
                raise spill_error(self.store.directory.parent, exc) from None

            def split(chunk: tuple[list[np.ndarray], np.ndarray]) -> list[list[bytes]]:
                arrays = keyed(chunk)
                return spill.split(_bucket(arrays[0], self.buckets), arrays)

            def load(p: int) -> tuple[_R] | None:
                arrays = spill.read(p)
                return (then(self._bucket_arrays(arrays, space, n_sensitive)),) if len(arrays[0]) else None

            loaded = None
            try:
                for blocks in _in_order(pool, split, self.store.chunks(wanted), self.threads):  # one more: this thread writes
                    try:
                        spill.append(blocks)
                    except OSError as exc:
                        raise spill_error(self.store.directory.parent, exc) from None
                spill.finish()
                loaded = _in_order(pool, load, range(self.buckets), self.threads - 1)
                for bucket in loaded:
                    if bucket is not None:
                        yield bucket[0]
            finally:
                if loaded is not None:
                    loaded.close()  # waits for a bucket still loading before its files go
                spill.close()

    def _bucket_arrays(self, arrays: list[np.ndarray], space: int, n_sensitive: int) -> Bucket:
        key, counts = arrays[0], arrays[1].astype(np.int64)
        if space <= 4 * len(key) + 4096:
            class_keys, ids = np.arange(space, dtype=np.int64), key
        else:
            class_keys, ids = factorize(key)
        sensitive = {}
        for (name, rank), codes in zip(self._sensitive.items(), arrays[2 : 2 + n_sensitive]):
            codes = codes.astype(np.int64)
            sensitive[name] = (np.take(rank, codes), True) if rank is not None else (codes, False)
        return class_keys, ids, counts, sensitive, arrays[2 + n_sensitive :]


Bucket = tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, tuple[np.ndarray, bool]], list[np.ndarray]]


class _BucketFiles:
    """Per bucket, one append-only file per array; written chunk by chunk, read back whole."""

    def __init__(self, directory: Path, buckets: int, dtypes: list[np.dtype]) -> None:
        self._paths = [[directory / f"bucket-{p:05d}-{a}.bin" for a in range(len(dtypes))] for p in range(buckets)]
        self._handles = [[open(path, "wb") for path in paths] for paths in self._paths]
        self._dtypes = dtypes

    def split(self, which: np.ndarray, arrays: list[np.ndarray]) -> list[list[bytes]]:
        """Per bucket, per array, the bytes of the rows whose ``which`` is that bucket (no I/O; thread-safe)."""
        arrays = [array.astype(dtype, copy=False) for array, dtype in zip(arrays, self._dtypes)]
        if len(self._handles) <= 3:  # a scan per bucket beats sorting by bucket
            indices = [np.flatnonzero(which == p) for p in range(len(self._handles))]
            return [[np.take(array, index).tobytes() for array in arrays] for index in indices]
        order = np.argsort(which, kind="stable")  # a radix sort of the small bucket numbers
        bounds = np.concatenate(([0], np.cumsum(np.bincount(which, minlength=len(self._handles)))))
        ordered = [np.take(array, order) for array in arrays]
        return [[array[bounds[p] : bounds[p + 1]].tobytes() for array in ordered] for p in range(len(self._handles))]

    def append(self, blocks: list[list[bytes]]) -> None:
        for handles, per_array in zip(self._handles, blocks):
            for handle, block in zip(handles, per_array):
                if block:
                    handle.write(block)

    def finish(self) -> None:
        """Every bucket written: flush and close the files, so they can be read back on any thread."""
        for handles in self._handles:
            for handle in handles:
                handle.close()

    def read(self, p: int) -> list[np.ndarray]:
        for handle in self._handles[p]:
            handle.close()
        out = []
        for a, path in enumerate(self._paths[p]):
            out.append(np.fromfile(path, dtype=self._dtypes[a]))
            path.unlink()
        return out

    def close(self) -> None:
        for paths, handles in zip(self._paths, self._handles):
            for path, handle in zip(paths, handles):
                handle.close()
                path.unlink(missing_ok=True)


def _in_order(pool: ThreadPoolExecutor, func: Callable[[_T], _R], items: Iterable[_T], ahead: int) -> Iterator[_R]:
    """``func`` over ``items`` on ``pool``, results in order, at most ``ahead`` + 1 items taken at a time
    (``Executor.map`` would take them all). Closing it early waits for the calls still running."""
    pending: deque[Future[_R]] = deque()
    source = iter(items)
    try:
        for item in source:
            pending.append(pool.submit(func, item))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        for future in pending:
            if not future.cancelled():
                future.exception()  # wait; its error, if any, is not the one being raised


def _generalized_key(columns: list[np.ndarray], tables: list[np.ndarray], radix: list[int]) -> np.ndarray:
    key = np.take(tables[0].astype(np.int64), columns[0])
    for codes, table, r in zip(columns[1:], tables[1:], radix[1:]):
        key *= r
        key += np.take(table, codes)
    return key


def _code_dtype(size: int) -> np.dtype:
    return np.dtype(np.uint8 if size <= 1 << 8 else np.uint16 if size <= 1 << 16 else np.int32)


def _count_distinct(columns: list[np.ndarray], radix: list[int]) -> int:
    """Distinct rows of equally long code arrays (one sort of a packed key)."""
    if sum(math.log2(max(r, 1)) for r in radix) >= 62:  # pragma: no cover - astronomically many combinations
        stacked = np.column_stack(columns).astype(np.int64)
        return len(np.unique(stacked, axis=0))
    key = columns[0].astype(np.int64)
    for codes, r in zip(columns[1:], radix[1:]):
        key *= r
        key += codes
    key.sort()
    return int(len(key) and 1 + np.count_nonzero(key[1:] != key[:-1]))


def _bucket(key: np.ndarray, buckets: int) -> np.ndarray:
    """A bucket number per key from a multiplicative hash (so neighbouring keys spread out)."""
    mixed = np.multiply(key.view(np.uint64), _GOLDEN, dtype=np.uint64)
    mixed >>= np.uint64(32)
    mixed *= np.uint64(buckets)  # the high 32 bits of the hash, scaled to 0..buckets-1
    mixed >>= np.uint64(32)
    return mixed.astype(np.uint16 if buckets < 1 << 16 else np.int64)


__all__ = ["ChunkedEvaluator"]
