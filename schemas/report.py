"""The run report (SPEC §4): pydantic models of ``report.json``, exported to ``schemas/report.schema.json``.

The fields SPEC §4 names are typed and required; per-stage detail that is still moving is typed
where known and otherwise allowed as extra keys. A report holds column names, counts, levels,
measures, key ids and DP-released values only: never a cell value, never key material. Regenerate
the committed schema with::

    python -m privprep.schemas.report > schemas/report.schema.json

>>> entry = {"name": "drop", "kind": "map", "rows_in": 3, "rows_out": 3, "seconds": 0.0, "columns": ["name"]}
>>> report = validate_report({
...     "report_version": 1, "privprep_version": "0.1.0", "config_sha256": "ab" * 32, "status": "success",
...     "input": {"rows": 3}, "output": {"rows": 3}, "keys_used": [], "timings": {"total_seconds": 0.1},
...     "stages": [entry],
... })
>>> report.kind, type(report.stages[0]).__name__
('run', 'DropEntry')
>>> validate_report({"report_version": 1})
Traceback (most recent call last):
...
ValueError: report.json does not match the report schema: privprep_version: Field required (and 7 more)
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, RootModel, Tag, ValidationError

from .base import KeyId

Count = Annotated[int, Field(ge=0)]
Seconds = Annotated[float, Field(ge=0)]
Probability = Annotated[float, Field(ge=0, le=1)]
Epsilon = Annotated[float, Field(ge=0)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
ColumnName = Annotated[str, Field(min_length=1)]
Category = Union[str, int, float, bool]
Role = Literal["identifier", "quasi_identifier", "sensitive", "insensitive"]


class Open(BaseModel):
    """A part of the report: the named fields are checked, further keys are allowed."""

    model_config = ConfigDict(extra="allow")


# -- the run as a whole --------------------------------------------------------------------------------


class InputSummary(Open):
    rows: Count = Field(description="rows read from the input")
    path: str | None = None
    format: str | None = None
    files: Count | None = None
    columns: dict[str, Role] | None = Field(None, description="declared column -> role")


class OutputSummary(Open):
    rows: Count = Field(description="rows written to data/")
    rows_removed: Count | None = None
    files: list[str] = Field(default_factory=list)
    columns: list[str] = Field(default_factory=list)
    encryption: dict[str, Any] | None = Field(None, description="Parquet column encryption: key ids only")


class Timings(Open):
    """Seconds per pass of the run (further ``*_seconds`` keys are allowed)."""

    total_seconds: Seconds
    observe_seconds: Seconds | None = None
    write_seconds: Seconds | None = None


class EngineSummary(Open):
    """Which engine ran the stages."""

    name: Literal["streaming", "dask"]
    partitions: Annotated[int, Field(ge=0)] | None = Field(None, description="input pieces (Dask partitions)")
    scheduler: str | None = Field(None, description="dask: 'local cluster', 'synchronous', ... or the scheduler address")
    workers: Annotated[int, Field(ge=0)] | None = None


class BudgetSummary(Open):
    """The dataset's privacy budget after this run (from the ledger)."""

    epsilon: Epsilon = Field(description="budget.epsilon: the dataset's total")
    spent_epsilon: Epsilon = Field(description="spent on this dataset so far, this run included")
    remaining_epsilon: Epsilon
    delta: Probability | None = None
    spent_delta: Probability | None = None
    composition: str | None = None
    releases: Count | None = None
    spent_this_run: Epsilon | None = None
    ledger: str | None = None
    input_fingerprint: str | None = None


# -- stages ----------------------------------------------------------------------------------------------


class StageBase(Open):
    """What every stage entry has: its name, kind, seconds and the rows it saw and passed on."""

    name: str
    kind: Literal["map", "global", "release", "sink"]
    seconds: Seconds
    rows_in: Count | None = Field(None, description="rows the stage saw")
    rows_out: Count | None = Field(None, description="rows the stage passed on")
    plugin: None = Field(None, description="absent for privprep's own stages")


