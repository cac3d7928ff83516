"""Parameters of every pipeline stage, as written in the ``stages:`` list of a config (SPEC §2).

Each stage entry is ``{stage_name: params}``. The models validate one stage on its own; checks that
need the column declarations (does the column exist, is it numeric with bounds) are in
:func:`privprep.schemas.config.check_references`.

>>> from pydantic import TypeAdapter
>>> entry = TypeAdapter(StageSpec).validate_python({"pseudonymize": {"columns": ["id"], "domain": "patients"}})
>>> entry.tag, entry.params.columns
('pseudonymize', ['id'])

A params model also says what the config checks and the ledger need to know of its stage, so that
nothing outside it lists stages by name: its ``kind``, the identifier columns it ``protects``, the
columns it removes, and the privacy budget it will spend (:meth:`StageParams.planned_spend`).

>>> DpStatsParams(epsilon=0.5, queries=[{"column": "age", "stat": "count"}]).planned_spend(budget_delta=1e-5)
(0.5, 0.0)
>>> TrainParams(image="img", label="y", target_epsilon=3.0).planned_spend(budget_delta=1e-5)
(3.0, 1e-05)
>>> DropParams(columns=["name"]).kind, DropParams(columns=["name"]).protected_columns()
('map', ['name'])
"""

from __future__ import annotations

from typing import Annotated, Callable, ClassVar, Literal

from pydantic import AfterValidator, Field, model_validator

from .base import ColumnList, ColumnName, Domain, KeyId, StrictModel, one_key_union
from .hierarchies import HierarchySpec

def _computable_epsilon(value: float) -> float:
    if value < MIN_EPSILON:  # exp(-epsilon) rounds to 1: the geometric mechanism cannot be computed
        raise ValueError(f"epsilon must be at least {MIN_EPSILON:g}; below that no noise can be computed")
    return value


MIN_EPSILON = 1e-6
Epsilon = Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False), AfterValidator(_computable_epsilon)]
#: The four kinds of stage (see :mod:`privprep.transforms.base`).
StageKind = Literal["map", "global", "release", "sink"]


class StageParams(StrictModel):
    """Base of every stage's params model: the stage's traits that the config checks and the ledger use."""

    #: map, global, release (observes the input as declared, spends budget) or sink (last, spends budget)
    kind: ClassVar[StageKind] = "map"
    #: whether the stage protects the identifier columns it names in ``columns``
    protects: ClassVar[bool] = False

    def referenced(self) -> list[str]:
        """Columns the stage names (each must be declared)."""
        return []

    def protected_columns(self) -> list[str]:
        """Identifier columns this stage protects (a declared identifier nobody protects is a config error)."""
        return list(getattr(self, "columns", None) or []) if self.protects else []

    def removed_columns(self) -> list[str]:
        """Columns gone from the rows after this stage (later row stages cannot name them)."""
        return []

    def planned_spend(self, *, budget_delta: float) -> tuple[float, float] | None:
        """The (epsilon, delta) this stage will spend, known before any data is read; ``None``: it spends nothing."""
        return None


class PseudonymizeParams(StageParams):
    """Keyed, consistent pseudonyms: HMAC-SHA256 under a per-domain HKDF key (SPEC §6)."""

    protects: ClassVar[bool] = True

    columns: ColumnList
    domain: Domain | None = Field(None, description="pseudonym domain; defaults to the column name")
    key: KeyId | None = Field(None, description="keyring key id; defaults to the primary 'pseudonymize' key")

    def referenced(self) -> list[str]:
        return list(self.columns)


class DropParams(StageParams):
    """Remove columns from the output."""

    protects: ClassVar[bool] = True

    columns: ColumnList

    def referenced(self) -> list[str]:
        return list(self.columns)

    def removed_columns(self) -> list[str]:
        return list(self.columns)


