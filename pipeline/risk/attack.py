"""``privprep attack RUN_DIR --auxiliary AUX --on a,b``: a linkage attack on a finished run.

The auxiliary table is what an attacker knows: raw values of some quasi-identifiers (a voter list).
The attack brings those values to the released form the way the run did, stage by stage: the
k_anonymity stage's hierarchies (from the run's config) at the levels the run chose (from its
``report.json``), and keyless map stages on those columns (``mask``, ``generalize``) replayed. Then it
joins on the quasi-identifiers against the run's ``data/`` (:func:`.linkage.link`). Rows the run
suppressed are absent from ``data/``, so the auxiliary records of their classes do not link.

A Mondrian run (``algorithm: mondrian``, local recoding) has no level per column: the raw auxiliary
values (after the keyless map stages before k_anonymity) are matched against the released boxes,
``[lo, hi]`` ranges and hierarchy labels at any level (:func:`box_columns`, :mod:`.linkage_boxes`).

Refused with exit 2 and one line: a run without k_anonymity; an ``--on`` column that is not one of
its quasi-identifiers, or that a stage pseudonymized, tokenized, encrypted or dropped (a keyed
pseudonym cannot be recomputed by an attacker without the key, so it cannot be joined on); a column
missing from the auxiliary table; an auxiliary value that the run's hierarchy cannot generalize (a
value without a row in a ``csv``/``map`` hierarchy, text in a date or interval column): such a table
does not describe the run's population, so the attack stops rather than guess. Output holds counts
and rates only, never a value.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from privprep.schemas.config import stage_path
from privprep.schemas.errors import ConfigError, DataError, InputError, PrivprepError, UsageError
from privprep.transforms import registry
from privprep.transforms.base import StageContext
from privprep.transforms.hierarchies import TOP, Hierarchy, build_hierarchy

from ..configs.config import LoadedConfig, load_config
from ..files.io import InputSource
from ..files.runtarget import open_run, update_run
from ..files.storage import is_uri, location
from .linkage import link
from .linkage_boxes import Column, HierarchyColumn, IntervalColumn, link_boxes

KEYED = {"pseudonymize": "pseudonymized", "tokenize": "tokenized", "encrypt": "encrypted", "drop": "dropped"}
REPLAYED = ("mask", "generalize")


def attack_run(
    run_dir: str | Path,
    auxiliary: str | Path,
    on: list[str],
    *,
    target: str | None = None,
    truth: str | None = None,
    config: str | Path | None = None,
) -> dict[str, Any]:
    """Run the linkage attack of ``auxiliary`` on ``run_dir``; returns counts and rates only.
    ``run_dir`` may be in an object store (``s3://bucket/run``: read through its manifest)."""
    if is_uri(run_dir):
        with open_run(run_dir) as local:
            result = attack_run(local, auxiliary, on, target=target, truth=truth, config=config)
        return {**result, "run": str(run_dir)}
    run_dir = Path(run_dir)
    report = read_run_report(run_dir)
    on = list(dict.fromkeys(on))
    if not on:
        raise UsageError("--on needs at least one quasi-identifier column")
    loaded = run_config(run_dir, report, config)
    stage, index = _k_anonymity(report, run_dir)
    qis = stage["quasi_identifiers"]
    not_qi = [c for c in on if c not in qis]
    if not_qi:
        raise UsageError(f"--on column(s) {', '.join(not_qi)} are not quasi-identifiers of the run in '{run_dir}' "
                         f"(its quasi-identifiers: {', '.join(qis)})")
    extra = [c for c in (target, truth) if c is not None]
    both = [c for c in extra if c in on]
    if both:
        raise UsageError(f"column '{both[0]}' cannot be both in --on and --target/--truth")
    _check_columns(report, on, target, truth, run_dir)
    aux_table = read_auxiliary(auxiliary, [*on, *([truth] if truth else [])])
    released = read_released(run_dir, [*on, *extra])
    algorithm = stage.get("algorithm") or "full_domain"
    if algorithm == "mondrian":  # local recoding: boxes, matched by range and ancestry
        columns = box_columns(aux_table.select(on), report, loaded, on)
        result = link_boxes(released, columns, on, target=target, truth=truth,
                            auxiliary_truth=aux_table.column(truth) if truth else None)
    else:
        generalized = generalize_auxiliary(aux_table.select(on), report, loaded, on)
        if truth:
            generalized = generalized.append_column(truth, aux_table.column(truth))
        result = link(released, generalized, on, target=target, truth=truth)
    achieved = stage.get("achieved_k")
    return {
        "run": str(run_dir),
        "auxiliary": str(auxiliary),
        **result,
        "k": stage["k"],
        "achieved_k": achieved,
        "bound": (1.0 / achieved) if achieved else None,
        "algorithm": algorithm,
        "levels": {c: stage["levels"][c] for c in on if c in stage["levels"]},
        **({"recoding": {c: stage["recoding"][c] for c in on}} if algorithm == "mondrian" else {}),
        "stage": stage_path(index, "k_anonymity"),
    }


# -- the run -----------------------------------------------------------------------------------------------


def read_run_report(run_dir: Path) -> dict[str, Any]:
    source = run_dir / "report.json"
    if not source.is_file():
        raise InputError(f"'{run_dir}' is not a privprep run directory (no report.json)")
    try:
        report = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"'{source}' cannot be read as JSON ({type(exc).__name__})") from None
    if not isinstance(report, dict) or not isinstance(report.get("stages"), list):
        raise InputError(f"'{source}' is not a privprep report (no stages)")
    return report


