"""``k_anonymity`` with ``algorithm: mondrian``: multidimensional local recoding (LeFevre et al. 2006).

Pass 1 counts the distinct tuples of the quasi-identifiers and sensitive columns (the same
:class:`~.anonymity.tuples.TupleCounter` the full-domain search uses: never raw rows); ``decide``
partitions them (:mod:`.anonymity.mondrian`) and builds a lookup from each distinct quasi-identifier
tuple to its partition's recoding; pass 2 recodes each row by that lookup (its tuple's dictionary
codes packed into one integer key, found by binary search). Numeric quasi-identifiers come out as
``[lo, hi]`` strings, categorical ones as hierarchy labels: every quasi-identifier column is a string.

>>> import pyarrow as pa
>>> stage = MondrianKAnonymity(k=2, quasi_identifiers=["age"], hierarchies={})
>>> data = pa.table({"age": [30, 41, 31, 40]})
>>> stage.observe(data); stage.decide()
>>> stage.transform(data).column("age").to_pylist()
['[30, 31]', '[40, 41]', '[30, 31]', '[40, 41]']
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from privprep.schemas.errors import ConfigError, PrivacyError
from privprep.schemas.stages import KAnonymityParams

from .anonymity import measures, utility
from .anonymity.criteria import Criteria
from .anonymity.lookup import TupleLookup
from .anonymity.mondrian import Partitioning, Unreachable, partition
from .anonymity.store import TupleStore
from .anonymity.tuples import SPILL_TUPLES, DistinctTuples, TupleCounter
from .base import StageContext
from .hierarchies import build_hierarchy, read_arx_csv
from .k_anonymity import TupleCountingStage, _l_criterion, _load, _size_histogram

log = logging.getLogger(__name__)


class MondrianKAnonymity(TupleCountingStage):
    """Mondrian k-anonymity (+ l, t): each partition of at least k rows recoded on its own.

    Parameters as :class:`KAnonymity`'s; ``hierarchies`` are needed only for non-numeric
    quasi-identifiers (a numeric one's hierarchy is not used). Memory: the distinct tuples, held in
    memory while partitioning (counts spilled past ``memory_tuples`` are read back for it).
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
        base_dir: Any = None,
        memory_tuples: int | None = SPILL_TUPLES,
        spill_dir: str | None = None,
    ) -> None:
        params = KAnonymityParams.model_validate(
            {
                "k": k,
                "algorithm": "mondrian",
                "suppression_limit": suppression_limit,
                "quasi_identifiers": list(quasi_identifiers),
                "hierarchies": dict(hierarchies),
                "metric": metric,
                "l_diversity": dict(l_diversity or {}),
                "t_closeness": dict(t_closeness or {}),
            }
        )
        overlap = set(quasi_identifiers) & (set(params.l_diversity) | set(params.t_closeness))
        if overlap:
            raise ConfigError(f"column(s) {', '.join(sorted(overlap))} cannot be both quasi-identifier and sensitive")
        self.params = params
        self.quasi_identifiers = list(quasi_identifiers)
        self.sensitive = list(dict.fromkeys([*params.l_diversity, *params.t_closeness]))
        self.base_dir = base_dir
        for spec in params.hierarchies.values():  # read ARX files now: a bad file fails before any data
            if spec.tag == "csv":
                path = Path(spec.params)
                read_arx_csv(path if path.is_absolute() or base_dir is None else Path(base_dir) / path)
        self.criteria = Criteria(
            k=params.k,
            suppression_limit=params.suppression_limit,
            l_diversity=tuple(_l_criterion(c, v) for c, v in params.l_diversity.items()),
            t_closeness=tuple(params.t_closeness.items()),
        )
        self.memory_tuples = memory_tuples
        self.spill_dir = spill_dir
        self._counter = TupleCounter(self.input_columns(), spill_tuples=memory_tuples, spill_dir=spill_dir)

    @classmethod
    def from_config(cls, params: KAnonymityParams, *, context: StageContext) -> "MondrianKAnonymity":
        qis = params.quasi_identifiers or [n for n, s in context.columns.items() if s.role == "quasi_identifier"]
        if not qis:
            raise ConfigError("no quasi-identifiers: declare columns with role quasi_identifier or list quasi_identifiers")
        return cls(
            k=params.k,
            quasi_identifiers=qis,
            hierarchies=params.hierarchies,
            suppression_limit=params.suppression_limit,
            metric=params.metric,
            l_diversity=params.l_diversity,
            t_closeness=params.t_closeness,
            base_dir=context.base_dir,
            memory_tuples=params.memory_tuples,
        )

    # -- the stage interface: input_columns, output_schema, observe, merge from TupleCountingStage --------

    def decide(self) -> None:
        tuples = self._counter.result()
        self._counter = TupleCounter(self._counter.columns, spill_tuples=self.memory_tuples, spill_dir=self.spill_dir)
        if isinstance(tuples, TupleStore):  # counts spilled past memory_tuples: partitioning needs them in memory
            store = tuples
            try:
                tuples = _load(store)
            finally:
                store.close()
        self._decide(tuples)

    def _decide(self, tuples: DistinctTuples) -> None:
        t0 = time.perf_counter()
        self.hierarchies_ = {
            q: build_hierarchy(self.params.hierarchies[q], q, tuples.dictionaries[tuples.index(q)], base_dir=self.base_dir)
            for q in self.quasi_identifiers
            if q in self.params.hierarchies and not utility.is_numeric(tuples.dictionaries[tuples.index(q)])
        }
        n = tuples.rows
        try:
            result = partition(tuples, self.quasi_identifiers, self.hierarchies_, self.criteria)
        except Unreachable:
            raise PrivacyError(
                f"k_anonymity (mondrian): the whole input ({n:,} rows) fails the criteria "
                f"(k={self.params.k}{', l-diversity' if self.criteria.l_diversity else ''}"
                f"{', t-closeness' if self.criteria.t_closeness else ''}); no partitioning can satisfy them"
            ) from None
        seconds = time.perf_counter() - t0
        self.partitioning_ = result
        self._prepare_lookup(tuples, result)
        qi_key = self._lookup.pack([tuples.codes[:, tuples.index(q)].astype(np.int64) for q in self.quasi_identifiers], len(tuples.counts))
        _, first, inverse = np.unique(qi_key, return_index=True, return_inverse=True)
        before = np.bincount(inverse.ravel(), weights=tuples.counts).astype(np.int64)
        values, classes = np.unique(before, return_counts=True)
        # released classes: partitions with the same recoded tuple would be one class (strict cuts never
        # give two such partitions when hierarchy labels are unique; counted from the recodings anyway)
        kept = self._class_sizes(result)
        # math.fsum throughout: correctly rounded sums do not depend on the order of partitions or tuples
        ncp = {q: math.fsum(result.sizes * result.penalties[q]) / max(n, 1) for q in self.quasi_identifiers}
        self.summary_ = {
            "achieved_k": int(kept.min()) if len(kept) else None,
            "suppressed_rows": 0,
            "equivalence_classes": int(len(kept)),
            "information_loss": {"metric": self.params.metric, "value": self._loss(tuples, result, kept)},
            "measures": utility.summary(kept, k=self.params.k, suppressed=0, ncp=ncp),
            "risk_before": measures.risk_from_profile(values, classes),
            "risk_after": measures.risk(kept),
            "class_sizes_before": _size_histogram(values, classes),
            "class_sizes_after": _size_histogram(kept),
            "search": {
                "nodes_total": 0,
                "nodes_checked": 0,
                "seconds": round(seconds, 4),
                "strategy": "mondrian (strict, median cuts)",
                "heuristic": False,
                "rows": n,
                "distinct_tuples": int(len(first)),
                "partitions": int(len(result.sizes)),
                "cuts": int(result.cuts),
                "cuts_tried": int(result.cuts_tried),
            },
        }

    def transform(self, table: pa.Table) -> pa.Table:
        if not hasattr(self, "summary_"):
            raise RuntimeError("k_anonymity: decide() must run before transform()")
        part = self._lookup.find(table)
        for q in self.quasi_identifiers:
            values = self._recoded[q].take(pa.array(part)) if len(part) else pa.array([], pa.string())
            table = table.set_column(table.schema.get_field_index(q), pa.field(q, pa.string()), values)
        return table

    def report(self) -> dict[str, Any]:
        if not hasattr(self, "summary_"):
            return {"k": self.params.k, "quasi_identifiers": self.quasi_identifiers, "algorithm": "mondrian"}
        s = self.summary_
        return {
            "k": self.params.k,
            "algorithm": "mondrian",
            "achieved_k": s["achieved_k"],
            "suppression_limit": self.params.suppression_limit,
            "quasi_identifiers": self.quasi_identifiers,
            "levels": {},
            "recoding": {q: ("hierarchy" if q in self.hierarchies_ else "interval") for q in self.quasi_identifiers},
            "heights": {q: h.height for q, h in self.hierarchies_.items()},
            **{key: s[key] for key in ("suppressed_rows", "equivalence_classes", "information_loss", "measures")},
            **{key: s[key] for key in ("risk_before", "risk_after", "class_sizes_before", "class_sizes_after")},
            "criteria": {
                "l_diversity": {c.column: {"l": c.l, "variant": c.variant, **({"c": c.c} if c.c else {})} for c in self.criteria.l_diversity},
                "t_closeness": dict(self.criteria.t_closeness),
            },
            "search": dict(s["search"]),
        }

    # -- helpers -----------------------------------------------------------------------------------
    def _prepare_lookup(self, tuples: DistinctTuples, result: Partitioning) -> None:
        """The lookup from each distinct quasi-identifier tuple to its partition, and per
        quasi-identifier the recoded strings per partition."""
        columns = [tuples.index(q) for q in self.quasi_identifiers]
        dictionaries = {q: tuples.dictionaries[j] for q, j in zip(self.quasi_identifiers, columns)}
        self._lookup = TupleLookup(dictionaries, tuples.codes[:, columns], result.part)
        self._recoded = {q: pa.array(result.recodings[q], pa.string()) for q in self.quasi_identifiers}

    def _class_sizes(self, result: Partitioning) -> np.ndarray:
        """Rows per released equivalence class (partitions grouped by their recoded tuple)."""
        table = pa.table({q: pa.array(result.recodings[q], pa.string()) for q in self.quasi_identifiers})
        table = table.append_column("__rows__", pa.array(result.sizes))
        grouped = table.group_by(self.quasi_identifiers, use_threads=False).aggregate([("__rows__", "sum")])
        return np.sort(np.asarray(grouped.column("__rows___sum").to_numpy(), dtype=np.int64))

    def _loss(self, tuples: DistinctTuples, result: Partitioning, kept: np.ndarray) -> float:
        """The configured metric on the partitions: nu_entropy and loss as for local recoding
        (a value's generalization may differ between classes), discernibility and aecs by class."""
        metric, n, q = self.params.metric, tuples.rows, len(self.quasi_identifiers)
        if metric == "discernibility":
            return math.fsum(kept.astype(float) ** 2)
        if metric == "aecs":
            return float(kept.sum() / len(kept) / self.params.k)
        if metric == "loss":
            total = 0.0
            for name in self.quasi_identifiers:
                domain = len(tuples.dictionaries[tuples.index(name)])
                total += math.fsum(result.sizes * (result.covered[name] - 1)) / max(domain - 1, 1)
            return total / max(n * q, 1)
        # nu_entropy: -Σ cnt(v, g) log2(cnt(v, g) / cnt(g)) over original value v released as g
        total = 0.0
        for name in self.quasi_identifiers:
            released = pc.dictionary_encode(self._recoded[name], null_encoding="encode")
            g = np.asarray(released.indices.to_numpy(zero_copy_only=False), dtype=np.int64)[result.part]
            v = tuples.codes[:, tuples.index(name)].astype(np.int64)
            pair = v * (int(g.max(initial=0)) + 1) + g
            _, inverse = np.unique(pair, return_inverse=True)
            pair_rows = np.bincount(inverse.ravel(), weights=tuples.counts)
            first = np.zeros(len(pair_rows), dtype=np.int64)
            first[inverse.ravel()] = g
            g_rows = np.bincount(g, weights=tuples.counts)
            total -= math.fsum(pair_rows * np.log2(pair_rows / g_rows[first]))
        return total


__all__ = ["MondrianKAnonymity"]
