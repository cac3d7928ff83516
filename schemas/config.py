"""The pipeline config (SPEC §2): a pydantic model of the whole YAML document, plus the checks that
relate stages to the column declarations. Validation only: reading the file is the pipeline's job.

>>> cfg = PipelineConfig.model_validate({
...     "version": 1, "input": "in.parquet", "output": "out/",
...     "columns": {"id": {"role": "identifier"}, "age": {"role": "quasi_identifier"}},
...     "stages": [{"pseudonymize": {"columns": ["id"], "domain": "patients"}}],
... })
>>> [s.tag for s in cfg.stages], check_references(cfg)
(['pseudonymize'], [])
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

from . import stages as _stages
from .base import ColumnName, KeyId, StrictModel
from .stages import STAGE_PARAMS, StageSpec
from .suggest import closest, did_you_mean, keys_at

Role = Literal["identifier", "quasi_identifier", "sensitive", "insensitive"]
Category = str | int | float | bool
#: The largest magnitude of a declared bound: DP variances square sums of values, which must stay finite.
MAX_BOUND = 1e100

# What a stage is comes from its params model (``kind``, ``protects``, ``planned_spend``); these
# tuples of privprep's own stage names are derived from them, for code that still reads them.
PROTECTING_STAGES = tuple(n for n, p in STAGE_PARAMS.items() if p.protects and n != "drop") + ("drop",)
GLOBAL_STAGES = tuple(n for n, p in STAGE_PARAMS.items() if p.kind == "global")
RELEASE_STAGES = tuple(n for n, p in STAGE_PARAMS.items() if p.kind == "release")
SINK_STAGES = tuple(n for n, p in STAGE_PARAMS.items() if p.kind == "sink")


class ColumnSpec(StrictModel):
    """Declaration of one input column: its privacy role and, for DP, its public domain."""

    role: Role
    bounds: tuple[float, float] | None = Field(None, description="declared [low, high]; DP statistics clip to it")
    categories: Annotated[list[Category], Field(min_length=1)] | None = Field(
        None, description="declared domain of a categorical column, for DP histograms and grouped counts"
    )

    @model_validator(mode="after")
    def _check(self) -> "ColumnSpec":
        if self.bounds is not None and not self.bounds[0] < self.bounds[1]:
            raise ValueError("bounds must be [low, high] with low < high")
        if self.bounds is not None and not all(abs(b) <= MAX_BOUND for b in self.bounds):  # also NaN and inf
            raise ValueError(f"bounds must be finite numbers within ±{MAX_BOUND:g} (squares of sums must stay finite)")
        if self.categories is not None and len({repr(c) for c in self.categories}) != len(self.categories):
            raise ValueError("categories must be distinct")
        return self


class Budget(StrictModel):
    """The total privacy budget of this dataset: DP statistics and training together (SPEC §7)."""

    epsilon: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    delta: Annotated[float, Field(ge=0, lt=1)] = 0.0
    ledger: str | None = Field(None, description="path of the persistent ledger for this dataset")
    composition: Literal["basic", "advanced"] = Field(
        "basic", description="'basic': epsilons add up; 'advanced': diffprivlib's bound with 'slack' in delta"
    )
    slack: Annotated[float, Field(ge=0, lt=1)] = Field(0.0, description="delta given up for advanced composition")
    allow_input_change: bool = Field(
        False, description="keep adding to a ledger whose recorded input differs from this input (the same dataset, changed)"
    )
    privacy_unit: ColumnName | None = Field(
        None, description="column naming the person a row belongs to: every DP release protects a person (all their rows), not a row"
    )
    max_partitions_contributed: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        1, description="with privacy_unit: groups one person may contribute to (more are dropped at random); a dp_stats stage may override it"
    )
    max_contributions_per_partition: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        1, description="with privacy_unit: rows one person may contribute to one group (more are dropped at random); a dp_stats stage may override it"
    )

    @model_validator(mode="after")
    def _check(self) -> "Budget":
        if self.composition == "advanced" and not 0 < self.slack <= self.delta:
            raise ValueError("advanced composition needs 0 < slack <= delta")
        if self.composition == "basic" and self.slack:
            raise ValueError("'slack' applies only to composition 'advanced'")
        return self


class StorageOptions(StrictModel):
    """How to reach an object store named by an ``s3://`` (``gs://``, ``abfs://``) input or output.
    Credentials never go here: they come from the environment (AWS_ACCESS_KEY_ID, AWS_PROFILE ...)."""

    endpoint: str | None = Field(
        None, description="endpoint of an S3-compatible store, e.g. http://127.0.0.1:9000 (default: AWS_ENDPOINT_URL, else AWS)"
    )
    region: str | None = Field(None, description="region (default: AWS_REGION, else AWS_DEFAULT_REGION)")
    anonymous: bool = Field(False, description="connect without credentials (public buckets)")
    scheme: Literal["https", "http"] | None = Field(None, description="http or https (default: the endpoint's, else https)")


class IoOptions(StrictModel):
    """How the runner reads and writes; the defaults keep memory flat on large inputs."""

    batch_rows: Annotated[int, Field(ge=1)] = 65_536
    rows_per_file: Annotated[int, Field(ge=1)] = 1_000_000
    # Reading unit: runs of whole Parquet row groups of about this many rows (one CSV file each); a
    # partition on the Dask engine. Both engines cut the input the same way, so their outputs match.
    partition_rows: Annotated[int, Field(ge=1)] = 1_048_576
    compression: Literal["zstd", "snappy", "gzip", "lz4", "none"] = "zstd"
    csv_delimiter: Annotated[str, Field(min_length=1, max_length=1)] = ","
    storage_options: StorageOptions = Field(default_factory=StorageOptions)


class OutputEncryption(StrictModel):
    """Parquet modular encryption of the output columns, keys from the keyring."""

    columns: Annotated[dict[ColumnName, KeyId | None], Field(min_length=1)]
    footer_key: KeyId | None = None


class PipelineConfig(StrictModel):
    """A whole pipeline: where the data are, what every column is, and the stages to run in order."""

    version: Literal[1]
    input: Annotated[str, Field(min_length=1)]
    output: Annotated[str, Field(min_length=1)]
    keyring: str | None = None
    budget: Budget | None = None
    columns: Annotated[dict[ColumnName, ColumnSpec], Field(min_length=1)]
    stages: list[StageSpec] = Field(default_factory=list)  # type: ignore[valid-type]
    output_encryption: OutputEncryption | None = None
    io: IoOptions = Field(default_factory=IoOptions)

    def columns_with_role(self, role: str) -> list[str]:
        """Declared columns of a role, in declaration order."""
        return [name for name, spec in self.columns.items() if spec.role == role]


def _rebuild_stages_field() -> None:
    """A plug-in registered its params model: ``stages:`` entries of its name validate from now on."""
    PipelineConfig.model_fields["stages"] = FieldInfo.from_annotated_attribute(
        list[_stages.StageSpec], Field(default_factory=list)
    )
    PipelineConfig.model_rebuild(force=True)


_stages._on_rebuild.append(_rebuild_stages_field)


def stage_path(index: int, name: str) -> str:
    """The config path of a stage entry, as error messages write it."""
    return f"stages[{index}].{name}"


def check_references(config: PipelineConfig) -> list[str]:
    """Problems that relate stages to the declarations, one message each (empty when consistent).

    Columns named by a stage must be declared and, for row stages, not dropped by an earlier stage;
    every identifier must be protected by some stage; DP queries need declared bounds or categories.
    """
    problems: list[str] = []
    declared = set(config.columns)
    available = set(declared)
    protected: set[str] = set()
    names = [entry.tag for entry in config.stages]
    for index, entry in enumerate(config.stages):
        name, params, path = entry.tag, entry.params, stage_path(index, entry.tag)
        for column in params.referenced():
            if column not in declared:
                problems.append(f"{path}: column '{column}' is not declared under 'columns'{did_you_mean(column, declared)}")
            elif column not in available and params.kind != "release":  # a release observes the input as declared
                problems.append(f"{path}: column '{column}' was dropped by an earlier stage")
        protected.update(params.protected_columns())
        available -= set(params.removed_columns())
        if isinstance(params, _stages.DpStatsParams):
            problems.extend(check_dp_queries(config.columns, params, path))
        if params.kind == "sink" and index != len(names) - 1:
            problems.append(f"{path}: a '{name}' stage must be the last stage")
    problems.extend(_check_budget(config))
    problems.extend(_check_privacy_unit(config))
    if sum(entry.params.kind == "global" for entry in config.stages) > 1:
        problems.append(
            "stages: at most one k_anonymity stage per pipeline"
            + (" (or one microaggregate stage: each observes the input before the other's changes)" if "microaggregate" in names else "")
        )
    for column in config.columns_with_role("identifier"):
        if column not in protected:
            problems.append(
                f"columns.{column}: role identifier, but no stage protects it; "
                f"add it to a {', '.join(PROTECTING_STAGES[:-1])} or drop stage"
            )
    if config.output_encryption is not None:
        for column in config.output_encryption.columns:
            if column not in declared:
                problems.append(f"output_encryption.columns: column '{column}' is not declared under 'columns'")
    return problems


def _check_privacy_unit(config: PipelineConfig) -> list[str]:
    """``budget.privacy_unit`` must name a declared column; dp_stats may not group by it."""
    unit = config.budget.privacy_unit if config.budget is not None else None
    if unit is None:
        return []
    if unit not in config.columns:
        return [f"budget.privacy_unit: column '{unit}' is not declared under 'columns'{did_you_mean(unit, set(config.columns))}; "
                "name the column that identifies the person a row belongs to"]
    problems = []
    for index, entry in enumerate(config.stages):
        if entry.tag in ("drop", "encrypt") and unit in entry.params.columns and any(e.tag in SINK_STAGES for e in config.stages):
            problems.append(f"{stage_path(index, entry.tag)}: the train stage groups rows by budget.privacy_unit '{unit}', "
                            f"which this stage {'drops' if entry.tag == 'drop' else 'encrypts at random'}; "
                            "pseudonymize or tokenize it instead")
        if entry.tag in RELEASE_STAGES:
            for q_index, query in enumerate(entry.params.queries):
                if unit in entry.params.grouping(query) or query.column == unit and query.stat != "count":
                    problems.append(f"{stage_path(index, entry.tag)}.queries[{q_index}]: '{unit}' is the privacy unit; "
                                    "a query may count it but not group by it or measure it")
    return problems


def check_dp_queries(columns: dict[str, ColumnSpec], params: Any, path: str) -> list[str]:
    """Problems of a ``dp_stats`` stage's queries against the column declarations: bounds, bins, categories."""
    problems = []
    for q_index, query in enumerate(params.queries):
        where = f"{path}.queries[{q_index}]"
        spec = columns.get(query.column)
        if spec is None:
            continue  # reported as undeclared already
        categorical = query.stat == "histogram" and spec.categories is not None
        numeric = query.stat in ("sum", "mean", "var", "std", "quantile") or (query.stat == "histogram" and not categorical)
        if query.stat == "histogram" and not categorical and query.bins is None and spec.bounds is None and query.range is None:
            problems.append(  # nothing says which kind of histogram is meant: offer both, the categorical one first
                f"{where}: a histogram of '{query.column}' needs its domain declared: for a text or categorical column "
                f"add categories: [...] to columns.{query.column}; for a numeric one add bounds: [low, high] there and "
                "'bins' to the query (neither is ever read from the data)"
            )
            continue
        if numeric and spec.bounds is None and query.range is None:
            problems.append(
                f"{where}: stat '{query.stat}' on '{query.column}' needs declared bounds; "
                f"add bounds: [low, high] to columns.{query.column} (bounds are never read from the data)"
            )
        if query.stat == "histogram" and spec.categories is None and query.bins is None:
            problems.append(
                f"{where}: a numeric histogram of '{query.column}' needs 'bins' (for a text or categorical column, "
                f"declare categories: [...] under columns.{query.column} instead)"
            )
        if categorical and (query.bins is not None or query.range is not None):
            problems.append(
                f"{where}: '{query.column}' declares categories, so its histogram counts them; 'bins' and 'range' do not apply"
            )
        if query.by is not None:
            by_spec = columns.get(query.by)
            if by_spec is not None and by_spec.categories is None:
                problems.append(f"{where}: grouping by '{query.by}' needs declared categories under columns.{query.by} "
                                "(or use group_by: [...], whose undeclared keys are selected privately)")
        for column in params.grouping(query):
            if column == query.column:
                problems.append(f"{where}: a query cannot be grouped by its own column '{query.column}'")
            elif columns.get(column) is not None and columns[column].role == "identifier":
                problems.append(f"{where}: cannot group by '{column}', an identifier: its values would be released as group keys")
    private = [q for q in params.queries if any(columns.get(c) is not None and columns[c].categories is None
                                                 for c in params.grouping(q))]
    selection = getattr(params, "selection", None)
    if private and selection is None:
        names = ", ".join(c for c in params.grouping(private[0]) if columns.get(c) is not None and columns[c].categories is None)
        problems.append(
            f"{path}: group_by column(s) {names} declare no categories, so their keys are selected privately, which spends "
            "budget: add selection: {epsilon: E, delta: D} to the stage (or declare categories: [...] to make the keys public)"
        )
    if selection is not None and not private:
        problems.append(f"{path}.selection: no query groups by a column without declared categories; remove 'selection'")
    return problems


