"""The report model (SPEC §4, issue 7): the committed JSON Schema is in sync, the SPEC's fields are
required by both the pydantic model and the JSON Schema, and every stage name has an entry model.
Every report.json the test suite writes is checked too (the autouse hook in tests/conftest.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from privprep.schemas.report import STAGE_ENTRIES, report_schema, validate_report
from privprep.schemas.stages import STAGE_PARAMS

ROOT = Path(__file__).resolve().parents[2]


def release(**fields: Any) -> dict[str, Any]:
    entry = {"query": 0, "column": "income", "stat": "mean", "value": 60539.2, "epsilon": 0.5,
             "mechanism": "Laplace(sum)+GeometricTruncated(count)", "bounds": [0.0, 500000.0], "noise_scale": 667.5, "error_95": 4338.4}
    return {**entry, **fields}


def full_report() -> dict[str, Any]:
    """A run report with every kind of stage entry (as privprep writes them; train as SPEC §4 names it)."""
    return {
        "kind": "run", "report_version": 1, "privprep_version": "0.1.0", "config_sha256": "ab" * 32,
        "config_path": "pipeline.yaml", "status": "success",
        "input": {"path": "in.parquet", "format": "parquet", "files": 1, "rows": 3000,
                  "columns": {"patient_id": "identifier", "zip": "quasi_identifier", "age": "quasi_identifier",
                              "income": "sensitive", "label": "insensitive", "image": "insensitive"}},
        "output": {"rows": 2945, "rows_removed": 55, "files": ["data/part-00000.parquet"],
                   "columns": ["patient_id", "zip", "age", "income", "label", "image"]},
        "keys_used": ["pseudonymize-20261122-f99dda", "encrypt-20261122-13edf8"],
        "timings": {"observe_seconds": 0.05, "write_seconds": 0.14, "total_seconds": 12.3},
        "stages": [
            {"name": "pseudonymize", "kind": "map", "rows_in": 3000, "rows_out": 3000, "seconds": 0.02,
             "columns": ["patient_id"], "domain": "patients", "key": "pseudonymize-20261122-f99dda", "format": "p1_<hex128>"},
            {"name": "mask", "kind": "map", "rows_in": 3000, "rows_out": 3000, "seconds": 0.01, "columns": ["zip"],
             "keep_first": 0, "keep_last": 2},
            {"name": "k_anonymity", "kind": "global", "rows_in": 3000, "rows_out": 2945, "seconds": 0.2, "k": 5, "achieved_k": 5,
             "suppression_limit": 0.02, "quasi_identifiers": ["zip", "age"], "levels": {"zip": 2, "age": 1},
             "level_names": {"zip": "level 2", "age": "level 1"}, "heights": {"zip": 6, "age": 3}, "suppressed_rows": 55,
             "equivalence_classes": 224, "information_loss": {"metric": "nu_entropy", "value": 47424.6},
             "risk_before": {"prosecutor_max": 1.0, "prosecutor_avg": 0.9, "sample_uniques": 0.8},
             "risk_after": {"prosecutor_max": 0.2, "prosecutor_avg": 0.076, "sample_uniques": 0.0},
             "class_sizes_before": {"1": 2400, "2": 200, "3-4": 50, "5-9": 0, "10-19": 0, "20-49": 0, "50-99": 0, "100-999": 0,
                                    "1000-9999": 0, "10000+": 0},
             "class_sizes_after": {"1": 0, "2": 0, "3-4": 0, "5-9": 74, "10-19": 116, "20-49": 34, "50-99": 0, "100-999": 0,
                                   "1000-9999": 0, "10000+": 0},
             "criteria": {"l_diversity": {"diagnosis": {"l": 2.0, "variant": "distinct"}}, "t_closeness": {}},
             "search": {"nodes_total": 252, "nodes_checked": 23, "seconds": 0.018, "strategy": "window", "heuristic": False,
                        "rows": 3000, "distinct_tuples": 2650}},
            {"name": "encrypt", "kind": "map", "rows_in": 2945, "rows_out": 2945, "seconds": 0.01, "columns": ["income"],
             "key": "encrypt-20261122-13edf8", "format": "privprep-ciphertext-v1"},
            {"name": "dp_stats", "kind": "release", "rows_in": 3000, "rows_out": 3000, "seconds": 0.5, "epsilon": 1.0, "delta": 0.0,
             "neighbouring": "add or remove one row", "seeded": False,
             "local_not_dp": {"differentially_private": False, "note": "exact; not DP", "rows_observed": 3000,
                              "clipped": [{"column": "income", "bounds": [0.0, 500000.0], "below": 0, "above": 2}],
                              "missing": {"income": 3}, "outside_categories": {"label": 1}},
             "releases": [
                 release(),
                 release(query=1, stat="quantile", quantile=0.5, value=49737.5, mechanism="Geometric histogram (1000 bins)",
                         noise_scale=5605.2, error_95=14524.8),
                 *[release(query=2, column="label", stat="histogram", bin=b, value=290 + 7 * b, epsilon=0.25, mechanism="GeometricTruncated",
                           bounds=None, noise_scale=4.0, error_95=12.0) for b in range(4)],
                 *[release(query=3, column="income", stat="count", by="label", group=g, value=700 + g, epsilon=0.25,
                           mechanism="GeometricTruncated", bounds=None, noise_scale=4.0, error_95=12.0) for g in range(4)],
             ]},
            {"name": "train", "kind": "sink", "rows_in": 2945, "rows_out": 2945, "seconds": 41.0, "epsilon": 2.0, "delta": 1e-5,
             "accountant": "prv", "noise_multiplier": 1.1, "max_grad_norm": 1.0, "sample_rate": 0.087, "epochs": 3, "steps": 36,
             "rows": 2945, "train_rows": 2356, "holdout_rows": 589, "accuracy": 0.81,
             "history": [{"epoch": 1, "accuracy": 0.55, "epsilon": 1.1}, {"epoch": 2, "accuracy": 0.74, "epsilon": 1.6},
                         {"epoch": 3, "accuracy": 0.81, "epsilon": 2.0}]},
        ],
        "budget": {"epsilon": 4.0, "delta": 1e-5, "composition": "basic", "spent_epsilon": 3.5, "spent_delta": 1e-5,
                   "remaining_epsilon": 0.5, "releases": 3, "spent_this_run": 3.0, "ledger": "ledgers/patients.json"},
        "warnings": [],
    }


@pytest.fixture(scope="module")
def schema() -> Any:
    """A validator of the committed schema (``jsonschema.validate`` would re-check the schema itself on every call)."""
    document = json.loads((ROOT / "schemas" / "report.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(document)
    return jsonschema.Draft202012Validator(document)


def test_committed_report_schema_is_in_sync() -> None:
    from privprep.schemas.jsonschema import dumps

    committed = (ROOT / "schemas" / "report.schema.json").read_text()
    assert committed == dumps(report_schema()), "regenerate: python -m privprep.schemas.report > schemas/report.schema.json"


def test_every_stage_of_the_config_has_a_report_entry_model() -> None:
    assert set(STAGE_PARAMS) <= set(STAGE_ENTRIES)


def test_a_full_report_is_valid_for_the_model_and_the_json_schema(schema) -> None:
    document = full_report()
    model = validate_report(document)
    schema.validate(document)
    assert [type(s).__name__ for s in model.stages] == [
        "PseudonymizeEntry", "MaskEntry", "KAnonymityEntry", "EncryptEntry", "DpStatsEntry", "TrainEntry"]


def _drop(document: dict[str, Any], path: str) -> None:
    *parents, last = path.split(".")
    node: Any = document
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    del node[int(last) if last.isdigit() else last]


SPEC_FIELDS = [
    "privprep_version", "config_sha256", "status", "input.rows", "output.rows", "keys_used", "timings", "stages",
    "stages.0.name",
    *[f"stages.2.{f}" for f in ("k", "achieved_k", "quasi_identifiers", "levels", "suppressed_rows", "equivalence_classes",
                                "information_loss", "information_loss.metric", "information_loss.value", "risk_before", "risk_after",
                                "risk_after.prosecutor_max", "risk_after.prosecutor_avg", "risk_after.sample_uniques",
                                "search", "search.nodes_total", "search.nodes_checked", "search.seconds")],
    "stages.4.releases",
    *[f"stages.4.releases.0.{f}" for f in ("column", "stat", "value", "epsilon", "mechanism", "bounds", "noise_scale", "error_95")],
    *[f"stages.5.{f}" for f in ("epsilon", "delta", "accountant", "noise_multiplier", "max_grad_norm", "sample_rate", "epochs",
                                "steps", "rows", "accuracy")],
]


@pytest.mark.parametrize("path", SPEC_FIELDS)
def test_every_spec_field_is_required(schema, path: str) -> None:
    document = full_report()
    _drop(document, path)
    with pytest.raises(ValueError, match="does not match the report schema"):
        validate_report(document)
    with pytest.raises(jsonschema.ValidationError):
        schema.validate(document)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda d: d["stages"][2].update(levels={"zip": -1}), "levels"),
        (lambda d: d["stages"][2]["risk_after"].update(prosecutor_max=1.5), "prosecutor_max"),
        (lambda d: d["stages"][4]["releases"][0].update(stat="median"), "stat"),
        (lambda d: d["stages"][0].update(name="no_such_stage"), "stages.0"),
        (lambda d: d.update(config_sha256="not-a-digest"), "config_sha256"),
        (lambda d: d.update(keys_used=["key with spaces"]), "keys_used"),
        (lambda d: d.update(status="failed"), "status"),
    ],
)
def test_bad_values_are_refused_with_their_path(schema, change, where: str) -> None:
    document = full_report()
    change(document)
    with pytest.raises(ValueError, match=where):
        validate_report(document)
    with pytest.raises(jsonschema.ValidationError):
        schema.validate(document)


def test_stage_detail_beyond_the_spec_is_allowed_and_plugins_are_checked_loosely(schema) -> None:
    document = full_report()
    document["stages"][4]["epsilon_split"] = {"method": "even"}  # detail a stage adds as it grows
    document["stages"][5]["model"] = {"path": "model/"}
    plugin = {"name": "k_anonymity", "kind": "global", "rows_in": 8, "rows_out": 5, "seconds": 0.1, "k": 2,
              "plugin": "tests.doubles.SuppressRareZips"}
    document["stages"].append(plugin)
    validate_report(document)
    schema.validate(document)
    del plugin["plugin"]  # the same entry claiming to be privprep's own k_anonymity misses the SPEC's fields
    with pytest.raises(ValueError, match="achieved_k"):
        validate_report(document)
    with pytest.raises(jsonschema.ValidationError):
        schema.validate(document)


def decrypt_report() -> dict[str, Any]:
    """A report of ``privprep decrypt`` whose source run had no config digest."""
    return {
        "kind": "decrypt", "report_version": 1, "privprep_version": "0.1.0", "config_sha256": None, "status": "success",
        "source": {"run_dir": "out/run", "config_sha256": None}, "input": {"path": "out/run", "files": 1, "rows": 8},
        "output": {"rows": 8, "rows_removed": 0, "files": ["data/part-00000.parquet"], "columns": ["dx"]},
        "keys_used": ["enc-1"], "timings": {"total_seconds": 0.1},
        "stages": [{"name": "decrypt", "kind": "map", "columns": ["dx"], "omitted_columns": {}, "rows_in": 8, "rows_out": 8,
                    "seconds": 0.1}],
        "warnings": [],
    }


def test_a_decrypt_report_is_valid(schema) -> None:
    document = decrypt_report()
    assert validate_report(document).kind == "decrypt"
    schema.validate(document)
    run = copy.deepcopy(document)
    run["kind"] = "run"  # a run's report must name its config
    with pytest.raises(ValueError, match="config_sha256"):
        validate_report(run)
    with pytest.raises(jsonschema.ValidationError):
        schema.validate(run)
