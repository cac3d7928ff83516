"""Evaluating one generalization (a lattice node) on the distinct tuples: its equivalence classes,
which classes violate the criteria, and how many rows that would suppress.

>>> import numpy as np, pyarrow as pa
>>> from privprep.transforms.anonymity.tuples import TupleCounter
>>> from privprep.transforms.hierarchies import build_hierarchy
>>> counter = TupleCounter(["zip"]); counter.observe(pa.table({"zip": ["10001", "10002", "10002", "20001"]}))
>>> t = counter.result()
>>> ev = Evaluator(t, {"zip": build_hierarchy({"mask": {}}, "zip", t.dictionaries[0])}, Criteria(k=2))
>>> ev.evaluate((0,)).suppressed_rows, ev.evaluate((1,)).suppressed_rows, ev.evaluate((5,)).suppressed_rows
(2, 1, 0)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..hierarchies import Hierarchy
from . import measures
from .tuples import DistinctTuples


@dataclass(frozen=True)
class LDiversityCriterion:
    column: str
    l: float  # noqa: E741
    variant: str = "distinct"
    c: float | None = None


@dataclass(frozen=True)
class Criteria:
    """What a valid generalization must satisfy."""

    k: int = 1
    suppression_limit: float = 0.0
    l_diversity: tuple[LDiversityCriterion, ...] = ()
    t_closeness: tuple[tuple[str, float], ...] = ()

    @property
    def monotone(self) -> bool:
        """Whether validity is monotone under generalization with this suppression limit.

        k-anonymity and distinct l-diversity are (merging classes never adds violating rows); entropy
        and recursive l-diversity and t-closeness are only without suppression."""
        if self.suppression_limit == 0:
            return True
        return all(c.variant == "distinct" for c in self.l_diversity) and not self.t_closeness


@dataclass
class NodeResult:
    """The outcome of one node: classes per tuple, violating classes, suppressed rows."""

    node: tuple[int, ...]
    classes: np.ndarray
    n_classes: int
    sizes: np.ndarray
    violating: np.ndarray
    suppressed_rows: int
    valid: bool
    monotone_valid: bool
    failed: list[str] = field(default_factory=list)
    class_keys: np.ndarray | None = None  # set instead of ``classes`` when tuples were evaluated in buckets


class Evaluator:
    """Evaluates nodes (one level per quasi-identifier) against :class:`Criteria`."""

    def __init__(
        self, tuples: DistinctTuples, hierarchies: dict[str, Hierarchy], criteria: Criteria, *, cache_bytes: int = 128 << 20
    ) -> None:
        self.tuples = tuples
        self.criteria = criteria
        self.qis = list(hierarchies)
        self.hierarchies = hierarchies
        self.n = tuples.rows
        self.limit = int(np.floor(criteria.suppression_limit * self.n + 1e-9))
        self.heights = [hierarchies[q].height for q in self.qis]
        # per QI and level: the generalized code of every tuple (cached while memory allows) and the
        # number of codes; group codes of a few QIs at a time are cached under the same byte budget
        self._tables = [hierarchies[q].level_codes() for q in self.qis]
        self._base = [tuples.codes[:, tuples.index(q)] for q in self.qis]
        self.cards = [[int(codes.max(initial=-1)) + 1 for codes in tables] for tables in self._tables]
        m = len(tuples.counts)
        self._budget = cache_bytes
        self._gen: dict[tuple[int, int], np.ndarray] = {}
        self._cache_gen = m * 4 * sum(h + 1 for h in self.heights) <= cache_bytes // 2
        self.groups = _groups(self.heights)
        self._group_codes: dict[tuple[int, tuple[int, ...]], tuple[np.ndarray, int]] = {}
        self._group_bases: dict[int, tuple[np.ndarray, list[np.ndarray]]] = {}
        self._group_seen: set[int] = set()
        self._cached_bytes = 0
        self.sensitive_codes = {name: sensitive_codes(tuples, name) for name in self._sensitive_columns()}
        self.checks = 0
        self._weights = tuples.counts.astype(np.float64)  # bincount's weights, converted once

    def _sensitive_columns(self) -> list[str]:
        names = [c.column for c in self.criteria.l_diversity] + [name for name, _ in self.criteria.t_closeness]
        return list(dict.fromkeys(names))

    def classes(self, node: tuple[int, ...], *, dense: bool = True) -> tuple[np.ndarray, int]:
        """A class id for every tuple under ``node`` and the size of the id space.

        Ids may be sparse (some ids have no tuple): quasi-identifiers are combined group by group from
        cached dense group codes, and only a key space much larger than the table is densified (with
        ``dense=False`` not even then: the caller counts the keys itself)."""
        m = len(self.tuples.counts)
        key: np.ndarray | None = None
        space = 1
        for g, members in enumerate(self.groups):
            codes, card = self._group(g, tuple([node[i] for i in members]))
            if key is None:  # the first group's cached codes, read-only: combining makes new arrays
                key, space = codes, card
                continue
            if space * card >= 1 << 62:
                key, space = _densify(key)
            key = np.multiply(key, card, dtype=np.int64)  # group codes may be int32
            key += codes
            space *= card
        if key is None:
            return np.zeros(m, dtype=np.int64), 1
        if key.dtype != np.int64:  # a single group's cached codes
            key = key.astype(np.int64)
        if dense and space > 4 * m + 4096:
            key, space = _densify(key)
        return key, space

    def gen(self, i: int, level: int) -> np.ndarray:
        """The code of every tuple's quasi-identifier ``i`` at ``level``."""
        cached = self._gen.get((i, level))
        if cached is not None:
            return cached
        codes = self._tables[i][level].astype(np.int32)[self._base[i]]
        if self._cache_gen:
            self._gen[(i, level)] = codes
        return codes

    def _group(self, g: int, levels: tuple[int, ...]) -> tuple[np.ndarray, int]:
        cached = self._group_codes.get((g, levels))
        if cached is None:
            # from the second level combination of a group on, computed on the group's distinct
            # combinations of values and taken back to every tuple: the same codes as combining the
            # tuples' own, on a few times fewer rows (the first, often the only one, goes straight)
            members = self.groups[g]
            if g in self._group_bases or g in self._group_seen:
                where, distinct = self._group_base(g)
            else:
                self._group_seen.add(g)
                where, distinct = None, [self._base[i] for i in members]
            m = len(self.tuples.counts)
            key = np.zeros(len(distinct[0]), dtype=np.int64)
            space = 1
            for i, base, level in zip(members, distinct, levels):
                key *= self.cards[i][level]
                key += self._tables[i][level][base]
                space *= self.cards[i][level]
            if space > 4 * m + 4096:
                key, space = _densify(key)
            key = key.astype(np.int32) if space < 1 << 31 else key  # int32: half the bytes to move
            cached = (key[where] if where is not None else key, space)
            cached[0].flags.writeable = False  # shared by every node with these levels
            if self._cached_bytes + cached[0].nbytes <= self._budget // 2:
                self._group_codes[(g, levels)] = cached
                self._cached_bytes += cached[0].nbytes
        return cached

    def _group_base(self, g: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """Each tuple's index among the distinct combinations of group ``g``'s quasi-identifiers' values,
        and those combinations (the dictionary code of each member, one array per member)."""
        cached = self._group_bases.get(g)
        if cached is None:
            members = self.groups[g]
            key = np.zeros(len(self.tuples.counts), dtype=np.int64)
            for i in members:
                key *= len(self._tables[i][0])
                key += self._base[i]
            space = int(np.prod([len(self._tables[i][0]) for i in members], dtype=object))
            if space <= 4 * len(key) + 4096:  # a presence table instead of a sort
                present = np.zeros(space, dtype=bool)
                present[key] = True
                uniques, where = np.flatnonzero(present), (np.cumsum(present) - 1)[key]
            else:
                uniques, where = factorize(key)
            distinct, rest = [], uniques
            for i in reversed(members):
                rest, code = np.divmod(rest, len(self._tables[i][0]))
                distinct.append(code)
            cached = self._group_bases[g] = (where, distinct[::-1])
        return cached

    def is_valid(self, node: tuple[int, ...]) -> tuple[bool, bool]:
        """(valid, monotone part valid) of ``node``: the fast path of the search, which for k alone
        needs one weighted count of the classes and no per-class detail."""
        if self.criteria.l_diversity or self.criteria.t_closeness:
            result = self.evaluate(node)
            return result.valid, result.monotone_valid
        self.checks += 1
        classes, n_classes = self.classes(node, dense=False)
        if n_classes > 4 * len(classes) + 4096:  # a sparse key space: group the keys by a radix sort
            order = radix_argsort(classes, n_classes)
            ordered = classes[order]
            starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
            sizes = np.add.reduceat(self.tuples.counts[order], starts)
        else:
            sizes = np.bincount(classes, weights=self._weights, minlength=n_classes)
        valid = bool(sizes[sizes < self.criteria.k].sum() <= self.limit)
        return valid, valid

    def evaluate(self, node: tuple[int, ...], *, count: bool = True) -> NodeResult:
        """Classes and suppression of ``node``; ``valid`` when the suppressed rows fit the limit."""
        self.checks += count
        classes, n_classes = self.classes(node)
        sizes, violating, mono_violating, failed = judge(
            self.criteria, classes, n_classes, self.tuples.counts, self.sensitive_codes
        )
        suppressed = int(sizes[violating].sum())
        mono_suppressed = int(sizes[mono_violating].sum())
        valid = suppressed <= self.limit
        monotone_valid = valid if self.criteria.monotone else mono_suppressed <= self.limit
        return NodeResult(node, classes, n_classes, sizes, violating, suppressed, valid, monotone_valid, failed)

    def bottom_profile(self) -> tuple[np.ndarray, np.ndarray, int]:
        """The distinct class sizes of the bottom node, how many classes have each, and the number
        of distinct tuples."""
        classes, space = self.classes(tuple(0 for _ in self.qis))
        sizes = measures.class_sizes(classes, self.tuples.counts, space)
        values, count = np.unique(sizes[sizes > 0], return_counts=True)
        return values, count, len(self.tuples.counts)


def judge(
    criteria: Criteria,
    classes: np.ndarray,
    n_classes: int,
    counts: np.ndarray,
    sensitive: dict[str, tuple[np.ndarray, bool]],
    overall: dict[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Per class: rows, whether it violates the criteria, whether it violates their monotone part
    (k and distinct l-diversity); and the names of the failed criteria. ``overall`` gives the whole
    table's sensitive distributions for t-closeness when ``classes`` cover only part of it."""
    sizes = measures.class_sizes(classes, counts, n_classes)
    violating = sizes < criteria.k
    failed = ["k"] if violating.any() else []
    mono_violating = violating.copy()
    for crit in criteria.l_diversity:
        codes, _ = sensitive[crit.column]
        if crit.variant == "distinct":
            bad = measures.distinct_l(classes, counts, codes, n_classes) < crit.l
            mono_violating |= bad
        elif crit.variant == "entropy":
            bad = measures.entropy_l(classes, counts, codes, n_classes) < crit.l - 1e-9
        else:
            bad = ~measures.recursive_cl(classes, counts, codes, n_classes, float(crit.c or 0), int(crit.l))
        if bad.any():
            failed.append(f"l_diversity[{crit.column}]")
        violating |= bad
    for name, t in criteria.t_closeness:
        codes, ordered = sensitive[name]
        whole = overall.get(name) if overall else None
        bad = measures.t_closeness(classes, counts, codes, n_classes, ordered=ordered, overall=whole) > t + 1e-12
        if bad.any():
            failed.append(f"t_closeness[{name}]")
        violating |= bad
    violating &= sizes > 0
    mono_violating &= sizes > 0
    return sizes, violating, mono_violating, failed


def sensitive_codes(tuples: DistinctTuples, name: str) -> tuple[np.ndarray, bool]:
    """Codes of a sensitive column per tuple, renumbered in value order for numeric columns (whose
    t-closeness uses the ordered distance); the second item says whether it is ordered."""
    j = tuples.index(name)
    codes = tuples.codes[:, j].astype(np.int64)
    rank = value_rank(tuples.dictionaries[j])
    return (rank[codes], True) if rank is not None else (codes, False)


def value_rank(dictionary: pa.Array) -> np.ndarray | None:
    """For a numeric dictionary, each code's rank in value order (t-closeness' ordered distance);
    ``None`` for any other type."""
    types = pa.types
    if not (types.is_integer(dictionary.type) or types.is_floating(dictionary.type) or types.is_decimal(dictionary.type)):
        return None
    rank = pc.rank(dictionary, sort_keys="ascending", tiebreaker="dense")
    return np.asarray(rank.to_numpy(), dtype=np.int64) - 1


def factorize(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct values of ``key`` and each element's index among them, by one sort: about
    half the memory of a hash factorization on tables of millions of distinct tuples."""
    if len(key) == 0:
        return key.astype(np.int64), np.empty(0, np.int32)
    order = radix_argsort(key) if key.dtype.kind in "iu" and int(key.min()) >= 0 else np.argsort(key)
    ordered = key[order]
    first = np.empty(len(key), dtype=bool)
    first[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    uniques = ordered[first]
    del ordered
    ids = np.empty(len(key), dtype=np.int32 if len(key) < 2**31 else np.int64)
    ids[order] = np.cumsum(first, dtype=ids.dtype) - 1
    return uniques, ids


def radix_argsort(key: np.ndarray, space: int | None = None) -> np.ndarray:
    """A stable argsort of non-negative integer keys below ``space`` (default: the largest key + 1) by
    16 bits at a time: numpy sorts ``uint16`` by radix, 1.5-4x faster than an ``int64`` argsort on
    tables of thousands to millions of keys of up to 32 bits (measured; wider keys go to numpy).

    >>> radix_argsort(np.array([70000, 3, 70000, 1, 3])).tolist()
    [3, 1, 4, 0, 2]
    """
    if space is None:
        space = int(key.max(initial=0)) + 1
    passes = max(1, (int(space - 1).bit_length() + 15) // 16)
    if len(key) < 1024 or passes > 3 or (passes == 3 and len(key) > 1 << 17):  # where a comparison sort wins
        return np.argsort(key, kind="stable")
    order = np.argsort((key & 0xFFFF).astype(np.uint16), kind="stable")
    for d in range(1, passes):
        digit = ((key[order] >> (16 * d)) & 0xFFFF).astype(np.uint16)
        order = order[np.argsort(digit, kind="stable")]
    return order


def _densify(key: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense 0..n-1 ids for the distinct values of ``key`` (in sorted order) and their number."""
    uniques, ids = factorize(key)
    return ids, len(uniques)


def _groups(heights: list[int], max_combinations: int = 256) -> list[list[int]]:
    """Consecutive quasi-identifiers grouped so each group has at most ``max_combinations`` level combinations."""
    groups: list[list[int]] = []
    size = max_combinations + 1
    for i, h in enumerate(heights):
        if size * (h + 1) > max_combinations:
            groups.append([])
            size = 1
        groups[-1].append(i)
        size *= h + 1
    return groups
