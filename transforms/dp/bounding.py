"""Contribution bounding: each person keeps at most ``L0`` partitions and ``Linf`` rows per partition.

Sampler (seeded, order-independent). Every priority is a keyed 64-bit hash, so it depends on the
data and the seed only, never on the order rows arrive in, how they are cut into batches, files or
Dask partitions:

* a person's partition ``p`` has priority ``mix(mix(u ^ s1) + mix(p ^ s2))`` (``u``: the hash of the
  privacy unit's value, ``mix``: the splitmix64 finalizer, ``s1, s2``: from the seed); the person
  keeps the ``L0`` partitions of lowest priority: a uniformly random subset of ``L0`` of their partitions;
* the ``j``-th copy of a value ``v`` (``j = 0 .. m-1`` among the person's ``m`` rows with that value in
  the partition) has priority ``mix(partition priority ^ mix(bits(v) ^ s3) ^ mix(j + 1))``; the person
  keeps the ``Linf`` rows of lowest priority: a uniformly random subset of ``Linf`` of their rows there.
  Rows with equal values are interchangeable, so numbering the copies of a value is order-independent.

State (:class:`ContributionStore`): ``(unit hash, partition, value, count)`` tuples, duplicates added
up (a mergeable reduction: the counts of two stores add), in 64 buckets by the unit hash's top bits,
so all of a person's rows meet in one bucket. Beyond ``memory_rows`` tuples the buckets are appended
to files in a private temporary directory; :meth:`ContributionStore.buckets` reads runs of buckets
of about ``memory_rows`` tuples, so memory is bounded by about twice ``memory_rows`` plus one bucket
(1/64 of the distinct tuples). Sums are kept per bucket (then added exactly), so where the tuples
sat (memory or disk) and how buckets were grouped never changes a released value.
Nothing raw is held or spilled: units and private keys as 64-bit hashes, values clipped to the bounds.

>>> u = hash_values(pa.array(["ann", "ann", "ann", "bob"]))
>>> p = np.array([1, 2, 2, 1], dtype=np.uint64)
>>> store = ContributionStore(memory_rows=1024)
>>> store.add(u, p, np.array([5.0, 1.0, 2.0, 3.0]))
>>> kept = [bound(*b, seed=7, max_partitions=1, max_rows=1) for b in store.buckets()]
>>> sum(int(k.weight.sum()) for k in kept), sum(k.dropped for k in kept)   # ann keeps 1 row of 3, bob his 1
(2, 2)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

BUCKET_BITS = 6
N_BUCKETS = 1 << BUCKET_BITS
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_NULL_HASH = np.uint64(0x9E3779B97F4A7C15)
Tuples = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # unit hash, partition, value, count


def mix(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer, elementwise on uint64 (a bijection that scrambles every bit).

    >>> mix(np.array([0, 1], dtype=np.uint64)).tolist()
    [0, 6238072747940578789]
    """
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def hash_values(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit hash of each value (stable across batches, files and processes); nulls share one hash.
    Each distinct value is hashed once (dictionary encoding), then taken back by code."""
    from pandas.util import hash_array  # SipHash of the value's bytes; imported on first use

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    if pa.types.is_integer(array.type) and array.null_count == 0:
        return mix(array.to_numpy().astype(np.int64).view(np.uint64) ^ _NULL_HASH)
    encoded = pc.dictionary_encode(array)
    values = encoded.dictionary.to_numpy(zero_copy_only=False)
    if values.dtype.kind in "fc":
        values = values + 0.0  # -0.0 and 0.0 are one value
    hashes = hash_array(np.asarray(values, dtype=object) if values.dtype.kind not in "iufb" else values)
    hashes = np.asarray(hashes, dtype=np.uint64)
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    out = np.where(codes >= 0, hashes[np.maximum(codes, 0)] if len(hashes) else _NULL_HASH, _NULL_HASH)
    return out.astype(np.uint64)


def sampler_seeds(seed: int) -> tuple[np.uint64, np.uint64, np.uint64]:
    """The three keys of the priorities, derived from the stage's sampler seed (SHA-256)."""
    digest = hashlib.sha256(f"privprep/bounding/v1/{seed}".encode()).digest()
    return tuple(np.uint64(int.from_bytes(digest[i:i + 8], "little")) for i in (0, 8, 16))  # type: ignore[return-value]


def compact(unit: np.ndarray, part: np.ndarray, value: np.ndarray, count: np.ndarray) -> Tuples:
    """Sorted by (unit, partition, value), equal tuples added up: the same whatever order they came in."""
    if len(unit) == 0:
        return unit, part, value, count
    order = np.lexsort((value, part, unit))
    unit, part, value, count = unit[order], part[order], value[order], count[order]
    new = np.ones(len(unit), dtype=bool)
    new[1:] = (unit[1:] != unit[:-1]) | (part[1:] != part[:-1]) | (value[1:] != value[:-1])
    starts = np.flatnonzero(new)
    return unit[starts], part[starts], value[starts], np.add.reduceat(count, starts)


class ContributionStore:
    """Compacted ``(unit hash, partition, value, count)`` tuples of one query, in 64 unit-hash buckets,
    spilled to a private temporary directory beyond ``memory_rows`` tuples."""

    def __init__(self, *, memory_rows: int = 4_000_000) -> None:
        self.memory_rows = memory_rows
        self._chunks: list[list[Tuples]] = [[] for _ in range(N_BUCKETS)]
        self._held = 0
        self._dir: str | None = None
        self.spilled_tuples = 0

    @property
    def held(self) -> int:
        """Tuples held in memory now."""
        return self._held

    def add(self, unit: np.ndarray, part: np.ndarray, value: np.ndarray | None = None, count: np.ndarray | None = None) -> None:
        """Add rows (count 1 each unless ``count``): compacted, then split into buckets."""
        n = len(unit)
        if n == 0:
            return
        value = np.zeros(n) if value is None else np.asarray(value, dtype=np.float64) + 0.0
        count = np.ones(n, dtype=np.int64) if count is None else np.asarray(count, dtype=np.int64)
        self._add_compacted(*compact(np.asarray(unit, np.uint64), np.asarray(part, np.uint64), value, count))

    def _add_compacted(self, unit: np.ndarray, part: np.ndarray, value: np.ndarray, count: np.ndarray) -> None:
        bucket = bucket_of(unit)
        order = np.argsort(bucket, kind="stable")
        bounds = np.searchsorted(bucket[order], np.arange(N_BUCKETS + 1))
        for b in range(N_BUCKETS):
            lo, hi = bounds[b], bounds[b + 1]
            if hi > lo:
                idx = order[lo:hi]
                self._chunks[b].append((unit[idx], part[idx], value[idx], count[idx]))
        self._held += len(unit)
        if self._held > self.memory_rows:
            self._compact_or_spill()

    def _compact_or_spill(self) -> None:
        self._held = 0
        for b in range(N_BUCKETS):
            if len(self._chunks[b]) > 1:
                self._chunks[b] = [compact(*_concat(self._chunks[b]))]
            self._held += sum(len(c[0]) for c in self._chunks[b])
        if self._held > self.memory_rows // 2:
            self._spill()

    def _spill(self) -> None:
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="privprep-bounding-")  # mode 0700: private to this user
        for b in range(N_BUCKETS):
            if self._chunks[b]:
                with open(os.path.join(self._dir, f"{b:02d}.npy"), "ab") as handle:
                    for chunk in self._chunks[b]:
                        for array in chunk:
                            np.save(handle, array, allow_pickle=False)
                        self.spilled_tuples += len(chunk[0])
                self._chunks[b] = []
        self._held = 0

    def _read_spilled(self, b: int) -> list[Tuples]:
        if self._dir is None:
            return []
        path = os.path.join(self._dir, f"{b:02d}.npy")
        if not os.path.exists(path):
            return []
        chunks = []
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            while handle.tell() < size:
                chunks.append(tuple(np.load(handle, allow_pickle=False) for _ in range(4)))
        return chunks  # type: ignore[return-value]

    def merge(self, other: "ContributionStore") -> None:
        """Add the tuples of another store (another partition's): counts of equal tuples add up."""
        for b in range(N_BUCKETS):
            for chunk in other._read_spilled(b) + other._chunks[b]:
                self._chunks[b].append(chunk)
                self._held += len(chunk[0])
        if self._held > self.memory_rows:
            self._compact_or_spill()

    def buckets(self) -> Iterator[Tuples]:
        """Runs of consecutive buckets of about ``memory_rows`` tuples (all of them when nothing was
        spilled), compacted: sorted by (unit, partition, value), so each person's tuples are together."""
        group: list[Tuples] = []
        size = 0
        for b in range(N_BUCKETS):
            chunks = self._read_spilled(b) + self._chunks[b]
            if chunks:
                group.append(compact(*_concat(chunks)))
                size += len(group[-1][0])
            if size >= self.memory_rows:
                yield _concat(group)
                group, size = [], 0
        if group:
            yield _concat(group)

    def close(self) -> None:
        """Remove the spill directory, if any."""
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __getstate__(self) -> dict[str, Any]:
        """Spilled tuples travel inline (a Dask partition's store is sent to the client)."""
        state = dict(self.__dict__)
        state["_chunks"] = [self._read_spilled(b) + list(self._chunks[b]) for b in range(N_BUCKETS)]
        state["_dir"] = None
        return state

    def __deepcopy__(self, memo: dict[int, Any]) -> "ContributionStore":
        new = ContributionStore.__new__(ContributionStore)
        new.__dict__.update(self.__getstate__())
        new._chunks = [list(chunks) for chunks in new._chunks]
        return new

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