def _check_budget(config: PipelineConfig) -> list[str]:
    """DP stages spend from the dataset's budget: without one (and its ledger) a pipeline fails closed."""
    budget_delta = config.budget.delta if config.budget is not None else 0.0
    spending = [(i, e.tag, spend) for i, e in enumerate(config.stages)
                if (spend := e.params.planned_spend(budget_delta=budget_delta)) is not None]
    if not spending:
        return []
    index, name, _ = spending[0]
    if config.budget is None:
        return [
            f"{stage_path(index, name)}: a '{name}' stage spends privacy budget, but the config has no 'budget'; "
            "add budget: {epsilon: E, ledger: PATH} (the total for this dataset, and where its spends are recorded)"
        ]
    problems = []
    if config.budget.ledger is None:
        problems.append(
            f"budget.ledger: required with a '{name}' stage, so that spends on this dataset add up across runs; "
            "give a path such as ledgers/<dataset>.json"
        )
    for i, tag, (cost, _) in spending:
        if cost > config.budget.epsilon:
            problems.append(f"{stage_path(i, tag)}: epsilon {cost:g} is more than the whole budget.epsilon {config.budget.epsilon:g}")
    for i, entry in enumerate(config.stages):
        if isinstance(entry.params, _stages.DpStatsParams) and entry.params.delta_spent() > config.budget.delta:
            problems.append(f"{stage_path(i, entry.tag)}.selection.delta: {entry.params.delta_spent():g} is more than the whole "
                            f"budget.delta {config.budget.delta:g}; raise budget.delta (e.g. 1e-5) or lower selection.delta")
    return problems


