"""Evaluating lattice nodes over a :class:`~.store.TupleStore` in bounded memory.

The in-memory :class:`~.criteria.Evaluator` holds every distinct tuple. This one reads the store a
chunk at a time and splits each node's classes into buckets by a hash of the class key, so a class
never spans two buckets and each bucket is judged exactly on its own: memory follows the bucket
size (``bucket_tuples``), not the table. Rows suppressed add up over buckets, so a node whose
suppression passes the limit is rejected without reading the remaining buckets. Results are the
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
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..hierarchies import Hierarchy
from .criteria import Criteria, NodeResult, factorize, judge, value_rank
from .store import TupleStore, spill_error

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


class ChunkedEvaluator:
    """Evaluates nodes against :class:`Criteria` over tuples on disk, ``bucket_tuples`` at a time."""

    def __init__(self, store: TupleStore, hierarchies: dict[str, Hierarchy], criteria: Criteria, *, bucket_tuples: int) -> None:
        self.store = store
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
        self.buckets = max(1, math.ceil(store.stored / max(int(bucket_tuples), 1)))
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
        for _keys, ids, counts, _sensitive, more in self._buckets(tuple(0 for _ in self.qis), extra=extra):
            sizes = np.bincount(ids, weights=counts).astype(np.int64)
            v, c = np.unique(sizes[sizes > 0], return_counts=True)
            values.append(v)
            classes.append(c)
            tuples += _count_distinct([ids, *more], [int(ids.max(initial=0)) + 1, *radix])
        if not values:
            return np.empty(0, np.int64), np.empty(0, np.int64), 0
        v, inverse = np.unique(np.concatenate(values), return_inverse=True)
        return v, np.bincount(inverse, weights=np.concatenate(classes)).astype(np.int64), tuples

    # -- internals ---------------------------------------------------------------------------------
    def _evaluate(self, node: tuple[int, ...], *, early: bool, keep: bool) -> NodeResult:
        suppressed = mono_suppressed = n_classes = 0
        failed: set[str] = set()
        kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        buckets = self._buckets(node)
        for keys, ids, counts, sensitive, _ in buckets:
            sizes, violating, mono_violating, names = judge(self.criteria, ids, len(keys), counts, sensitive, self._overall)
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

    def _buckets(self, node: tuple[int, ...], *, extra: list[int] = ()) -> Iterator[Bucket]:  # type: ignore[assignment]
        """Per bucket of classes: the class keys, each tuple's index among them, the tuple counts, the
        sensitive codes and the codes of the ``extra`` store columns.

        One pass computes every tuple's class key and writes the tuples, split by a hash of the key,
        to one file set per bucket; the buckets are then read back one at a time. A bucket's classes
        are numbered by the key itself when the key space is small, else by one sort."""
        tables = [self._tables[i][level] for i, level in enumerate(node)]
        radix = [self.cards[i][level] for i, level in enumerate(node)]
        space = math.prod(radix)
        sensitive_columns = [self.store.index(name) for name in self._sensitive]
        wanted = [*self._qi_columns, *sensitive_columns, *extra]
        d = len(self._qi_columns)
        if self.buckets == 1:
            parts: list[list[np.ndarray]] = []
            for columns, counts in self.store.chunks(wanted):
                parts.append([_generalized_key(columns[:d], tables, radix), counts, *columns[d:]])
            if parts:
                yield self._bucket_arrays([np.concatenate(arrays) for arrays in zip(*parts)], space, len(sensitive_columns))
            return
        widths = [np.dtype(np.int64), np.dtype(np.int32 if self.store.rows < 1 << 31 else np.int64)]
        widths += [_code_dtype(len(self.store.dictionaries[j])) for j in wanted[d:]]
        try:
            spill = _BucketFiles(self.store.directory, self.buckets, widths)
        except OSError as exc:
            raise spill_error(self.store.directory.parent, exc) from None
        try:
            for columns, counts in self.store.chunks(wanted):
                key = _generalized_key(columns[:d], tables, radix)
                try:
                    spill.write(_bucket(key, self.buckets), [key, counts, *columns[d:]])
                except OSError as exc:
                    raise spill_error(self.store.directory.parent, exc) from None
            for p in range(self.buckets):
                arrays = spill.read(p)
                if len(arrays[0]):
                    yield self._bucket_arrays(arrays, space, len(sensitive_columns))
        finally:
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

    def write(self, which: np.ndarray, arrays: list[np.ndarray]) -> None:
        arrays = [array.astype(dtype, copy=False) for array, dtype in zip(arrays, self._dtypes)]
        if len(self._handles) <= 3:  # a scan per bucket beats sorting by bucket
            for p, handles in enumerate(self._handles):
                index = np.flatnonzero(which == p)
                for handle, array in zip(handles, arrays):
                    handle.write(np.take(array, index).tobytes())
            return
        order = np.argsort(which, kind="stable")  # a radix sort of the small bucket numbers
        bounds = np.concatenate(([0], np.cumsum(np.bincount(which, minlength=len(self._handles)))))
        for a, array in enumerate(arrays):
            ordered = np.take(array, order)
            for p, handles in enumerate(self._handles):
                if bounds[p + 1] > bounds[p]:
                    handles[a].write(ordered[bounds[p] : bounds[p + 1]].tobytes())

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