def _concat(chunks: list[Tuples]) -> Tuples:
    if len(chunks) == 1:
        return chunks[0]
    return tuple(np.concatenate([c[i] for c in chunks]) for i in range(4))  # type: ignore[return-value]


@dataclass
class Bounded:
    """What one bucket keeps after bounding: one entry per kept (partition, value) of a person, with
    ``weight`` rows, and its person's ``bucket``; ``dropped`` rows were dropped; ``user_parts`` and
    ``user_counts``: the kept partitions and their numbers of people."""

    bucket: np.ndarray
    part: np.ndarray
    value: np.ndarray
    weight: np.ndarray
    dropped: int
    user_parts: np.ndarray
    user_counts: np.ndarray


def bound(unit: np.ndarray, part: np.ndarray, value: np.ndarray, count: np.ndarray, *, seed: int,
          max_partitions: int, max_rows: int, allowed: np.ndarray | None = None) -> Bounded:
    """Bound compacted tuples (as :meth:`ContributionStore.buckets` yields them): per person, the
    ``max_partitions`` partitions of lowest priority and in each the ``max_rows`` rows of lowest
    priority. ``allowed`` (sorted partitions): only these count (the released keys)."""
    s1, s2, s3 = sampler_seeds(seed)
    total = int(count.sum())
    if allowed is not None:
        keep = np.isin(part, allowed)
        unit, part, value, count = unit[keep], part[keep], value[keep], count[keep]
    n = len(unit)
    empty = np.zeros(0, dtype=np.uint64)
    if n == 0:
        return Bounded(np.zeros(0, np.int64), empty, np.zeros(0), np.zeros(0, np.int64), total, empty, np.zeros(0, np.int64))
    # pairs (person, partition): input is sorted by unit, then partition
    new_pair = np.ones(n, dtype=bool)
    new_pair[1:] = (unit[1:] != unit[:-1]) | (part[1:] != part[:-1])
    pair_start = np.flatnonzero(new_pair)
    pair_of_row = np.cumsum(new_pair) - 1
    pair_unit, pair_part = unit[pair_start], part[pair_start]
    with np.errstate(over="ignore"):
        priority = mix(mix(pair_unit ^ s1) + mix(pair_part ^ s2))
    order = np.lexsort((priority, pair_unit))
    sorted_unit = pair_unit[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = sorted_unit[1:] != sorted_unit[:-1]
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - group_start
    pair_kept = rank < max_partitions
    row_kept = pair_kept[pair_of_row]
    weight = np.where(row_kept, count, 0)
    pair_rows = np.add.reduceat(weight, pair_start)
    heavy_pairs = pair_kept & (pair_rows > max_rows)
    if heavy_pairs.any():
        rows = np.flatnonzero(heavy_pairs[pair_of_row])
        copies = count[rows]
        row_of_copy = np.repeat(rows, copies)
        offsets = np.cumsum(copies) - copies
        j = np.arange(len(row_of_copy), dtype=np.int64) - np.repeat(offsets, copies)
        bits = value[row_of_copy].view(np.uint64)
        p = priority[pair_of_row[row_of_copy]]
        copy_priority = mix(p ^ mix(bits ^ s3) ^ mix(j.astype(np.uint64) + np.uint64(1)))
        pair_of_copy = pair_of_row[row_of_copy]
        order = np.lexsort((copy_priority, pair_of_copy))
        sorted_pair = pair_of_copy[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = sorted_pair[1:] != sorted_pair[:-1]
        group_start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
        kept_copy = (np.arange(len(order)) - group_start) < max_rows
        kept_rows = np.bincount(row_of_copy[order][kept_copy], minlength=n)
        weight[rows] = kept_rows[rows]
    kept = weight > 0
    user_parts, user_counts = np.unique(pair_part[pair_kept], return_counts=True)
    return Bounded(bucket_of(unit[kept]), part[kept], value[kept], weight[kept], total - int(weight.sum()), user_parts, user_counts)


def bucket_of(unit: np.ndarray) -> np.ndarray:
    """The bucket of each unit hash: its top ``BUCKET_BITS`` bits."""
    return (np.asarray(unit, dtype=np.uint64) >> np.uint64(64 - BUCKET_BITS)).astype(np.int64)


__all__ = ["Bounded", "ContributionStore", "N_BUCKETS", "bound", "compact", "hash_values", "mix", "sampler_seeds"]