def format_validation_error(error: ValidationError) -> str:
    """One line naming each failing config path, e.g. ``stages[0].drop.columns: Field required``.

    An unknown key gets "did you mean ...?" when a valid key at its path is close. One close to a
    required key that is missing is the typo behind that error: it is reported first, in its place.
    """
    root = _models().get(error.title)
    items = error.errors()
    required: dict[tuple[Any, ...], dict[str, Any]] = {}
    for item in items:
        if item["type"] == "missing" and item["loc"]:
            required.setdefault(item["loc"][:-1], {})[item["loc"][-1]] = item
    typos, others, explained = [], [], set()
    for item in items:
        if item["type"] == "extra_forbidden" and item["loc"]:
            parent, key = item["loc"][:-1], item["loc"][-1]
            match = closest(key, required.get(parent, {}))
            if match is not None:
                explained.add(id(required[parent][match]))
                typos.append(f"{_format_loc(item['loc'])}: unknown key (did you mean '{match}'?)")
                continue
            hint = did_you_mean(key, keys_at(root, parent) or []) if root is not None else ""
            message = f"unknown key{hint}" if hint else "unknown key (check the spelling against the config reference)"
        elif item["type"] in ("union_tag_invalid", "invalid_stage", "invalid_hierarchy"):
            message = _tag_message(item)
        elif item["type"] == "literal_error":
            choices = re.findall(r"'([^']*)'", str((item.get("ctx") or {}).get("expected", "")))
            message = item["msg"] + did_you_mean(item.get("input"), choices)
        else:
            message = item["msg"].removeprefix("Value error, ")
        path = _format_loc(item["loc"])
        others.append((id(item), f"{path}: {message}" if path else message))
    parts = typos + [line for key, line in others if key not in explained]
    head = parts[0]
    if len(parts) > 1:
        head += f" (and {len(parts) - 1} more: " + "; ".join(parts[1:]) + ")"
    return head


