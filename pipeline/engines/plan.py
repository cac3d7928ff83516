"""From a loaded config to a runnable plan: stage objects from the registry, keys resolved, the input
opened, and the data's schema checked against the declarations. Nothing is written here, so a
``--dry-run`` stops after it.

The plan is the one place that sorts stages by their kind (their base class): the engines and the
runner take :attr:`Plan.row_steps`, :attr:`Plan.observing`, :attr:`Plan.releases` and
:attr:`Plan.sinks` from it, each as ``(index in the config, stage)`` pairs in config order."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from privprep.schemas.config import stage_path
from privprep.schemas.errors import ConfigError, DataError, KeyringError, PrivprepError
from privprep.schemas.keyring import SecretKey
from privprep.schemas.suggest import closest
from privprep.transforms import registry
from privprep.transforms.base import (
    STAGE_BASES, GlobalStage, MapStage, ObservingStage, ReleaseStage, RowStage, SinkStage, Stage, StageContext,
)

from ..budget.ledger import Ledger, PlannedSpend, open_ledger
from ..configs.config import LoadedConfig
from ..files.io import InputSource, WriterSpec
from ..files.rundir import check_no_overlap
from ..files.storage import StoreOptions
from ..keys.keyring import ENV_VAR, Keyring

log = logging.getLogger(__name__)


@dataclass
class Plan:
    """Everything a run needs, validated."""

    loaded: LoadedConfig
    source: InputSource
    stages: list[Stage]
    output_schema: pa.Schema
    keys_used: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    ledger: Ledger | None = None
    spends: list[PlannedSpend] = field(default_factory=list)

    def __post_init__(self) -> None:
        for stage in self.stages:  # the runner dispatches on these classes: any other stage would be skipped
            if not isinstance(stage, STAGE_BASES):
                raise TypeError(f"stage '{stage.name}' ({type(stage).__qualname__}) must subclass MapStage, "
                                "GlobalStage, ReleaseStage or SinkStage")

    @property
    def row_steps(self) -> list[tuple[int, RowStage]]:
        """Map and global stages: pass 2 runs them on every batch, in order."""
        return [(i, s) for i, s in enumerate(self.stages) if isinstance(s, (MapStage, GlobalStage))]

    @property
    def row_stages(self) -> list[RowStage]:
        return [stage for _, stage in self.row_steps]

    @property
    def observing(self) -> list[tuple[int, ObservingStage]]:
        """Global and release stages: pass 1 feeds them; then each decides or releases, in order."""
        return [(i, s) for i, s in enumerate(self.stages) if isinstance(s, (GlobalStage, ReleaseStage))]

    @property
    def releases(self) -> list[tuple[int, ReleaseStage]]:
        return [(i, s) for i, s in enumerate(self.stages) if isinstance(s, ReleaseStage)]

    @property
    def sinks(self) -> list[tuple[int, SinkStage]]:
        """Stages that consume the written output (last)."""
        return [(i, s) for i, s in enumerate(self.stages) if isinstance(s, SinkStage)]

    @property
    def passes(self) -> int:
        """Passes over the input: two when a stage observes it first."""
        return 2 if self.observing else 1

    @property
    def writer_spec(self) -> WriterSpec:
        """How the output parts are written (schema, file size, compression)."""
        io = self.loaded.config.io
        return WriterSpec(schema=self.output_schema, rows_per_file=io.rows_per_file, compression=io.compression)

    def describe(self) -> str:
        """A human-readable plan, for ``--dry-run``."""
        cfg = self.loaded.config
        rows = f"{self.source.rows:,} rows" if self.source.rows is not None else "rows unknown until read (CSV)"
        lines = [
            f"config   {self.loaded.path} (sha256 {self.loaded.sha256[:12]})",
            f"input    {self.loaded.input}: {len(self.source.files)} {self.source.format} file(s), {rows}",
            f"output   {self.loaded.output}",
            "columns  " + ", ".join(f"{name} ({spec.role})" for name, spec in cfg.columns.items()),
            "stages",
        ]
        for index, stage in enumerate(self.stages):
            cols = ", ".join(stage.input_columns()) or "-"
            lines.append(f"  {index + 1}. {stage.name:<13} {stage.kind:<8} {cols}")
        lines.append(f"passes   {self.passes} over the input")
        lines.append("keys     " + (", ".join(self.keys_used) or "none"))
        if self.ledger is not None:
            asked = sum(s.epsilon for s in self.spends)
            lines.append(
                f"budget   epsilon {self.ledger.epsilon:g}: {self.ledger.remaining():.6g} remaining, "
                f"this run spends {asked:g} (ledger {self.ledger.path})"
            )
        lines.append("output columns  " + ", ".join(self.output_schema.names))
        return "\n".join(lines)


def build_plan(loaded: LoadedConfig, *, with_ledger: bool = True, log_warnings: bool = True) -> Plan:
    """Build stages, resolve keys, open the input and check its schema; raises on any problem.

    ``with_ledger=False`` leaves the dataset's ledger closed (``plan.ledger`` is None) and
    ``log_warnings=False`` only lists the warnings in ``plan.warnings``: for a simulated federation,
    whose sites each account in their own ledger and warn in their own runs."""
    cfg = loaded.config
    keys = _KeyResolver(loaded.keyring)
    stages = []
    for index, entry in enumerate(cfg.stages):
        path = stage_path(index, entry.tag)
        context = StageContext(columns=dict(cfg.columns), resolve_key=keys, base_dir=loaded.base_dir, path=path, budget=cfg.budget)
        try:
            stages.append(registry.get(entry.tag).from_config(entry.params, context=context))
        except PrivprepError as exc:
            raise type(exc)(f"{path}: {exc}") from None
    source = InputSource.open(loaded.input, delimiter=cfg.io.csv_delimiter, storage=StoreOptions.of(cfg.io.storage_options))
    check_no_overlap(loaded.output, source.files, loaded.input)
    _check_keyring_outside_output(loaded)
    _check_declared(loaded, source.schema)
    schema = source.schema
    for index, stage in enumerate(stages):
        if isinstance(stage, (MapStage, GlobalStage)):
            try:
                schema = stage.output_schema(schema)
            except DataError as exc:
                raise DataError(f"{stage_path(index, stage.name)}: {exc} (input '{loaded.input}')") from None
    for stage in stages:
        if isinstance(stage, ReleaseStage):
            try:
                stage.output_schema(source.schema)  # release stages see the input as declared; errors name their path
            except PrivprepError as exc:
                raise type(exc)(f"{exc} (input '{loaded.input}')") from None
    ledger, spends = open_ledger(loaded, source) if with_ledger else (None, [])
    if ledger is not None:
        ledger.check(spends)  # refused before any data is read (exit 1), nothing written
    warnings = _warnings(loaded)
    for warning in warnings if log_warnings else []:
        log.warning("%s", warning)
    used = list(dict.fromkeys(k for s in stages for k in s.keys_used()))
    return Plan(
        loaded=loaded, source=source, stages=stages, output_schema=schema, keys_used=used, warnings=warnings,
        ledger=ledger, spends=spends,
    )


def _check_declared(loaded: LoadedConfig, schema: pa.Schema) -> None:
    declared = loaded.config.columns
    undeclared = [name for name in schema.names if name not in declared]
    if undeclared and len(undeclared) == len(schema.names) > 1:
        raise DataError(  # names not listed: without a header row a CSV file's first row would be quoted here
            f"none of the {len(schema.names)} input columns of '{loaded.input}' is declared under 'columns' in "
            f"'{loaded.path}'; check that the input has a header row and that the config is the input's"
        )
    if undeclared:
        raise DataError(
            f"input '{loaded.input}' has {len(undeclared)} column(s) not declared under 'columns' in '{loaded.path}': "
            f"{', '.join(undeclared)}; declare each with a role (role: insensitive if it needs no protection)"
            + _declared_typo(undeclared, [name for name in declared if name not in schema.names])
        )
    missing = [name for name in declared if name not in schema.names]
    if missing:
        raise DataError(
            f"column(s) declared in '{loaded.path}' are missing from the input '{loaded.input}': {', '.join(missing)}"
        )


def _declared_typo(undeclared: list[str], missing: list[str]) -> str:
    """When a declared column the input lacks is close to an undeclared one, it is likely a misspelling."""
    for name in undeclared:
        match = closest(name, missing)
        if match is not None:
            return f" (columns.{match} is declared but not in the input: a misspelling of '{name}'?)"
    return ""


def _check_keyring_outside_output(loaded: LoadedConfig) -> None:
    """A run replaces its output directory (with --overwrite): a keyring inside it would be deleted."""
    if loaded.keyring is None or not isinstance(loaded.output, Path):  # a store output cannot hold a local keyring
        return
    output, ring = Path(loaded.output).resolve(), Path(loaded.keyring).resolve()
    if ring == output or output in ring.parents:
        raise ConfigError(f"keyring '{loaded.keyring}' lies inside the output '{loaded.output}', which a run replaces; "
                          "keep it outside")


def _warnings(loaded: LoadedConfig) -> list[str]:
    cfg = loaded.config
    generalizing = {"k_anonymity", "generalize"}
    if any(entry.tag in generalizing for entry in cfg.stages):
        return []
    aggregated = {c for entry in cfg.stages if entry.tag == "microaggregate" for c in entry.params.columns}
    qis = [q for q in cfg.columns_with_role("quasi_identifier") if q not in aggregated]
    if not qis:
        return []
    return [f"quasi-identifier column(s) pass through unchanged (no k_anonymity stage): {', '.join(qis)}"]


class _KeyResolver:
    """Loads the keyring on first use, so pipelines that need no key need no keyring."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._ring: Keyring | None = None

    def __call__(self, purpose: str, key_id: str | None) -> SecretKey:
        if self._ring is None:
            if self.path is None:
                raise KeyringError(
                    f"a '{purpose}' key is needed but no keyring is configured; "
                    f"set 'keyring:' in the config or the {ENV_VAR} environment variable"
                )
            self._ring = Keyring.load(self.path)
        return self._ring.resolve(purpose, key_id)
