"""The ``dp_stats`` release stage: streaming exact clipped statistics, noise once, spend recorded first.

>>> import pyarrow as pa
>>> from privprep.transforms.dp import DpStats, SpendLog
>>> stage = DpStats(
...     epsilon=1.0,
...     queries=[{"column": "income", "stat": "mean"}, {"column": "label", "stat": "histogram"}],
...     columns={"income": {"role": "sensitive", "bounds": [0, 100]}, "label": {"role": "insensitive", "categories": ["a", "b"]}},
...     seed=0,
... )
>>> for start in range(0, 1000, 250):   # batches of a stream
...     stage.observe(pa.table({"income": [float(i % 100) for i in range(start, start + 250)],
...                             "label": ["a", "b"] * 125}))
>>> log = SpendLog(epsilon=1.0)
>>> releases = stage.release(log)
>>> [(r["stat"], r.get("bin"), r["epsilon"]) for r in releases], log.spent
([('mean', None, 0.5), ('histogram', 'a', 0.5), ('histogram', 'b', 0.5)], 1.0)
>>> abs(releases[0]["value"] - 49.5) < 2, releases[0]["error_95"] < 2
(True, True)
"""

from __future__ import annotations

import logging
import secrets
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from pydantic import ValidationError

from privprep.schemas.config import ColumnSpec, check_dp_queries, format_validation_error
from privprep.schemas.errors import ConfigError, DataError
from privprep.schemas.stages import DpQuery, DpStatsParams

from ..base import ReleaseStage, StageContext
from ..registry import register
from ..privacy_account import PrivacyAccount
from .columns import BatchView, LocalCounts, is_numeric, typed_categories
from .bounding import hash_values
from .mechanisms import NoiseSource
from .people import GroupKeys, Grouping, KeySelection, PersonQuery
from .queries import QUERY_CLASSES, Query, QuerySpec

log = logging.getLogger(__name__)
NUMERIC_STATS = ("sum", "mean", "var", "std", "quantile")
NOT_DP_NOTE = (
    "exact counts about the input for the data owner; NOT differentially private: do not publish or share them "
    "with the released values"
)