class MaskParams(StageParams):
    """Replace every character but ``keep_first`` leading and ``keep_last`` trailing ones with ``char``.
    A value not longer than ``keep_first + keep_last`` is masked entirely (nothing is revealed whole)."""

    protects: ClassVar[bool] = True

    columns: ColumnList
    keep_first: Annotated[int, Field(ge=0)] = 0
    keep_last: Annotated[int, Field(ge=0)] = 0
    char: Annotated[str, Field(min_length=1, max_length=1)] = "*"

    def referenced(self) -> list[str]:
        return list(self.columns)


class TokenizeParams(StageParams):
    """Deterministic, joinable, reversible tokens (AES-SIV, domain as associated data)."""

    protects: ClassVar[bool] = True

    columns: ColumnList
    domain: Domain | None = None
    key: KeyId | None = None

    def referenced(self) -> list[str]:
        return list(self.columns)


class EncryptParams(StageParams):
    """Randomized authenticated encryption (AES-256-GCM), or sealed to a recipient's public key."""

    protects: ClassVar[bool] = True

    columns: ColumnList
    key: KeyId | None = None
    recipient: str | None = Field(None, description="path of a recipient public key file (X25519)")

    @model_validator(mode="after")
    def _one_key_source(self) -> "EncryptParams":
        if self.key is not None and self.recipient is not None:
            raise ValueError("give either 'key' or 'recipient', not both")
        return self

    def referenced(self) -> list[str]:
        return list(self.columns)


class GeneralizeParams(StageParams):
    """Fixed generalization: each column to a given level of its hierarchy."""

    hierarchies: Annotated[dict[ColumnName, HierarchySpec], Field(min_length=1)]
    levels: Annotated[dict[ColumnName, Annotated[int, Field(ge=0)]], Field(min_length=1)]

    @model_validator(mode="after")
    def _levels_have_hierarchies(self) -> "GeneralizeParams":
        missing = sorted(set(self.levels) - set(self.hierarchies))
        if missing:
            raise ValueError(f"levels given for columns without a hierarchy: {', '.join(missing)}")
        return self

    def referenced(self) -> list[str]:
        return sorted(set(self.hierarchies) | set(self.levels))


class LDiversity(StrictModel):
    """l-diversity of a sensitive column (Machanavajjhala et al.)."""

    l: Annotated[float, Field(ge=1)]  # noqa: E741 - the textbook's name
    variant: Literal["distinct", "entropy", "recursive"] = "distinct"
    c: Annotated[float, Field(gt=0)] | None = Field(None, description="c of recursive-(c,l) diversity")

    @model_validator(mode="after")
    def _check(self) -> "LDiversity":
        if self.variant == "recursive" and self.c is None:
            raise ValueError("recursive l-diversity needs 'c'")
        if self.variant != "recursive" and self.c is not None:
            raise ValueError("'c' applies only to variant 'recursive'")
        return self


class KAnonymityParams(StageParams):
    """k-anonymity under a suppression limit and optional l / t criteria: optimal full-domain
    generalization (``full_domain``, the default) or Mondrian multidimensional local recoding
    (``mondrian``: numeric quasi-identifiers cut at medians into ``[lo, hi]`` ranges, the others
    along their hierarchies)."""

    kind: ClassVar[StageKind] = "global"

    k: Annotated[int, Field(ge=1)]
    algorithm: Literal["full_domain", "mondrian"] = Field(
        "full_domain",
        description="'full_domain': the optimal level per quasi-identifier (same recoding in every row); "
        "'mondrian': strict multidimensional partitioning (LeFevre et al. 2006), numeric columns need no hierarchy",
    )
    suppression_limit: Annotated[float, Field(ge=0, le=1)] = 0.0
    quasi_identifiers: ColumnList | None = Field(None, description="defaults to every quasi_identifier column")
    hierarchies: dict[ColumnName, HierarchySpec] = Field(default_factory=dict)
    metric: Literal["nu_entropy", "discernibility", "aecs", "loss"] = "nu_entropy"
    l_diversity: dict[ColumnName, Annotated[int, Field(ge=1)] | LDiversity] = Field(default_factory=dict)
    t_closeness: dict[ColumnName, Annotated[float, Field(gt=0, le=1)]] = Field(default_factory=dict)
    missing: Literal["category", "wildcard"] = Field(
        "category", description="'category': a missing value is a value of its own; 'wildcard': matches any"
    )
    time_limit: Annotated[float, Field(gt=0)] = Field(60.0, description="seconds for the heuristic search")
    memory_tuples: Annotated[int, Field(ge=1024)] = Field(
        2_097_152,
        description="distinct tuples held in memory; beyond this they go to a private temporary directory "
        "($TMPDIR) and the search reads them back in buckets of this many, so memory stays flat",
    )

    def referenced(self) -> list[str]:
        cols = list(self.quasi_identifiers or []) + list(self.hierarchies)
        return sorted(set(cols) | set(self.l_diversity) | set(self.t_closeness))


