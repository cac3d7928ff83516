"""The ``k_anonymity`` stage: optimal full-domain generalization with suppression (SPEC §2, §4, §5).

Pass 1 (``observe``) counts distinct tuples of the quasi-identifiers and the sensitive columns named
by l-diversity / t-closeness; ``decide`` builds the hierarchies over the values seen, searches the
lattice for the valid node of least loss and fixes which classes are suppressed; pass 2 (``transform``)
replaces each quasi-identifier by its value at the chosen level and drops the rows of suppressed
classes. Quasi-identifier columns come out as strings.

>>> import pyarrow as pa
>>> stage = KAnonymity(k=2, quasi_identifiers=["zip"], hierarchies={"zip": {"mask": {}}})
>>> data = pa.table({"zip": ["10001", "10002", "10011", "10012"]})
>>> stage.observe(data); stage.decide()
>>> stage.transform(data).column("zip").to_pylist(), stage.levels_
(['1000*', '1000*', '1001*', '1001*'], {'zip': 1})
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Mapping

import numpy as np
import pyarrow as pa

from privprep.schemas.errors import ConfigError, DataError, NotAvailableError, PrivacyError
from privprep.schemas.stages import KAnonymityParams, LDiversity

from .anonymity import measures, utility
from .anonymity.criteria import Criteria, Evaluator, LDiversityCriterion, NodeResult
from .anonymity.external import ChunkedEvaluator
from .anonymity.lookup import positions_in
from .anonymity.loss import SEPARABLE, loss_terms, nu_entropy_terms
from .anonymity.search import search
from .anonymity.store import TupleStore
from .anonymity.tuples import SPILL_TUPLES, DistinctTuples, TupleCounter
from .base import GlobalStage, StageContext
from .hierarchies import Hierarchy, build_hierarchy, read_arx_csv
from .registry import register

log = logging.getLogger(__name__)
SIZE_BUCKETS = (1, 2, 3, 5, 10, 20, 50, 100, 1000, 10_000)


def _refuse_nested(schema: pa.Schema, columns: list[str]) -> None:
    """Lists, structs and maps have no order or hierarchy to generalize: a one-line :class:`DataError`."""
    for column in columns:
        kind = schema.field(column).type
        if pa.types.is_nested(kind):
            raise DataError(f"column '{column}' has nested type {kind}; k_anonymity takes strings, numbers, "
                            "booleans and dates (flatten or cast the column first)")


class TupleCountingStage(GlobalStage):
    """The first pass of a k_anonymity stage (full-domain or Mondrian): it counts the distinct tuples of
    its quasi-identifiers and sensitive columns, over batches and partitions; quasi-identifiers come out
    as strings. Subclasses set ``quasi_identifiers``, ``sensitive`` and ``_counter``."""

    quasi_identifiers: list[str]
    sensitive: list[str]
    _counter: TupleCounter

    def input_columns(self) -> list[str]:
        return [*self.quasi_identifiers, *self.sensitive]

    def output_schema(self, schema: pa.Schema) -> pa.Schema:
        self._require(schema, self.input_columns())
        _refuse_nested(schema, self.input_columns())
        for column in self.quasi_identifiers:
            schema = schema.set(schema.get_field_index(column), pa.field(column, pa.string()))
        return schema

    def observe(self, table: pa.Table) -> None:
        self._counter.observe(table.select(self.input_columns()))

    def merge(self, other: "GlobalStage") -> None:
        """Add the tuple counts a copy of this stage observed over other partitions."""
        if type(other) is not type(self) or other.input_columns() != self.input_columns():
            raise TypeError("merge() takes a copy of the same k_anonymity stage")
        if hasattr(self, "summary_"):
            raise RuntimeError("k_anonymity: merge() after decide()")
        self._counter.merge(other._counter)  # type: ignore[attr-defined]


@register
class KAnonymity(TupleCountingStage):
    """Generalize quasi-identifiers to the optimal levels under k (+ l, t) and suppress the rest.

    Parameters follow :class:`privprep.schemas.stages.KAnonymityParams`; ``hierarchies`` maps each
    quasi-identifier to a spec (``{"mask": {}}``, ``{"csv": path}``, ...), ``l_diversity`` maps a
    sensitive column to l or to ``{"l": .., "variant": .., "c": ..}``, ``t_closeness`` to t.

    Memory: up to ``memory_tuples`` distinct tuples (about 16 bytes each while counting) are held in
    memory; beyond that the counts go to a private temporary directory (``spill_dir``, by default
    the system's, i.e. ``$TMPDIR``) and the search reads them back in buckets of that many tuples,
    so peak memory stays flat however many rows and distinct tuples the input has. The files hold
    integer codes and counts, never cell values, and are deleted when ``decide`` ends.
    """

    name: ClassVar[str] = "k_anonymity"
    Params = KAnonymityParams

    def __init__(
        self,
        *,
        k: int,
        quasi_identifiers: list[str],
        hierarchies: Mapping[str, Any],
        suppression_limit: float = 0.0,
        metric: str = "nu_entropy",
        l_diversity: Mapping[str, Any] | None = None,
        t_closeness: Mapping[str, float] | None = None,
        time_limit: float = 60.0,
        max_nodes: int = 1_000_000,
        base_dir: Any = None,
        memory_tuples: int | None = SPILL_TUPLES,
        spill_dir: str | None = None,
    ) -> None:
        params = KAnonymityParams.model_validate(
            {
                "k": k,
                "suppression_limit": suppression_limit,
                "quasi_identifiers": list(quasi_identifiers),
                "hierarchies": dict(hierarchies),
                "metric": metric,
                "l_diversity": dict(l_diversity or {}),
                "t_closeness": dict(t_closeness or {}),
                "time_limit": time_limit,
            }
        )
        missing = [q for q in quasi_identifiers if q not in params.hierarchies]
        if missing:
            raise ConfigError(f"hierarchies: no hierarchy for quasi-identifier(s) {', '.join(missing)}")
        overlap = set(quasi_identifiers) & (set(params.l_diversity) | set(params.t_closeness))
        if overlap:
            raise ConfigError(f"column(s) {', '.join(sorted(overlap))} cannot be both quasi-identifier and sensitive")
        self.params = params
        self.quasi_identifiers = list(quasi_identifiers)
        self.sensitive = list(dict.fromkeys([*params.l_diversity, *params.t_closeness]))
        self.max_nodes = max_nodes
        self.base_dir = base_dir
        for spec in params.hierarchies.values():  # read ARX files now: a bad file fails before any data
            if spec.tag == "csv":
                read_arx_csv(self._path(spec.params))
        self.criteria = Criteria(
            k=params.k,
            suppression_limit=params.suppression_limit,
            l_diversity=tuple(_l_criterion(c, v) for c, v in params.l_diversity.items()),
            t_closeness=tuple(params.t_closeness.items()),
        )
        if memory_tuples is not None and memory_tuples < 1:
            raise ConfigError("memory_tuples: must be a positive number of tuples (or None to hold all in memory)")
        self.memory_tuples = memory_tuples
        self.spill_dir = spill_dir
        self._counter = TupleCounter([*self.quasi_identifiers, *self.sensitive], spill_tuples=memory_tuples, spill_dir=spill_dir)

    @classmethod
    def from_config(cls, params: KAnonymityParams, *, context: StageContext) -> "KAnonymity":
        if params.missing == "wildcard":
            raise NotAvailableError("missing: wildcard is not available yet; use the default 'category'")
        if params.algorithm == "mondrian":  # local recoding: its own stage class (same name, same report form)
            from .mondrian import MondrianKAnonymity

            return MondrianKAnonymity.from_config(params, context=context)  # type: ignore[return-value]
        qis = params.quasi_identifiers or [n for n, s in context.columns.items() if s.role == "quasi_identifier"]
        if not qis:
            raise ConfigError("no quasi-identifiers: declare columns with role quasi_identifier or list quasi_identifiers")
        missing = [q for q in qis if q not in params.hierarchies]
        if missing:
            raise ConfigError(
                f"hierarchies: no hierarchy for quasi-identifier(s) {', '.join(missing)}; "
                "add e.g. {mask: {}} , {interval: {widths: [5, 10]}}, {date: [month, year]} or {csv: FILE}"
            )
        return cls(
            k=params.k,
            quasi_identifiers=qis,
            hierarchies=params.hierarchies,
            suppression_limit=params.suppression_limit,
            metric=params.metric,
            l_diversity=params.l_diversity,
            t_closeness=params.t_closeness,
            time_limit=params.time_limit,
            base_dir=context.base_dir,
            memory_tuples=params.memory_tuples,
        )

    # -- the stage interface: input_columns, output_schema, observe, merge from TupleCountingStage --------

    def decide(self) -> None:
        tuples = self._counter.result()
        self._counter = TupleCounter(self._counter.columns, spill_tuples=self.memory_tuples, spill_dir=self.spill_dir)
        try:  # the counts live on only in ``tuples``; a spilled store's files go when this ends
            self._decide(tuples)
        finally:
            if isinstance(tuples, TupleStore):
                tuples.close()

    def _decide(self, tuples: DistinctTuples | TupleStore) -> None:
        self.hierarchies_ = {
            q: build_hierarchy(self.params.hierarchies[q], q, tuples.dictionaries[i], base_dir=self.base_dir)
            for i, q in enumerate(self.quasi_identifiers)
        }
        evaluator: Evaluator | ChunkedEvaluator
        if isinstance(tuples, TupleStore) and ChunkedEvaluator.packable(tuples, self.quasi_identifiers):
            # a store exists only when memory_tuples is set: buckets of that many tuples
            evaluator = ChunkedEvaluator(tuples, self.hierarchies_, self.criteria, bucket_tuples=int(self.memory_tuples or 0))
        else:
            if isinstance(tuples, TupleStore):  # pragma: no cover - more than 2^62 quasi-identifier combinations
                tuples = _load(tuples)
            evaluator = Evaluator(tuples, self.hierarchies_, self.criteria)
        values, classes, distinct = evaluator.bottom_profile()
        risk_before, sizes_before = measures.risk_from_profile(values, classes), _size_histogram(values, classes)
        level_loss = self._level_loss(tuples) if self.params.metric in SEPARABLE else None
        result = search(
            evaluator, level_loss=level_loss, metric=self.params.metric, max_nodes=self.max_nodes, time_limit=self.params.time_limit
        )
        if result.node is None or result.result is None:
            raise PrivacyError(self._unreachable_message(evaluator))
        self.levels_ = dict(zip(self.quasi_identifiers, result.node))
        self._prepare_apply(tuples, result.result)
        node = result.result
        kept = node.sizes[~node.violating & (node.sizes > 0)]
        self.summary_ = {
            "achieved_k": int(kept.min()) if len(kept) else None,
            "suppressed_rows": int(node.suppressed_rows),
            "equivalence_classes": int(len(kept)),
            "information_loss": {"metric": self.params.metric, "value": float(result.loss)},
            "measures": utility.summary(kept, k=self.params.k, suppressed=int(node.suppressed_rows), ncp=self._ncp(tuples)),
            "risk_before": risk_before,
            "risk_after": measures.risk(kept),
            "class_sizes_before": sizes_before,
            "class_sizes_after": _size_histogram(kept),
            "search": {
                "nodes_total": int(result.nodes_total),
                "nodes_checked": int(result.nodes_checked),
                "seconds": round(result.seconds, 4),
                "strategy": result.strategy,
                "heuristic": bool(result.heuristic),
                "rows": tuples.rows,
                "distinct_tuples": int(distinct),
            },
        }
        if result.heuristic:
            log.warning("k_anonymity: the lattice has %s nodes; a time-bounded heuristic chose the levels", f"{result.nodes_total:,}")

    def transform(self, table: pa.Table) -> pa.Table:
        if not hasattr(self, "summary_"):
            raise RuntimeError("k_anonymity: decide() must run before transform()")
        if table.num_rows == 0:
            return self._generalize_columns(table, {q: np.empty(0, np.int64) for q in self.quasi_identifiers})
        positions = {q: self._positions(q, table.column(q)) for q in self.quasi_identifiers}
        key = np.zeros(table.num_rows, dtype=np.int64)
        for q in self.quasi_identifiers:
            key = key * self._radix[q] + self._level_codes[q][positions[q]]
        keep = ~np.isin(key, self._suppressed_keys)
        table = self._generalize_columns(table, positions)
        return table if keep.all() else table.filter(pa.array(keep))

    def report(self) -> dict[str, Any]:
        if not hasattr(self, "summary_"):
            return {"k": self.params.k, "quasi_identifiers": self.quasi_identifiers}
        summary = self.summary_
        return {
            "k": self.params.k,
            "achieved_k": summary["achieved_k"],
            "suppression_limit": self.params.suppression_limit,
            "quasi_identifiers": self.quasi_identifiers,
            "levels": dict(self.levels_),
            "level_names": {q: _level_name(self.hierarchies_[q], lvl) for q, lvl in self.levels_.items()},
            "heights": {q: self.hierarchies_[q].height for q in self.quasi_identifiers},
            **{key: summary[key] for key in ("suppressed_rows", "equivalence_classes", "information_loss", "measures")},
            "algorithm": "full_domain",
            "recoding": {q: "level" for q in self.quasi_identifiers},
            **{key: summary[key] for key in ("risk_before", "risk_after", "class_sizes_before", "class_sizes_after")},
            "criteria": {
                "l_diversity": {c.column: {"l": c.l, "variant": c.variant, **({"c": c.c} if c.c else {})} for c in self.criteria.l_diversity},
                "t_closeness": dict(self.criteria.t_closeness),
            },
            "search": dict(summary["search"]),
        }

    # -- helpers -----------------------------------------------------------------------------------
    def _path(self, value: str) -> Any:
        from pathlib import Path

        path = Path(value)
        return path if path.is_absolute() or self.base_dir is None else Path(self.base_dir) / path

    def _level_loss(self, tuples: DistinctTuples | TupleStore) -> list[list[float]]:
        out = []
        for i, q in enumerate(self.quasi_identifiers):
            counts = tuples.column_counts(i, minlength=len(tuples.dictionaries[i]))
            levels = self.hierarchies_[q].level_codes()
            if self.params.metric == "nu_entropy":
                out.append(nu_entropy_terms(counts, levels))
            else:
                out.append(loss_terms(counts, levels, tuples.rows, len(self.quasi_identifiers)))
        return out

    def _ncp(self, tuples: DistinctTuples | TupleStore) -> dict[str, float]:
        """NCP per quasi-identifier at the chosen levels, suppressed rows costing 1 (see ``utility``)."""
        qis = self.quasi_identifiers
        columns = [tuples.index(q) for q in qis]
        if isinstance(tuples, TupleStore):
            chunks = ((c, n) for c, n in tuples.chunks(columns))
        else:
            chunks = iter([([tuples.codes[:, j] for j in columns], tuples.counts)])
        groups = [self._level_codes[q] for q in qis]
        penalties = [utility.penalty_per_group(self.hierarchies_[q].values, g) for q, g in zip(qis, groups)]
        values = utility.generalized_ncp(chunks, groups, penalties, [self._radix[q] for q in qis], self._suppressed_keys)
        return dict(zip(qis, values))

    def _unreachable_message(self, evaluator: Evaluator | ChunkedEvaluator) -> str:
        top = evaluator.evaluate(tuple(evaluator.heights))
        n = evaluator.n
        failed = ", ".join(top.failed) or "k"
        limit = self.params.suppression_limit
        return (
            f"k_anonymity: no generalization satisfies the criteria within suppression_limit={limit} "
            f"(at the top of every hierarchy still failing: {failed}; {top.suppressed_rows:,} of {n:,} rows would be suppressed); "
            f"the best reachable k is {n:,}" + ("" if n >= self.params.k else f", fewer than k={self.params.k} rows in the input")
        )

    def _prepare_apply(self, tuples: DistinctTuples | TupleStore, node: NodeResult) -> None:
        """Per quasi-identifier: dense codes at the chosen level and the string values; the keys of
        suppressed classes in the same mixed radix as :meth:`transform` computes."""
        self._level_codes: dict[str, np.ndarray] = {}
        self._level_values: dict[str, pa.Array] = {}
        self._radix: dict[str, int] = {}
        for q in self.quasi_identifiers:
            hierarchy, level = self.hierarchies_[q], self.levels_[q]
            codes = hierarchy.level_codes()[level]
            self._level_codes[q] = codes
            self._level_values[q] = hierarchy.level(level)
            self._radix[q] = int(codes.max(initial=-1)) + 1
        if sum(np.log2(max(r, 1)) for r in self._radix.values()) >= 62:
            raise DataError("k_anonymity: too many distinct generalized tuples to index; generalize further")
        if node.class_keys is not None:  # evaluated in buckets: the classes are known by these keys
            self._suppressed_keys = np.unique(node.class_keys[node.violating])
            return
        assert isinstance(tuples, DistinctTuples)
        tuple_key = np.zeros(len(tuples.counts), dtype=np.int64)
        for i, q in enumerate(self.quasi_identifiers):
            tuple_key = tuple_key * self._radix[q] + self._level_codes[q][tuples.codes[:, i]]
        suppressed_tuple = node.violating[node.classes]
        self._suppressed_keys = np.unique(tuple_key[suppressed_tuple])

    def _positions(self, column: str, values: pa.ChunkedArray) -> np.ndarray:
        """Index of each row's value in the hierarchy's values (seen in pass 1)."""
        return positions_in(column, values, self.hierarchies_[column].values)

    def _generalize_columns(self, table: pa.Table, positions: dict[str, np.ndarray]) -> pa.Table:
        for q in self.quasi_identifiers:
            values = self._level_values[q].take(pa.array(positions[q])) if len(positions[q]) else pa.array([], pa.string())
            table = table.set_column(table.schema.get_field_index(q), pa.field(q, pa.string()), values)
        return table


def _l_criterion(column: str, value: int | LDiversity) -> LDiversityCriterion:
    if isinstance(value, LDiversity):
        return LDiversityCriterion(column=column, l=value.l, variant=value.variant, c=value.c)
    return LDiversityCriterion(column=column, l=float(value))


def _level_name(hierarchy: Hierarchy, level: int) -> str:
    if level == 0:
        return "original"
    if level == hierarchy.height:
        return "suppressed (*)"
    return f"level {level}"


def _size_histogram(sizes: np.ndarray, classes: np.ndarray | None = None) -> dict[str, int]:
    """Number of equivalence classes per size bucket (``"1"``, ``"2"``, ``"3-4"``, ...); with
    ``classes``, ``sizes`` are distinct sizes and ``classes`` how many classes have each."""
    weights = np.ones(len(sizes), dtype=np.int64) if classes is None else classes
    out: dict[str, int] = {}
    edges = [*SIZE_BUCKETS, np.inf]
    for low, high in zip(edges, edges[1:]):
        label = str(low) if high == low + 1 else (f"{low}-{int(high) - 1}" if np.isfinite(high) else f"{low}+")
        out[label] = int(weights[(sizes >= low) & (sizes < high)].sum())
    return out


def _load(store: TupleStore) -> DistinctTuples:  # pragma: no cover - see ChunkedEvaluator.packable
    parts = list(store.chunks())
    codes = np.asfortranarray(np.concatenate([np.column_stack(c) for c, _ in parts]).astype(np.int32))
    return DistinctTuples(store.columns, store.dictionaries, codes, np.concatenate([n.astype(np.int64) for _, n in parts]))


__all__ = ["KAnonymity"]