class PluginEntry(StageBase):
    """A stage class from outside privprep registered under a stage name (a plug-in or a test double):
    only the common fields are checked; ``plugin`` names its class."""

    plugin: Annotated[str, Field(min_length=1)]  # type: ignore[assignment]


class RowStage(StageBase):
    rows_in: Count
    rows_out: Count


class ColumnsEntry(RowStage):
    kind: Literal["map"] = "map"
    columns: list[ColumnName]


class PseudonymizeEntry(ColumnsEntry):
    name: Literal["pseudonymize"]
    domain: str | None = None
    key: KeyId | None = None
    format: str | None = None


class TokenizeEntry(ColumnsEntry):
    name: Literal["tokenize"]
    domain: str | None = None
    key: KeyId | None = None
    format: str | None = None


class EncryptEntry(ColumnsEntry):
    name: Literal["encrypt"]
    key: KeyId | None = None
    recipient: KeyId | None = None
    format: str | None = None


class MaskEntry(ColumnsEntry):
    name: Literal["mask"]
    keep_first: Count | None = None
    keep_last: Count | None = None


class DropEntry(ColumnsEntry):
    name: Literal["drop"]


class DecryptEntry(ColumnsEntry):
    name: Literal["decrypt"]
    omitted_columns: dict[str, str] = Field(default_factory=dict, description="column -> key id the keyring lacked")


class GeneralizeEntry(RowStage):
    name: Literal["generalize"]
    kind: Literal["map"] = "map"
    levels: dict[str, Count] = Field(default_factory=dict)


class InformationLoss(Open):
    metric: str
    value: float


class Risk(Open):
    """Re-identification risk under the prosecutor model (SPEC §4)."""

    prosecutor_max: Probability
    prosecutor_avg: Probability
    sample_uniques: Probability = Field(description="fraction of rows in classes of size 1")


class LatticeSearch(Open):
    nodes_total: Count
    nodes_checked: Count
    seconds: Seconds
    strategy: str | None = None
    heuristic: bool | None = None
    rows: Count | None = None
    distinct_tuples: Count | None = None


class UtilityMeasures(Open):
    """Utility of the released data in one form for every algorithm (full-domain, Mondrian,
    microaggregation): see ``privprep.transforms.anonymity.utility``."""

    discernibility: Annotated[float, Field(ge=0)] = Field(description="Σ|E|² over kept classes + n per suppressed row")
    c_avg: Annotated[float, Field(ge=0)] | None = Field(description="(kept rows / kept classes) / k; null when every row was suppressed")
    ncp: dict[str, Probability] = Field(description="column -> normalized certainty penalty averaged over the input rows (1 per suppressed row)")
    gcp: Probability = Field(description="global certainty penalty: the mean of ncp over the columns")


class KAnonymityEntry(RowStage):
    name: Literal["k_anonymity"]
    kind: Literal["global"] = "global"
    k: Annotated[int, Field(ge=1)]
    achieved_k: Annotated[int, Field(ge=1)] | None = Field(description="smallest class kept; null when every row was suppressed")
    quasi_identifiers: Annotated[list[ColumnName], Field(min_length=1)]
    levels: dict[str, Count] = Field(description="quasi-identifier -> chosen generalization level (0 = original)")
    suppressed_rows: Count
    equivalence_classes: Count
    information_loss: InformationLoss
    risk_before: Risk
    risk_after: Risk
    search: LatticeSearch
    suppression_limit: Probability | None = None
    level_names: dict[str, str] | None = None
    heights: dict[str, Count] | None = Field(None, description="quasi-identifier -> top level of its hierarchy")
    class_sizes_before: dict[str, Count] | None = Field(None, description="size bucket -> number of classes, input")
    class_sizes_after: dict[str, Count] | None = Field(None, description="size bucket -> number of classes kept")
    criteria: dict[str, Any] | None = None
    algorithm: Literal["full_domain", "mondrian"] | None = Field(None, description="absent in reports before Mondrian: full_domain")
    measures: UtilityMeasures | None = None
    recoding: dict[str, Literal["level", "interval", "hierarchy"]] | None = Field(
        None,
        description="quasi-identifier -> how its released values read: 'level' (one hierarchy level for every row), "
        "'interval' (Mondrian: '[lo, hi]' per class, closed), 'hierarchy' (Mondrian: a hierarchy label, its level per class)",
    )