def run_config(run_dir: Path, report: dict[str, Any], override: str | Path | None) -> LoadedConfig:
    """The config the run used (its hierarchies), checked against the report's ``config_sha256``."""
    path = Path(override) if override is not None else Path(report.get("config_path") or "")
    if not str(path) or not path.is_file():
        raise UsageError(f"the config of the run in '{run_dir}' ('{path}') is not found; pass --config with the file the run used")
    loaded = load_config(path)
    if report.get("config_sha256") and loaded.sha256 != report["config_sha256"]:
        raise UsageError(f"config '{path}' changed since the run in '{run_dir}' (sha256 differs); "
                         "pass --config with the file the run used")
    return loaded


def _k_anonymity(report: dict[str, Any], run_dir: Path) -> tuple[dict[str, Any], int]:
    for index, stage in enumerate(report["stages"]):
        if stage.get("name") == "k_anonymity" and not stage.get("plugin") and "levels" in stage:
            return stage, index
    raise UsageError(f"the run in '{run_dir}' has no k_anonymity stage: there are no released equivalence classes "
                     "to attack (measure the raw risk with privprep check)")


def _check_columns(report: dict[str, Any], on: list[str], target: str | None, truth: str | None, run_dir: Path) -> None:
    for index, stage in enumerate(report["stages"]):
        verb = KEYED.get(stage.get("name", ""))
        touched = set(stage.get("columns") or []) if verb else set()
        for column in [*on, *([truth] if truth else [])]:
            if column in touched:
                raise UsageError(f"column '{column}' is {verb} in the run ({stage_path(index, stage['name'])}); "
                                 "a pseudonymized, tokenized, encrypted or dropped column cannot be joined on")
        if target in touched and stage["name"] in ("encrypt", "drop"):
            raise UsageError(f"--target column '{target}' is {verb} in the run ({stage_path(index, stage['name'])}); "
                             "attribute disclosure needs a column released as readable values")
    columns = (report.get("output") or {}).get("columns") or []
    missing = [c for c in [*on, *([target] if target else []), *([truth] if truth else [])] if columns and c not in columns]
    if missing:
        raise UsageError(f"column(s) {', '.join(missing)} not in the output of the run in '{run_dir}'")


def read_released(run_dir: Path, columns: list[str]) -> pa.Table:
    data = run_dir / "data"
    if not data.is_dir():
        raise InputError(f"'{run_dir}' has no data/ folder")
    try:
        source = InputSource.open(str(data))
    except InputError:
        return pa.table({c: pa.array([], pa.string()) for c in columns})  # every row suppressed: no part files
    missing = [c for c in columns if c not in source.schema.names]
    if missing:
        raise UsageError(f"column(s) {', '.join(missing)} not in '{data}'")
    parts = list(source.batches(columns))
    return pa.concat_tables(parts) if parts else source.schema.empty_table().select(columns)


