"""The optimal full-domain generalization: a lattice search with monotonicity pruning.

Nodes are level vectors, one level per quasi-identifier. For separable losses every node is priced
up front; the search keeps the best valid node found so far and the *open window* of cheaper nodes
not yet known to be invalid. From inside the window it probes a chain of nodes upward, each step
taking the successor whose down-set covers most open nodes, and binary-searches the chain for the
boundary between invalid and valid: an invalid node rules out its whole down-set, a valid node its
whole up-set (and bounds the loss). It ends when the window is empty, so the result is the exact
optimum; ties are broken by the smaller sum of levels, then the smaller level vector.
Where validity is not monotone (entropy/recursive l-diversity or t-closeness with suppression),
pruning uses the monotone part of the criteria and the remaining candidates are checked in order.
Lattices above ``max_nodes`` fall back to a time-bounded greedy heuristic, reported as such.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import numpy as np

from .criteria import Evaluator, NodeResult
from .loss import aecs, discernibility


@dataclass
class SearchResult:
    node: tuple[int, ...] | None
    result: NodeResult | None
    loss: float
    nodes_total: int
    nodes_checked: int
    seconds: float
    strategy: str
    heuristic: bool


def lattice_size(heights: list[int]) -> int:
    return int(np.prod([h + 1 for h in heights], dtype=object))


def search(
    evaluator: Evaluator,
    *,
    level_loss: list[list[float]] | None,
    metric: str,
    max_nodes: int = 1_000_000,
    time_limit: float = 60.0,
) -> SearchResult:
    """Find the valid node of least loss (``level_loss[i][l]`` per quasi-identifier and level for separable
    metrics; ``None`` with ``metric`` ``discernibility`` or ``aecs``)."""
    started = time.perf_counter()
    heights = evaluator.heights
    total = lattice_size(heights)
    if total > max_nodes:
        node, result = _greedy(evaluator, level_loss, deadline=started + time_limit)
        loss = _node_loss(level_loss, node, result, evaluator, metric) if node is not None else float("inf")
        return SearchResult(node, result, loss, total, evaluator.checks, time.perf_counter() - started, "greedy", True)
    lattice = _Lattice(heights, level_loss)
    if level_loss is None:
        node, result, loss = _class_metric_search(evaluator, lattice, metric, deadline=started + time_limit)
        heuristic = time.perf_counter() > started + time_limit
    else:
        node, result = _window_search(evaluator, lattice)
        loss = lattice.loss[lattice.index(node)] if node is not None else float("inf")
        heuristic = False
    return SearchResult(node, result, float(loss), total, evaluator.checks, time.perf_counter() - started, "window", heuristic)


class _Lattice:
    """All nodes as an (N, q) level matrix with their loss and rank in (loss, sum, levels) order."""

    def __init__(self, heights: list[int], level_loss: list[list[float]] | None) -> None:
        grids = np.meshgrid(*[np.arange(h + 1, dtype=np.int16) for h in heights], indexing="ij")
        self.levels = np.stack([g.ravel() for g in grids], axis=1) if heights else np.zeros((1, 0), np.int16)
        self.heights = np.array(heights)
        n = len(self.levels)
        if level_loss is not None:
            self.loss = np.zeros(n)
            for i, terms in enumerate(level_loss):
                self.loss += np.asarray(terms)[self.levels[:, i]]
        else:
            self.loss = self.levels.sum(axis=1).astype(float)
        keys = [self.levels[:, i] for i in reversed(range(self.levels.shape[1]))]
        order = np.lexsort((*keys, self.levels.sum(axis=1), np.round(self.loss, 9)))
        self.rank = np.empty(n, dtype=np.int64)
        self.rank[order] = np.arange(n)
        self.order = order
        self._le = [[self.levels[:, i] <= lvl for lvl in range(h + 1)] for i, h in enumerate(heights)]
        self._ge = [[self.levels[:, i] >= lvl for lvl in range(h + 1)] for i, h in enumerate(heights)]
        self.strides = np.array([int(np.prod(self.heights[i + 1 :] + 1)) for i in range(len(heights))], dtype=np.int64)
        self._strides = [int(x) for x in self.strides]  # Python ints: a node's index is a short sum, no numpy call

    def index(self, node: tuple[int, ...]) -> int:
        return sum(level * stride for level, stride in zip(node, self._strides))

    def down_set(self, node: tuple[int, ...]) -> np.ndarray:
        out = np.ones(len(self.levels), dtype=bool)
        for i, level in enumerate(node):
            out &= self._le[i][level]
        return out

    def up_set(self, node: tuple[int, ...]) -> np.ndarray:
        out = np.ones(len(self.levels), dtype=bool)
        for i, level in enumerate(node):
            out &= self._ge[i][level]
        return out


class _RankSets:
    """Sets of lattice nodes as Python integers, bit ``r`` standing for the node of rank ``r``.

    The window search only ANDs, ORs and counts such sets; on a few thousand nodes an integer
    operation takes well under a microsecond, where a numpy call on a boolean mask costs several.
    ``le[i][l]`` holds the nodes whose level of quasi-identifier ``i`` is at most ``l``, ``eq[i][l]``
    those whose level is exactly ``l``."""

    def __init__(self, lattice: _Lattice) -> None:
        ranked = lattice.levels[lattice.order]  # row r: the levels of the node of rank r
        self.n = len(ranked)
        self.all = (1 << self.n) - 1
        self.le: list[list[int]] = []
        self.eq: list[list[int]] = []
        for i, height in enumerate(lattice.heights.tolist()):
            column = ranked[:, i]
            self.eq.append([_bits(column == level) for level in range(height + 1)])
            running, le = 0, []
            for level in range(height + 1):
                running |= self.eq[i][level]
                le.append(running)
            self.le.append(le)

    def down_set(self, node: tuple[int, ...]) -> int:
        out = self.all
        for i, level in enumerate(node):
            out &= self.le[i][level]
        return out

    def up_set(self, node: tuple[int, ...]) -> int:
        out = self.all
        for i, level in enumerate(node):
            if level:
                out &= ~self.le[i][level - 1]
        return out

    def members(self, bits: int) -> np.ndarray:
        """The ranks in ``bits``, ascending."""
        raw = np.frombuffer(bits.to_bytes((self.n + 7) // 8, "little"), dtype=np.uint8)
        return np.flatnonzero(np.unpackbits(raw, bitorder="little"))


def _bits(mask: np.ndarray) -> int:
    return int.from_bytes(np.packbits(mask, bitorder="little").tobytes(), "little")


def _window_search(evaluator: Evaluator, lattice: _Lattice) -> tuple[tuple[int, ...] | None, NodeResult | None]:
    n = len(lattice.levels)
    sets = _RankSets(lattice)
    invalid = 0  # known to fail (the monotone part of) the criteria
    passed = 0  # known to pass the monotone part
    checked: dict[int, tuple[bool, bool]] = {}
    best_rank, best = n, None

    def check(node: tuple[int, ...]) -> bool:
        nonlocal best_rank, best, invalid, passed
        index = lattice.index(node)
        if index not in checked:
            checked[index] = evaluator.is_valid(node)
        valid, monotone_valid = checked[index]
        if monotone_valid:
            passed |= sets.up_set(node)
        else:
            invalid |= sets.down_set(node)
        if valid and lattice.rank[index] < best_rank:
            best_rank, best = int(lattice.rank[index]), node
        return monotone_valid

    monotone = evaluator.criteria.monotone
    while True:
        window = ((1 << best_rank) - 1) & ~(invalid | passed)
        if not window:
            break
        chain = _chain(lattice, sets, window, passed)
        lo, hi = 0, len(chain) - 1
        while lo <= hi:  # binary search for the first node of the chain that passes
            mid = (lo + hi) // 2
            if check(chain[mid]):
                hi = mid - 1
            else:
                lo = mid + 1
    if monotone:
        return _final(evaluator, best)
    # non-monotone criteria: check the surviving candidates in loss order until one is valid
    for rank, index in enumerate(lattice.order.tolist()):
        if rank >= best_rank:
            break
        if (invalid >> rank) & 1:
            continue
        node = tuple(int(x) for x in lattice.levels[index])
        check(node)
    return _final(evaluator, best)


def _final(evaluator: Evaluator, node: tuple[int, ...] | None) -> tuple[tuple[int, ...] | None, NodeResult | None]:
    """The full evaluation (classes, violating classes) of the chosen node."""
    return (node, evaluator.evaluate(node, count=False)) if node is not None else (None, None)


def _chain(lattice: _Lattice, sets: _RankSets, window: int, passed: int) -> list[tuple[int, ...]]:
    """A chain upward from a probe inside the window, each step to the successor whose down-set covers
    the most open nodes; it stops below the first node already known to pass."""
    ranks = sets.members(window)
    probe = int(lattice.order[ranks[int(0.75 * (len(ranks) - 1))]])
    node = [int(x) for x in lattice.levels[probe]]
    chain = [tuple(node)]
    heights = lattice.heights.tolist()
    q = len(node)
    le = sets.le
    while True:
        # an open node lies under node + e_i and not under node iff its level i is node[i] + 1 and
        # every other level is at most node's: prefix and suffix ANDs give "every other" for each i
        prefix = [sets.all] * (q + 1)
        for i in range(q):
            prefix[i + 1] = prefix[i] & le[i][node[i]]
        suffix = sets.all
        best_gain, step = -1, -1
        gains = [-1] * q
        for i in reversed(range(q)):
            if node[i] < heights[i]:
                gains[i] = (window & sets.eq[i][node[i] + 1] & prefix[i] & suffix).bit_count()
            suffix &= le[i][node[i]]
        for i in range(q):  # the first dimension of the largest gain, as argmax takes it
            if gains[i] > best_gain:
                best_gain, step = gains[i], i
        if best_gain < 0:
            break
        node[step] += 1
        successor = tuple(node)
        if (passed >> int(lattice.rank[lattice.index(successor)])) & 1:
            break
        chain.append(successor)
    return chain


def _class_metric_search(
    evaluator: Evaluator, lattice: _Lattice, metric: str, *, deadline: float
) -> tuple[tuple[int, ...] | None, NodeResult | None, float]:
    """For class-dependent metrics: evaluate every valid node (pruning invalid down-sets), keep the best."""
    best: tuple[float, int] | None = None
    best_result = None
    invalid = np.zeros(len(lattice.levels), dtype=bool)
    for index in lattice.order:
        if time.perf_counter() > deadline:
            break
        if invalid[index]:
            continue
        node = tuple(int(x) for x in lattice.levels[index])
        result = evaluator.evaluate(node)
        if not result.monotone_valid:
            invalid[lattice.down_set(node)] = True
        if result.valid:
            value = _node_loss(None, node, result, evaluator, metric)
            if best is None or (value, lattice.rank[index]) < best:
                best, best_result = (value, int(lattice.rank[index])), result
    if best_result is None:
        return None, None, float("inf")
    return best_result.node, best_result, best[0]  # type: ignore[index]


def _node_loss(level_loss, node, result, evaluator, metric) -> float:  # type: ignore[no-untyped-def]
    if level_loss is not None:
        return float(sum(level_loss[i][lvl] for i, lvl in enumerate(node)))
    if metric == "discernibility":
        return discernibility(result.sizes, result.violating, evaluator.n)
    return aecs(result.sizes, result.violating, evaluator.criteria.k)


def _greedy(evaluator: Evaluator, level_loss, *, deadline: float):  # type: ignore[no-untyped-def]
    """Climb from the bottom, each step raising the level that removes most suppressed rows per unit of
    loss, until valid; then lower levels one by one while the node stays valid."""
    heights = evaluator.heights
    node = [0] * len(heights)
    result = evaluator.evaluate(tuple(node))
    while not result.valid and time.perf_counter() < deadline:
        options = []
        for i in range(len(node)):
            if node[i] < heights[i]:
                candidate = node.copy()
                candidate[i] += 1
                trial = evaluator.evaluate(tuple(candidate))
                cost = (level_loss[i][candidate[i]] - level_loss[i][node[i]]) if level_loss else 1.0
                options.append(((result.suppressed_rows - trial.suppressed_rows) / max(cost, 1e-9), candidate, trial))
        if not options:
            break
        _, node, result = max(options, key=lambda o: o[0])
    if not result.valid:
        top = tuple(heights)
        result = evaluator.evaluate(top)
        if not result.valid:
            return None, None
        node = list(top)
    improved = True
    while improved and time.perf_counter() < deadline:
        improved = False
        for i in itertools.chain(range(len(node))):
            if node[i] > 0:
                candidate = node.copy()
                candidate[i] -= 1
                trial = evaluator.evaluate(tuple(candidate))
                if trial.valid:
                    node, result, improved = candidate, trial, True
    return tuple(node), result