class MicroaggregateParams(StageParams):
    """MDAV microaggregation (Domingo-Ferrer & Torra): numeric columns replaced by the centroid of
    groups of at least k nearest records (standardized distances)."""

    kind: ClassVar[StageKind] = "global"

    columns: ColumnList
    k: Annotated[int, Field(ge=2)]
    method: Literal["mdav"] = "mdav"
    max_tuples: Annotated[int, Field(ge=1)] = Field(
        100_000,
        description="most distinct tuples of the columns MDAV will group (its cost grows as tuples² / k); "
        "above it the stage stops before writing anything",
    )

    def referenced(self) -> list[str]:
        return list(self.columns)


Stat = Literal["count", "sum", "mean", "var", "std", "histogram", "quantile"]


class DpQuery(StrictModel):
    """One DP release. Bounds, ranges and categories come from the column declarations or the query."""

    column: ColumnName
    stat: Stat
    epsilon: Epsilon | None = None
    by: ColumnName | None = Field(None, description="group by this column's declared categories")
    group_by: ColumnList | None = Field(
        None, description="group by these columns: keys of columns with declared categories are public; the others are selected privately"
    )
    bins: Annotated[int, Field(ge=1, le=1_000_000)] | None = None  # one counter per bin and group, in memory
    range: tuple[float, float] | None = None
    quantiles: Annotated[list[Annotated[float, Field(ge=0, le=1)]], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _check(self) -> "DpQuery":
        if self.stat == "quantile" and self.quantiles is None:
            raise ValueError("stat 'quantile' needs 'quantiles', e.g. [0.5]")
        if self.stat != "quantile" and self.quantiles is not None:
            raise ValueError("'quantiles' applies only to stat 'quantile'")
        if self.range is not None and not self.range[0] < self.range[1]:
            raise ValueError("range must be [low, high] with low < high")
        if self.bins is not None and self.stat not in ("histogram", "quantile"):
            raise ValueError("'bins' applies only to stats 'histogram' and 'quantile'")
        if self.range is not None and self.stat == "count":
            raise ValueError("'range' does not apply to stat 'count' (a count needs no bounds)")
        if self.by is not None and self.group_by is not None:
            raise ValueError("give either 'by' or 'group_by', not both")
        return self


class SelectionParams(StrictModel):
    """Private selection of group keys not declared in the config: thresholded Laplace noise on the
    number of people per key (Desfontaines et al. 2022, as PipelineDP and Tumult Analytics do)."""

    epsilon: Epsilon = Field(description="taken from the stage's epsilon; split evenly between the stage's private groupings")
    delta: Annotated[float, Field(gt=0, lt=1)] = Field(description="the chance a key of one person is released; spent from budget.delta")
    mechanism: Literal["laplace"] = "laplace"


class DpStatsParams(StageParams):
    """Differentially private statistics released under the dataset's budget, computed on the input as
    declared (every input row, wherever the stage stands: not on the k-anonymous rows)."""

    kind: ClassVar[StageKind] = "release"

    epsilon: Epsilon = Field(description="the stage's total spend; queries without their own epsilon share what is left evenly")
    queries: Annotated[list[DpQuery], Field(min_length=1)]
    seed: int | None = Field(None, description="seed of the noise, for reproducible tests only")
    group_by: ColumnList | None = Field(None, description="default group_by of the queries that give neither 'by' nor 'group_by'")
    selection: SelectionParams | None = Field(None, description="budget for selecting group keys not declared in the config")
    max_partitions_contributed: Annotated[int, Field(ge=1, le=1_000_000)] | None = Field(
        None, description="overrides budget.max_partitions_contributed for this stage"
    )
    max_contributions_per_partition: Annotated[int, Field(ge=1, le=1_000_000)] | None = Field(
        None, description="overrides budget.max_contributions_per_partition for this stage"
    )
    memory_rows: Annotated[int, Field(ge=1024)] = Field(
        4_000_000, description="with a privacy unit: contributions held in memory per query; beyond it they spill to a private temporary directory"
    )

    @model_validator(mode="after")
    def _check_split(self) -> "DpStatsParams":
        given = [q.epsilon for q in self.queries if q.epsilon is not None]
        total, rest = sum(given), len(self.queries) - len(given)
        available = self.query_budget()
        what = "the stage's epsilon" if self.selection is None else "the stage's epsilon less selection.epsilon"
        slack = 1e-9 * self.epsilon
        if self.selection is not None and available <= slack:
            raise ValueError(f"selection.epsilon {self.selection.epsilon:g} leaves nothing of the stage's epsilon {self.epsilon:g} for the queries")
        if total > available + slack:
            raise ValueError(f"the queries' own epsilons add up to {total:g}, more than {what} {available:g}")
        if rest and total >= available - slack:
            raise ValueError(f"the queries' own epsilons use all of {what} {available:g}; {rest} query(ies) get none")
        if not rest and total < available - slack:
            raise ValueError(
                f"every query has its own epsilon, adding up to {total:g}, but {what} is {available:g}; make them equal"
            )
        return self

    def query_budget(self) -> float:
        """What the queries share: the stage's epsilon less the selection of private keys."""
        return self.epsilon - (self.selection.epsilon if self.selection is not None else 0.0)

    def query_epsilons(self) -> list[float]:
        """Each query's epsilon: its own, or an even share of what the others leave of the queries' budget."""
        given = [q.epsilon for q in self.queries if q.epsilon is not None]
        rest = len(self.queries) - len(given)
        share = (self.query_budget() - sum(given)) / rest if rest else 0.0
        return [q.epsilon if q.epsilon is not None else share for q in self.queries]

    def grouping(self, query: DpQuery) -> list[str]:
        """The columns a query groups by: its ``by``, its ``group_by``, or the stage's ``group_by``."""
        if query.by is not None:
            return [query.by]
        return list(query.group_by if query.group_by is not None else (self.group_by or []))

    def delta_spent(self) -> float:
        """The delta this stage spends: selection.delta when it selects keys privately, else 0."""
        return float(self.selection.delta) if self.selection is not None else 0.0

    def referenced(self) -> list[str]:
        return sorted({q.column for q in self.queries} | {c for q in self.queries for c in self.grouping(q)})

    def planned_spend(self, *, budget_delta: float) -> tuple[float, float]:
        return float(self.epsilon), self.delta_spent()


#: DP-SGD accountants and models: the one list the config, the stage and federated training use.
ACCOUNTANTS = ("prv", "rdp")
MODELS = ("cnn", "scatter_linear", "scatter_cnn")
_CHOSEN = "default: chosen from the training rows, target_epsilon and model (the model card says what and why)"


class DpSgdParams(StrictModel):
    """DP-SGD settings, shared by the ``train`` stage and federated training (each site's local DP-SGD)."""

    model: Literal[MODELS] | None = Field(  # type: ignore[valid-type]
        None, description="cnn: a small tanh CNN on pixels; scatter_linear / scatter_cnn: a linear model / small CNN on "
        "ScatterNet features (needs kymatio). Default: chosen from the data: scatter_linear (the most accurate measured, "
        "docs/training.md) for images of at least 8x8 pixels whose features fit in 4 GiB, with kymatio installed; else "
        "cnn; federated and people-level training train cnn")
    target_epsilon: Epsilon
    delta: Annotated[float, Field(gt=0, lt=1)] | None = None
    epochs: Annotated[int, Field(ge=1)] | None = Field(None, description=_CHOSEN)
    batch_size: Annotated[int, Field(ge=1)] | None = Field(None, description="expected (Poisson) batch size; " + _CHOSEN)
    learning_rate: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = Field(None, description=_CHOSEN)
    max_grad_norm: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = Field(None, description=_CHOSEN)
    momentum: Annotated[float, Field(ge=0, lt=1)] | None = Field(None, description="SGD momentum; " + _CHOSEN)
    accountant: Literal[ACCOUNTANTS] = "prv"  # type: ignore[valid-type]
    seed: int | None = Field(
        None, description="seed for reproducible tests only: a published seed lets anyone replay the noise; default: OS entropy"
    )


class TrainParams(DpSgdParams, StageParams):
    """DP-SGD training of a small model on the sanitized output (a sink stage)."""

    kind: ClassVar[StageKind] = "sink"

    image: ColumnName
    label: ColumnName
    holdout: Annotated[float, Field(gt=0, lt=1)] = 0.2
    image_shape: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=2, max_length=3)] | None = None

    def referenced(self) -> list[str]:
        return [self.image, self.label]

    def planned_spend(self, *, budget_delta: float) -> tuple[float, float]:
        return float(self.target_epsilon), float(self.delta if self.delta is not None else budget_delta)