def read_auxiliary(path: str | Path, columns: list[str]) -> pa.Table:
    try:
        source = InputSource.open(str(path))
    except InputError as exc:
        raise InputError(f"--auxiliary: {exc}") from None
    missing = [c for c in columns if c not in source.schema.names]
    if missing:
        raise UsageError(f"auxiliary table '{path}' lacks column(s) {', '.join(missing)} "
                         f"(it has: {', '.join(source.schema.names)}); name columns it has in --on/--truth")
    parts = list(source.batches(list(dict.fromkeys(columns))))
    return pa.concat_tables(parts) if parts else source.schema.empty_table().select(list(dict.fromkeys(columns)))


# -- the attacker's view: auxiliary values in the released form -------------------------------------------


def generalize_auxiliary(table: pa.Table, report: dict[str, Any], loaded: LoadedConfig, on: list[str], *,
                         until_k_anonymity: bool = False) -> pa.Table:
    """``table`` (raw values of the columns ``on``) through the run's stages that change those columns
    (with ``until_k_anonymity``: only the stages before k_anonymity)."""
    entries = report["stages"]
    configured = loaded.config.stages
    for index, entry in enumerate(configured):
        name = entry.tag
        if name == "k_anonymity" and until_k_anonymity:
            _no_replay_after(configured, index, on)
            break
        if name == "k_anonymity":  # at most one per pipeline; found by name (a sweep's runs leave DP stages out)
            stage = next(e for e in entries if e.get("name") == "k_anonymity" and "levels" in e)
            hierarchies = entry.params.hierarchies
            for column in on:
                level, height = stage["levels"][column], (stage.get("heights") or {}).get(column)
                values = generalize_column(table.column(column), column, hierarchies[column], level, height, loaded.base_dir)
                table = table.set_column(table.schema.get_field_index(column), pa.field(column, pa.string()), values)
        elif name in REPLAYED:
            context = StageContext(columns=dict(loaded.config.columns), base_dir=loaded.base_dir, path=stage_path(index, name))
            stage_obj = registry.get(name).from_config(entry.params, context=context)
            touched = [c for c in stage_obj.input_columns() if c in on]
            if touched:
                try:
                    view = stage_obj.transform(table.select(touched))  # type: ignore[attr-defined]
                except PrivprepError as exc:
                    raise UsageError(f"auxiliary column(s) {', '.join(touched)} cannot go through {stage_path(index, name)}: {exc}") from None
                for column in touched:
                    table = table.set_column(table.schema.get_field_index(column), view.schema.field(column), view.column(column))
    return table


def generalize_column(values: Any, column: str, spec: Any, level: int, height: int | None, base_dir: Path) -> pa.Array:
    """The released form of raw ``values`` at ``level`` of the hierarchy ``spec`` (text; ``*`` at the top)."""
    hierarchy, encoded = _hierarchy(values, column, spec, max(level, 1), base_dir)
    if height is not None and level >= height:
        return pa.array([TOP] * len(encoded), pa.string())
    out = hierarchy.level(min(level, hierarchy.height))
    return out.take(encoded.indices)


def _hierarchy(values: Any, column: str, spec: Any, mask_levels: int, base_dir: Path) -> tuple[Hierarchy, pa.DictionaryArray]:
    """The run's hierarchy over the distinct raw ``values``, and the values dictionary-encoded (a
    ``mask`` without ``levels`` gets ``mask_levels``)."""
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    encoded = pc.dictionary_encode(array, null_encoding="encode")
    distinct = encoded.dictionary
    if spec.tag == "mask" and spec.params.levels is None:  # as many levels as the chosen one needs
        spec = spec.model_copy(update={"params": spec.params.model_copy(update={"levels": mask_levels})})
    try:  # built at every level, so a value the run's hierarchy cannot take is refused whichever level was chosen
        hierarchy = build_hierarchy(spec, column, distinct, base_dir=base_dir)
    except DataError as exc:
        raise UsageError(f"auxiliary column '{column}' is incompatible with the run's hierarchy: {exc}") from None
    except ConfigError as exc:
        raise UsageError(f"the run's hierarchy of column '{column}' cannot be built: {exc}") from None
    return hierarchy, encoded


# -- the attacker's view of a local recoding (Mondrian): raw values against released boxes ------------------


