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
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import ValidationError

from privprep.schemas.config import ColumnSpec, check_dp_queries, format_validation_error
from privprep.schemas.errors import ConfigError, DataError
from privprep.schemas.stages import DpQuery, DpStatsParams

from ..base import ReleaseStage, StageContext
from ..registry import register
from ..privacy_account import PrivacyAccount
from .columns import BatchView, LocalCounts, is_numeric, typed_categories
from .mechanisms import NoiseSource
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
    ) -> None:
        self.path = path
        try:
            self.params = DpStatsParams(epsilon=epsilon, queries=queries, seed=seed)  # type: ignore[arg-type]
            self.columns = {name: ColumnSpec.model_validate(spec) for name, spec in columns.items()}
        except ValidationError as exc:
            raise ConfigError(f"{path}: {format_validation_error(exc)}") from None
        undeclared = sorted(set(self.params.referenced()) - set(self.columns))
        if undeclared:
            raise ConfigError(f"{path}: column(s) not declared: {', '.join(undeclared)}")
        problems = check_dp_queries(self.columns, self.params, path)
        if problems:
            raise ConfigError(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
        self.epsilon = float(self.params.epsilon)
        self.seed = seed
        self.epsilons = self.params.query_epsilons()
        self.local = LocalCounts()
        self.rows_observed = 0
        self.queries_: list[Query] | None = None
        self.releases_: list[dict[str, Any]] | None = None

    @classmethod
    def from_config(cls, params: DpStatsParams, *, context: StageContext) -> "DpStats":
        return cls(epsilon=params.epsilon, queries=list(params.queries), columns=context.columns, seed=params.seed, path=context.path)

    def input_columns(self) -> list[str]:
        return self.params.referenced()

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
            else:
                for mine, theirs in zip(self.queries_, other.queries_):
                    mine.merge(theirs)
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
        ledger.spend(self.epsilon, 0.0, details=self._spend_details())  # recorded before any noise is drawn
        noise = NoiseSource(seed=self.seed)
        if noise.seeded:
            log.warning("%s: noise is seeded (seed given): reproducible, for tests only", self.path)
        self.releases_ = [entry for query in self.queries_ for entry in query.release(noise)]
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
        return {
            "epsilon": self.epsilon,
            "delta": 0.0,
            "neighbouring": "add or remove one row",
            "composition": "sequential over queries; parallel over groups and bins",
            "seeded": self.seed is not None,
            "epsilon_split": {"method": method, "queries": queries},
            "local_not_dp": {"differentially_private": False, "note": NOT_DP_NOTE, "rows_observed": self.rows_observed,
                             **self.local.as_report()},
        }

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
            if query.by:
                fields.update(groups=self._typed(typed, query.by, schema), group_labels=tuple(self.columns[query.by].categories or ()))
            qspec = QuerySpec(
                index=index, column=query.column, stat=query.stat, epsilon=eps,
                bounds=(float(bounds[0]), float(bounds[1])) if bounds and not categorical and query.stat != "count" else None,
                bins=query.bins, quantiles=tuple(query.quantiles or ()), by=query.by, **fields,
            )
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
        return {
            "queries": [
                {"column": q.column, "stat": q.stat, "epsilon": eps, **({"by": q.by} if q.by else {})}
                for q, eps in zip(self.params.queries, self.epsilons)
            ]
        }


__all__ = ["DpStats"]