def _tag_message(item: dict[str, Any]) -> str:
    ctx = item.get("ctx") or {}
    kind = item["type"].removeprefix("invalid_") if item["type"] != "union_tag_invalid" else "entry"
    if item["type"] == "union_tag_invalid":
        tags = str(ctx.get("expected_tags") or "")
        hint = did_you_mean(ctx.get("tag"), re.findall(r"'([^']*)'", tags))
        return f"unknown name '{ctx.get('tag')}'{hint}; expected one of: {ctx.get('expected_tags')}"
    given = item.get("input")
    if isinstance(given, dict) and len(given) == 1:
        name = next(iter(given))
        options = item["msg"].rpartition("one of: ")[2].split(", ")
        return f"unknown {kind} '{name}'{did_you_mean(name, options)}; " + item["msg"].replace(f"each {kind} must be", "it must be")
    return item["msg"]


def _models() -> dict[str, type[StrictModel]]:
    """Every config model by class name (a ValidationError's ``title``), for the keys valid at a path."""
    found: dict[str, type[StrictModel]] = {}
    todo: list[type[StrictModel]] = [StrictModel]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.setdefault(sub.__name__, sub)
            todo.append(sub)
    return found


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    previous: Any = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part != previous:  # tagged unions repeat the tag in the location
            out += f".{part}" if out else str(part)
        previous = part
    return out


__all__ = [
    "Budget",
    "ColumnSpec",
    "IoOptions",
    "OutputEncryption",
    "PipelineConfig",
    "Role",
    "check_dp_queries",
    "check_references",
    "format_validation_error",
    "stage_path",
]