class MicroaggregateEntry(RowStage):
    """MDAV microaggregation: groups of at least k rows share their centroid on ``columns``."""

    name: Literal["microaggregate"]
    kind: Literal["global"] = "global"
    columns: Annotated[list[ColumnName], Field(min_length=1)]
    k: Annotated[int, Field(ge=1)]
    method: Literal["mdav"]
    groups: Count
    achieved_k: Annotated[int, Field(ge=1)] | None
    information_loss: InformationLoss
    measures: UtilityMeasures
    distinct_tuples: Count | None = None
    mdav_seconds: Seconds | None = None


class DpRelease(Open):
    """One released value (SPEC §4)."""

    column: ColumnName
    stat: Literal["count", "sum", "mean", "var", "std", "histogram", "quantile"]
    value: float
    epsilon: Epsilon
    mechanism: str
    bounds: tuple[float, float] | None = Field(description="declared bounds the values were clipped to; null for counts and categories")
    noise_scale: Annotated[float, Field(ge=0)]
    error_95: Annotated[float, Field(ge=0)] = Field(description="|released - exact clipped| <= error_95 with probability >= 95%")
    query: Count | None = None
    by: str | list[str] | None = Field(None, description="the column (or columns) grouped by")
    group: Category | list[Category | None] | None = Field(
        None, description="the group's key: a declared category, or a key released by private selection"
    )
    bin: Category | tuple[float, float] | None = Field(None, description="declared category, or [low, high) of a numeric bin")
    quantile: Probability | None = None


class BoundingCounts(Open):
    """Rows of one query kept and dropped by contribution bounding (exact, not DP)."""

    query: Count
    rows_kept: Count
    rows_dropped: Count


class KeyCounts(Open):
    """Keys of one private grouping observed and suppressed by partition selection (exact, not DP)."""

    group_by: list[ColumnName]
    keys_observed: Count
    keys_suppressed: Count


class LocalNotDp(Open):
    """Exact counts about the input for the data owner: NOT differentially private."""

    differentially_private: Literal[False]
    rows_observed: Count | None = None
    missing: dict[str, Count] | None = None
    outside_categories: dict[str, Count] | None = None
    bounding: list[BoundingCounts] | None = None
    keys: list[KeyCounts] | None = None


class ContributionBounds(Open):
    """How much one person may contribute (``budget.privacy_unit``)."""

    max_partitions_contributed: Annotated[int, Field(ge=1)]
    max_contributions_per_partition: Annotated[int, Field(ge=1)]


class PartitionSelection(Open):
    """One private selection of group keys (thresholded Laplace); only the number released is reported."""

    group_by: list[ColumnName]
    mechanism: str
    epsilon: Epsilon
    delta: Probability
    threshold: float
    noise_scale: Annotated[float, Field(ge=0)]
    max_partitions_contributed: Annotated[int, Field(ge=1)]
    keys_released: Count


class DpStatsEntry(StageBase):
    name: Literal["dp_stats"]
    kind: Literal["release"] = "release"
    releases: list[DpRelease]
    epsilon: Epsilon | None = None
    delta: Probability | None = None
    local_not_dp: LocalNotDp | None = None
    privacy_unit: ColumnName | None = Field(None, description="the column naming the person each release protects")
    contribution_bounds: ContributionBounds | None = None
    partition_selection: list[PartitionSelection] | None = None


class TrainEpoch(Open):
    epoch: Annotated[int, Field(ge=1)]
    accuracy: Probability | None = None
    epsilon: Epsilon | None = None
    loss: float | None = None