@register
class DpStats(ReleaseStage):
    """Differentially private statistics of declared columns, under an explicit privacy account.

    Parameters
    ----------
    epsilon:
        The stage's whole spend. Queries without their own ``epsilon`` share what the others leave, evenly.
    queries:
        :class:`~privprep.schemas.stages.DpQuery` objects or dicts: ``column``, ``stat`` (count, sum,
        mean, var, std, histogram, quantile) and optionally ``epsilon``, ``by``, ``bins``, ``range``, ``quantiles``.
    columns:
        Column declarations (:class:`~privprep.schemas.config.ColumnSpec` or dicts) holding the public
        ``bounds`` and ``categories``; bounds are never read from the data.
    seed:
        Seed of the noise, for reproducible tests only; without it diffprivlib uses ``secrets``.
    privacy_unit:
        Column naming the person of each row: every release then protects a person, whose rows are
        bounded first to ``max_partitions_contributed`` groups and ``max_contributions_per_partition``
        rows per group (uniformly at random, see :mod:`.bounding`).
    group_by, selection, max_partitions_contributed, max_contributions_per_partition, memory_rows:
        As in :class:`~privprep.schemas.stages.DpStatsParams`.
    """

    name: ClassVar[str] = "dp_stats"
    Params = DpStatsParams

    def __init__(
        self,
        *,
        epsilon: float,
        queries: list[DpQuery | dict[str, Any]],
        columns: dict[str, ColumnSpec | dict[str, Any]],
        seed: int | None = None,
        path: str = "dp_stats",
        privacy_unit: str | None = None,
        group_by: list[str] | None = None,
        selection: dict[str, Any] | None = None,
        max_partitions_contributed: int | None = None,
        max_contributions_per_partition: int | None = None,
        memory_rows: int = 4_000_000,
    ) -> None:
        self.path = path
        try:
            self.params = DpStatsParams(  # type: ignore[arg-type]
                epsilon=epsilon, queries=queries, seed=seed, group_by=group_by, selection=selection,
                max_partitions_contributed=max_partitions_contributed,
                max_contributions_per_partition=max_contributions_per_partition, memory_rows=memory_rows,
            )
            self.columns = {name: ColumnSpec.model_validate(spec) for name, spec in columns.items()}
        except ValidationError as exc:
            raise ConfigError(f"{path}: {format_validation_error(exc)}") from None
        undeclared = sorted((set(self.params.referenced()) | {privacy_unit} - {None}) - set(self.columns))
        if undeclared:
            raise ConfigError(f"{path}: column(s) not declared: {', '.join(undeclared)}")
        problems = check_dp_queries(self.columns, self.params, path)
        if problems:
            raise ConfigError(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
        self.epsilon = float(self.params.epsilon)
        self.delta = self.params.delta_spent()
        self.seed = seed
        self.privacy_unit = privacy_unit
        self.max_partitions = self.params.max_partitions_contributed or 1
        self.max_rows = self.params.max_contributions_per_partition or 1
        self.person_level = privacy_unit is not None or any(self.params.grouping(q) for q in self.params.queries)
        # the sampler's seed: from the noise seed (tests) or fresh, shared by every copy of this stage
        self.sampler_seed = seed if seed is not None else secrets.randbits(63)
        self.groupings_: dict[tuple[str, ...], tuple[GroupKeys, KeySelection | None]] = {}
        self.epsilons = self.params.query_epsilons()
        self.local = LocalCounts()
        self.rows_observed = 0
        self.queries_: list[Query] | None = None
        self.releases_: list[dict[str, Any]] | None = None

    @classmethod
    def from_config(cls, params: DpStatsParams, *, context: StageContext) -> "DpStats":
        budget = context.budget
        unit = getattr(budget, "privacy_unit", None)
        return cls(
            epsilon=params.epsilon, queries=list(params.queries), columns=context.columns, seed=params.seed, path=context.path,
            privacy_unit=unit, group_by=params.group_by,
            selection=params.selection.model_dump() if params.selection is not None else None,
            max_partitions_contributed=params.max_partitions_contributed or getattr(budget, "max_partitions_contributed", None),
            max_contributions_per_partition=params.max_contributions_per_partition
            or getattr(budget, "max_contributions_per_partition", None),
            memory_rows=params.memory_rows,
        )

    def input_columns(self) -> list[str]:
        return sorted(set(self.params.referenced()) | ({self.privacy_unit} if self.privacy_unit else set()))

    def output_schema(self, schema: pa.Schema) -> pa.Schema:
        """Checks the input's types against the queries (a release stage changes no rows or columns)."""
        self._bind(schema)
        return schema

    def observe(self, table: pa.Table) -> None:
        """Add one batch to the exact clipped statistics of every query."""
        if self.releases_ is not None:
            raise RuntimeError("this stage has released already; a new release needs a new stage")
        queries = self._bind(table.schema)
        view = BatchView(table, self.local)
        if self.person_level:
            self._observe_people(view)
        else:
            for query in queries:
                query.update(view)
        self.rows_observed += table.num_rows

    def merge(self, other: "ReleaseStage") -> None:
        """Fold in the exact statistics a copy of this stage accumulated over other partitions."""
        if not isinstance(other, DpStats) or other.params != self.params:
            raise TypeError("merge() takes a copy of the same dp_stats stage")
        if self.releases_ is not None:
            raise RuntimeError("this stage has released already; a new release needs a new stage")
        if other.queries_ is not None:
            if self.queries_ is None:
                self.queries_ = other.queries_
                self.groupings_ = other.groupings_
            else:
                for mine, theirs in zip(self.queries_, other.queries_):
                    mine.merge(theirs)  # type: ignore[arg-type]
                for columns, (keys, selection) in other.groupings_.items():
                    my_keys, my_selection = self.groupings_[columns]
                    my_keys.merge(keys)
                    if my_selection is not None and selection is not None:
                        my_selection.merge(selection)
        self.local.merge(other.local)
        self.rows_observed += other.rows_observed

    def release(self, ledger: PrivacyAccount) -> list[dict[str, Any]]:
        """Record the spend in ``ledger``, then add noise once; returns one entry per released value."""
        if self.releases_ is not None:
            raise RuntimeError("this stage has released already; a new release needs a new stage")
        if self.queries_ is None:
            raise RuntimeError("observe() at least one batch (or call output_schema) before release()")
        if ledger is None or not hasattr(ledger, "spend"):
            raise TypeError("release() needs an account to spend from, e.g. privprep.transforms.dp.SpendLog(epsilon=...)")
        ledger.spend(self.epsilon, self.delta, details=self._spend_details())  # recorded before any noise is drawn
        noise = NoiseSource(seed=self.seed)
        if noise.seeded:
            log.warning("%s: noise is seeded (seed given): reproducible, for tests only", self.path)
        if self.person_level:
            self.releases_ = self._release_people(noise)
        else:
            self.releases_ = [entry for query in self.queries_ for entry in query.release(noise)]  # type: ignore[union-attr]
        return self.releases_

    def report(self) -> dict[str, Any]:
        own = [q.epsilon is not None for q in self.params.queries]
        method = "per query" if all(own) else ("even" if not any(own) else "own epsilons, the rest split evenly")
        queries = []
        for index, (query, eps) in enumerate(zip(self.params.queries, self.epsilons)):
            item: dict[str, Any] = {"query": index, "column": query.column, "stat": query.stat, "epsilon": eps, "own": own[index]}
            if query.by:
                item["by"] = query.by
            if self.queries_ is not None:
                item["parts"] = self.queries_[index].epsilon_parts()
            queries.append(item)
        entry: dict[str, Any] = {
            "epsilon": self.epsilon,
            "delta": self.delta,
            "neighbouring": "add or remove one row" if self.privacy_unit is None
            else f"add or remove one person (every row of one '{self.privacy_unit}' value)",
            "composition": "sequential over queries; parallel over groups and bins",
            "seeded": self.seed is not None,
            "epsilon_split": {"method": method, "queries": queries},
            "local_not_dp": {"differentially_private": False, "note": NOT_DP_NOTE, "rows_observed": self.rows_observed,
                             **self.local.as_report()},
        }
        if self.person_level:
            self._report_people(entry, queries)
        return entry

    # -- binding the queries to the input's types ------------------------------------------------------

    def _bind(self, schema: pa.Schema) -> list[Query]:
        if self.queries_ is not None:
            return self.queries_
        missing = [c for c in self.input_columns() if c not in schema.names]
        if missing:
            raise DataError(f"{self.path}: column(s) not in the data: {', '.join(missing)}")
        typed: dict[str, pa.Array] = {}
        queries = []
        for index, (query, eps) in enumerate(zip(self.params.queries, self.epsilons)):
            where = f"{self.path}.queries[{index}]"
            spec = self.columns[query.column]
            data_type = schema.field(query.column).type
            categorical = query.stat == "histogram" and spec.categories is not None
            if query.stat == "histogram" and not categorical and not is_numeric(data_type):
                raise ConfigError(
                    f"{where}: '{query.column}' is {data_type} in the input, so its histogram counts declared categories: "
                    f"add categories: [...] to columns.{query.column} ('bins' and bounds apply to numeric columns only)"
                )
            if (query.stat in NUMERIC_STATS or (query.stat == "histogram" and not categorical)) and not is_numeric(data_type):
                raise ConfigError(
                    f"{where}: stat '{query.stat}' needs a numeric column, but '{query.column}' is {data_type} in the input; "
                    "use stat 'count', or a 'histogram' over declared categories"
                )
            bounds = query.range or spec.bounds
            fields: dict[str, Any] = {}
            if categorical:
                fields.update(categories=self._typed(typed, query.column, schema), labels=tuple(spec.categories or ()))
            if query.by and not self.person_level:
                fields.update(groups=self._typed(typed, query.by, schema), group_labels=tuple(self.columns[query.by].categories or ()))
            qspec = QuerySpec(
                index=index, column=query.column, stat=query.stat, epsilon=eps,
                bounds=(float(bounds[0]), float(bounds[1])) if bounds and not categorical and query.stat != "count" else None,
                bins=query.bins, quantiles=tuple(query.quantiles or ()), by=None if self.person_level else query.by, **fields,
            )
            if self.person_level:
                columns = tuple(self.params.grouping(query))
                if columns not in self.groupings_:
                    grouping = self._grouping(list(columns), schema, typed)
                    selection = None if grouping.public else KeySelection(grouping, memory_rows=self.params.memory_rows)
                    self.groupings_[columns] = (GroupKeys(grouping), selection)
                grouping = self.groupings_[columns][0].grouping
                queries.append(PersonQuery(qspec, grouping, memory_rows=self.params.memory_rows))  # type: ignore[arg-type]
            else:
                queries.append(QUERY_CLASSES[query.stat](qspec))
        self.queries_ = queries
        return queries

    def _typed(self, cache: dict[str, pa.Array], column: str, schema: pa.Schema) -> pa.Array:
        if column not in cache:
            try:
                cache[column] = typed_categories(list(self.columns[column].categories or ()), schema.field(column).type)
            except ValueError as exc:
                raise ConfigError(f"columns.{column}.categories: {exc}") from None
        return cache[column]

    def _spend_details(self) -> dict[str, Any]:
        details: dict[str, Any] = {
            "queries": [
                {"column": q.column, "stat": q.stat, "epsilon": eps, **({"by": q.by} if q.by else {}),
                 **({"group_by": self.params.grouping(q)} if q.group_by or (self.params.group_by and not q.by) else {})}
                for q, eps in zip(self.params.queries, self.epsilons)
            ]
        }
        if self.privacy_unit is not None:
            details["privacy_unit"] = self.privacy_unit
            details["contribution_bounds"] = self._bounds()
        private = self._private_groupings()
        if private and self.params.selection is not None:
            share = len(private)
            details["partition_selection"] = [
                {"group_by": list(columns), "mechanism": "Laplace thresholding",
                 "epsilon": self.params.selection.epsilon / share, "delta": self.params.selection.delta / share,
                 "max_partitions_contributed": self.max_partitions}
                for columns in private
            ]
        return details

    # -- people: bounded contributions, grouped queries, private keys ------------------------------------

    def _bounds(self) -> dict[str, int]:
        return {"max_partitions_contributed": self.max_partitions, "max_contributions_per_partition": self.max_rows}

    def _grouping(self, columns: list[str], schema: pa.Schema, typed: dict[str, pa.Array]) -> Grouping:
        categories = tuple(self._typed(typed, c, schema) if self.columns[c].categories is not None else None for c in columns)
        labels = tuple(tuple(self.columns[c].categories) if self.columns[c].categories is not None else None for c in columns)
        return Grouping(tuple(columns), categories, labels)

    def _private_groupings(self) -> list[tuple[str, ...]]:
        seen: dict[tuple[str, ...], None] = {}
        for query in self.params.queries:
            columns = tuple(self.params.grouping(query))
            if columns and any(self.columns[c].categories is None for c in columns):
                seen.setdefault(columns)
        return list(seen)

    def _observe_people(self, view: BatchView) -> None:
        table = view.table
        if self.privacy_unit is not None:
            unit = hash_values(table.column(self.privacy_unit))
        else:
            unit = np.zeros(table.num_rows, dtype=np.uint64)
        keys = {columns: (group_keys, selection, *group_keys.keys(view))
                for columns, (group_keys, selection) in self.groupings_.items()}
        for columns, (_, selection, key, valid) in keys.items():
            if selection is not None:
                selection.update(unit, key, valid)
        for query in self.queries_ or []:
            _, _, key, valid = keys[query.grouping.columns]  # type: ignore[attr-defined]
            query.update(view, unit, key, valid)  # type: ignore[attr-defined]

    def _release_people(self, noise: NoiseSource) -> list[dict[str, Any]]:
        per_person = self.privacy_unit is not None
        private = self._private_groupings()
        selection = self.params.selection
        released: dict[tuple[str, ...], tuple[np.ndarray | None, list[Any]]] = {}
        for columns, (group_keys, keys) in self.groupings_.items():
            if keys is None:
                released[columns] = (None, group_keys.grouping.public_labels() if columns else [])
                continue
            if selection is None:  # check_dp_queries requires it; stay closed regardless
                raise ConfigError(f"{self.path}: private group keys need 'selection'")
            chosen = keys.select(epsilon=selection.epsilon / len(private), delta=selection.delta / len(private),
                                 max_partitions=self.max_partitions if per_person else 1, seed=self.sampler_seed,
                                 per_person=per_person, noise=noise)
            labels = [group_keys.labels[int(k)] for k in chosen]
            order = sorted(range(len(labels)), key=lambda i: (str(labels[i]), int(chosen[i])))
            chosen = chosen[order] if len(order) else chosen
            labels = [labels[i] for i in order]
            # searchsorted needs sorted keys: map released keys sorted by hash to the label order
            by_hash = np.argsort(chosen, kind="stable")
            released[columns] = (chosen[by_hash], [labels[i] for i in by_hash])
        out = []
        for query in self.queries_ or []:
            keys, labels = released[query.grouping.columns]  # type: ignore[attr-defined]
            out.extend(query.release(noise, keys=keys, labels=labels, seed=self.sampler_seed,  # type: ignore[call-arg]
                                     max_partitions=self.max_partitions if per_person else 1,
                                     max_rows=self.max_rows if per_person else 1, per_person=per_person))
        return out

    def _report_people(self, entry: dict[str, Any], queries: list[dict[str, Any]]) -> None:
        """The privacy unit, the bounds and the key selections (DP); rows dropped by bounding and keys
        suppressed are exact counts, so they go under ``local_not_dp``. No key value appears here."""
        entry["privacy_unit"] = self.privacy_unit
        if self.privacy_unit is not None:
            entry["contribution_bounds"] = self._bounds()
        local = entry["local_not_dp"]
        if self.queries_ is not None and self.releases_ is not None:
            for item, query in zip(queries, self.queries_):
                item["contribution"] = query.contribution  # type: ignore[attr-defined]
            local["bounding"] = [
                {"query": i, "rows_kept": q.rows_kept, "rows_dropped": q.rows_dropped}  # type: ignore[attr-defined]
                for i, q in enumerate(self.queries_)
            ]
        selections, keys_local = [], []
        for columns, (_, keys) in self.groupings_.items():
            if keys is not None and keys.selection_ is not None:
                selections.append({"group_by": list(columns), **keys.selection_.describe()})
                released = int(keys.selection_.released.sum())
                keys_local.append({"group_by": list(columns), "keys_observed": int(keys.observed_ or 0),
                                   "keys_suppressed": int(keys.observed_ or 0) - released})
        if selections:
            entry["partition_selection"] = selections
            local["keys"] = keys_local


__all__ = ["DpStats"]