#: Stage name -> params model. The names are the config contract (SPEC §2); plug-ins add theirs
#: with :func:`register_params`.
STAGE_PARAMS: dict[str, type[StageParams]] = {
    "pseudonymize": PseudonymizeParams,
    "drop": DropParams,
    "mask": MaskParams,
    "tokenize": TokenizeParams,
    "encrypt": EncryptParams,
    "generalize": GeneralizeParams,
    "k_anonymity": KAnonymityParams,
    "microaggregate": MicroaggregateParams,
    "dp_stats": DpStatsParams,
    "train": TrainParams,
}

StageSpec = one_key_union("stage", STAGE_PARAMS)
"""One entry of ``stages:``: ``{stage_name: params}``."""
_BUILTIN = tuple(STAGE_PARAMS)
#: Called after :data:`StageSpec` is rebuilt (the config model rebuilds its ``stages`` field).
_on_rebuild: list[Callable[[], None]] = []


def register_params(name: str, model: type[StageParams]) -> None:
    """Make ``{name: params}`` a valid ``stages:`` entry, validated by ``model`` (a stage from outside
    privprep: :func:`privprep.transforms.registry.register` calls this with the stage's ``Params``)."""
    if not (isinstance(model, type) and issubclass(model, StageParams)):
        raise TypeError(f"the params model of stage '{name}' must subclass privprep.schemas.stages.StageParams")
    if STAGE_PARAMS.get(name) is model:
        return
    if name in STAGE_PARAMS:
        raise ValueError(f"stage name '{name}' already has a params model ({STAGE_PARAMS[name].__name__})")
    STAGE_PARAMS[name] = model
    _rebuild()


def unregister_params(name: str) -> None:
    """Undo :func:`register_params` (privprep's own stages stay)."""
    if name in _BUILTIN or name not in STAGE_PARAMS:
        return
    del STAGE_PARAMS[name]
    _rebuild()


def _rebuild() -> None:
    global StageSpec
    StageSpec = one_key_union("stage", STAGE_PARAMS)
    for hook in _on_rebuild:
        hook()

__all__ = [
    "STAGE_PARAMS",
    "DpQuery",
    "SelectionParams",
    "DpStatsParams",
    "ACCOUNTANTS",
    "DpSgdParams",
    "DropParams",
    "EncryptParams",
    "GeneralizeParams",
    "KAnonymityParams",
    "LDiversity",
    "MODELS",
    "MaskParams",
    "MicroaggregateParams",
    "PseudonymizeParams",
    "StageKind",
    "StageParams",
    "StageSpec",
    "TokenizeParams",
    "TrainParams",
    "register_params",
    "unregister_params",
]