class TrainEntry(StageBase):
    """The same keys as ``model/model_card.json`` (SPEC §4)."""

    name: Literal["train"]
    kind: Literal["sink"] = "sink"
    epsilon: Epsilon
    delta: Probability
    accountant: str
    noise_multiplier: Annotated[float, Field(ge=0)]
    max_grad_norm: Annotated[float, Field(gt=0)]
    sample_rate: Annotated[float, Field(gt=0, le=1)]
    epochs: Count
    steps: Count
    rows: Count = Field(description="rows read from the sanitized output: train_rows + holdout_rows")
    train_rows: Count | None = Field(None, description="rows trained on")
    holdout_rows: Count | None = Field(None, description="rows held out for the accuracy, never trained on")
    accuracy: Probability | None = Field(description="on the held-out split")
    history: list[TrainEpoch] | None = Field(None, description="per epoch: accuracy and epsilon spent so far")


class FederatedSiteTraining(Open):
    """One site's part of a federated training (its own guarantee: ε cumulative over every round)."""

    site: str
    epsilon: Epsilon | None
    delta: Probability | None
    rounds: Count
    accuracy: Probability | None = Field(description="the global model on this site's held-out rows")


class FederatedRound(Open):
    round: Annotated[int, Field(ge=1)]
    accuracy: Probability | None = None
    epsilon: Epsilon | None = None


class FederatedTrainEntry(StageBase):
    """FedAvg with DP-SGD at every site: the same keys as ``model/model_card.json`` of a federated run."""

    name: Literal["federated_train"]
    kind: Literal["sink"] = "sink"
    epsilon: Epsilon | None = Field(description="the largest site epsilon: what every record of every site gets at least")
    delta: Probability | None
    accountant: str
    rounds: Annotated[int, Field(ge=1)]
    accuracy: Probability | None = Field(description="the global model on all sites' held-out rows")
    sites: list[FederatedSiteTraining]
    privacy_unit: str
    not_hidden: list[str]
    history: list[FederatedRound] | None = None


_NAMED: dict[str, type[StageBase]] = {
    "pseudonymize": PseudonymizeEntry, "tokenize": TokenizeEntry, "encrypt": EncryptEntry, "mask": MaskEntry,
    "drop": DropEntry, "generalize": GeneralizeEntry, "k_anonymity": KAnonymityEntry, "microaggregate": MicroaggregateEntry, "dp_stats": DpStatsEntry,
    "train": TrainEntry, "decrypt": DecryptEntry, "federated_train": FederatedTrainEntry,
}


def _stage_tag(value: Any) -> str | None:
    get = value.get if isinstance(value, dict) else (lambda key: getattr(value, key, None))
    return "plugin" if get("plugin") else get("name")


StageEntry = Annotated[
    Union[tuple(Annotated[model, Tag(name)] for name, model in {**_NAMED, "plugin": PluginEntry}.items())],  # type: ignore[misc]
    Discriminator(_stage_tag, custom_error_type="invalid_stage", custom_error_message="unknown stage name"),
]
#: Stage names with an entry model (a test holds this to the config's stage names).
STAGE_ENTRIES = tuple(_NAMED)


class AttributeDisclosure(Open):
    column: ColumnName
    disclosed: Count = Field(description="linked auxiliary records whose class holds a single value of the column")
    rate: Probability = Field(description="disclosed / linked")


class AttackEntry(Open):
    """``privprep attack --record``: a linkage attack on the run's output (counts and rates only)."""

    auxiliary_records: Count
    on: Annotated[list[ColumnName], Field(min_length=1)]
    linked: Count
    linked_uniquely: Count
    reidentification_rate: Probability = Field(description="correct re-identifications / auxiliary records, or the expected rate without truth")
    expected_reidentification_rate: Probability = Field(description="sum of 1/|class| over linked records / auxiliary records")
    reidentified_correctly: Count | None = None
    truth: ColumnName | None = None
    attribute_disclosure: AttributeDisclosure | None = None
    achieved_k: Annotated[int, Field(ge=1)] | None = None
    bound: Probability | None = Field(None, description="1 / achieved k")