def box_columns(table: pa.Table, report: dict[str, Any], loaded: LoadedConfig, on: list[str]) -> dict[str, Column]:
    """The auxiliary columns ``on`` ready to match a Mondrian run's released classes
    (:mod:`.linkage_boxes`): the keyless map stages before k_anonymity replayed, then per column its
    raw numbers (an ``interval`` column) or the ancestors of each value in the run's hierarchy (a
    ``hierarchy`` column, built from the run's config as for a full-domain run)."""
    stage = next(e for e in report["stages"] if e.get("name") == "k_anonymity" and "levels" in e)
    table = generalize_auxiliary(table, report, loaded, on, until_k_anonymity=True)
    entry = next(e for e in loaded.config.stages if e.tag == "k_anonymity")
    columns: dict[str, Column] = {}
    for column in on:
        recoding = (stage.get("recoding") or {}).get(column)
        if recoding == "interval":
            columns[column] = IntervalColumn(table.column(column), column)
        elif recoding == "hierarchy":
            spec = entry.params.hierarchies.get(column)
            if spec is None:
                raise UsageError(f"the run's config has no hierarchy for column '{column}' that its report says was recoded "
                                 "along one; pass --config with the file the run used")
            height = int((stage.get("heights") or {}).get(column) or 1)
            hierarchy, encoded = _hierarchy(table.column(column), column, spec, max(height, 1), loaded.base_dir)
            codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
            columns[column] = HierarchyColumn(codes, [hierarchy.level(i) for i in range(hierarchy.height + 1)])
        else:
            raise UsageError(f"the report of the run names no recoding for column '{column}' (interval or hierarchy); "
                             "it was not written by this version of privprep")
    return columns


def _no_replay_after(configured: list[Any], k_index: int, on: list[str]) -> None:
    """Refuse a keyless map stage on an ``--on`` column after a Mondrian k_anonymity: it rewrote the
    released intervals or labels, which cannot be matched against raw values."""
    for index in range(k_index + 1, len(configured)):
        entry = configured[index]
        if entry.tag in REPLAYED:
            columns = set(getattr(entry.params, "columns", None) or [])
            hit = [c for c in on if c in columns]
            if hit:
                raise UsageError(f"column '{hit[0]}' is rewritten by {stage_path(index, entry.tag)} after the mondrian "
                                 "k_anonymity stage; its released ranges cannot be matched: leave it out of --on")


__all__ = ["attack_run", "box_columns", "generalize_auxiliary", "generalize_column", "read_auxiliary", "read_released", "read_run_report"]


# -- output ------------------------------------------------------------------------------------------------


def format_text(result: dict[str, Any]) -> str:
    """The human-readable form of :func:`attack_run`'s result (counts and rates only)."""
    n = result["auxiliary_records"]
    lines = [
        f"auxiliary records           {n:,}",
        f"joined on                   {', '.join(result['on'])} "
        + ("(raw values in the released ranges and labels)" if result.get("algorithm") == "mondrian" else "(at the run's levels)"),
        f"linked to a class           {result['linked']:,}",
        f"linked uniquely             {result['linked_uniquely']:,}",
    ]
    if "reidentified_correctly" in result:
        lines.append(f"re-identified correctly     {result['reidentified_correctly']:,} (truth: {result['truth']})")
    lines.append(f"re-identification rate      {result['reidentification_rate']:.4f}"
                 + ("" if "reidentified_correctly" in result else " (expected; pass --truth to count correct links)"))
    lines.append(f"expected rate (prosecutor)  {result['expected_reidentification_rate']:.4f}")
    if result.get("bound") is not None:
        lines.append(f"bound 1/achieved k          {result['bound']:.4f} (k = {result['k']}, achieved {result['achieved_k']})")
    disclosure = result.get("attribute_disclosure")
    if disclosure:
        lines.append(f"attribute disclosure        {disclosure['rate']:.4f} of linked records learn '{disclosure['column']}' "
                     f"({disclosure['disclosed']:,})")
    return "\n".join(lines)


def record(run_dir: str | Path, result: dict[str, Any]) -> Path:
    """Add ``result`` as the ``attack`` entry of the run's ``report.json`` and rebuild ``report.html``
    (each rewritten atomically: a temporary file renamed into place)."""
    from ..reports.report import write_report

    if is_uri(run_dir):  # rewrite report.json and report.html of the committed run, then its manifest
        with open_run(run_dir) as local:
            record(local, result)
            update_run(location(run_dir), local, ["report.json", "report.html"])  # type: ignore[arg-type]
        return location(run_dir) / "report.json"  # type: ignore[return-value]
    run_dir = Path(run_dir)
    report = read_run_report(run_dir)
    report["attack"] = {k: v for k, v in result.items() if k not in ("run",)}
    return write_report(run_dir, report)