# -- the document ------------------------------------------------------------------------------------------


class ReportBase(Open):
    report_version: Annotated[int, Field(ge=1)]
    privprep_version: str
    status: Literal["success"] = Field(description="only a successful run writes a report; a failed run leaves none")
    input: InputSummary
    output: OutputSummary
    keys_used: list[KeyId] = Field(description="key ids only, never material")
    timings: Timings
    warnings: list[str] = Field(default_factory=list)


class RunReport(ReportBase):
    """``report.json`` of ``privprep run``."""

    kind: Literal["run"] = "run"
    config_sha256: Sha256
    config_path: str | None = None
    stages: list[StageEntry]
    budget: BudgetSummary | None = Field(None, description="with DP stages: the dataset's budget after this run")
    engine: EngineSummary | None = None
    attack: AttackEntry | None = Field(None, description="privprep attack --record: a linkage attack on the output")


class DecryptReport(ReportBase):
    """``report.json`` of ``privprep decrypt``: config_sha256 is the source run's (null if it had none)."""

    kind: Literal["decrypt"]
    config_sha256: Sha256 | None
    source: dict[str, Any] | None = None
    stages: list[StageEntry]


class FederatedSite(Open):
    """A site of ``privprep federate simulate``: its sanitization run and its training figures."""

    site: str
    input_rows: Count
    rows: Count = Field(description="rows after the site's sanitization")
    report: str = Field(description="the site's own report.json, relative to the run directory")
    ledger: str | None = None
    budget: BudgetSummary | None = Field(None, description="the site's budget after this run (its own ledger)")
    epsilon: Epsilon | None = None
    delta: Probability | None = None
    accuracy: Probability | None = None


class FederatedReport(ReportBase):
    """``report.json`` of ``privprep federate simulate``: one ``federated_train`` stage and an entry per site."""

    kind: Literal["federated"]
    config_sha256: Sha256
    config_path: str | None = None
    federation: dict[str, Any]
    sites: list[FederatedSite]
    stages: list[StageEntry]


def _report_kind(value: Any) -> str:
    kind = value.get("kind", "run") if isinstance(value, dict) else getattr(value, "kind", "run")
    return kind if kind in ("run", "decrypt", "federated") else "run"


class Report(RootModel[Annotated[Union[Annotated[RunReport, Tag("run")], Annotated[DecryptReport, Tag("decrypt")],
                                       Annotated[FederatedReport, Tag("federated")]], Discriminator(_report_kind)]]):
    """A whole ``report.json``: a run's, a decryption's or a federated simulation's."""


SCHEMA_ID = "https://privprep.dev/schemas/report.schema.json"


def report_schema() -> dict[str, Any]:
    """The JSON Schema of ``report.json``, as committed in ``schemas/report.schema.json``."""
    schema = Report.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema, "title": "privprep report.json"}


def validate_report(document: Any) -> RunReport | DecryptReport | FederatedReport:
    """The report as a model; raises ``ValueError`` naming the first problem's path."""
    try:
        return Report.model_validate(document).root
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        where = ".".join(str(part) for part in first["loc"] if part not in ("run", "decrypt", "federated")) or "(top)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ValueError(f"report.json does not match the report schema: {where}: {first['msg']}{more}") from None


__all__ = [
    "STAGE_ENTRIES",
    "AttackEntry",
    "DecryptReport",
    "DpRelease",
    "FederatedReport",
    "FederatedTrainEntry",
    "KAnonymityEntry",
    "MicroaggregateEntry",
    "PluginEntry",
    "Report",
    "RunReport",
    "TrainEntry",
    "report_schema",
    "validate_report",
]


if __name__ == "__main__":  # pragma: no cover
    from .jsonschema import dumps

    print(dumps(report_schema()), end="")
