from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from pydantic import ValidationError

from privprep.schemas.config import PipelineConfig, check_references, format_validation_error
from privprep.schemas.jsonschema import config_schema, dumps

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DOC = ROOT / "docs" / "config.md"  # the one complete example the code is held to (the SPEC's shape)


def spec_example() -> dict:
    blocks = re.findall(r"```yaml\n(version: 1\n.*?)```", CONFIG_DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1, f"{CONFIG_DOC}: expected one complete example (a yaml block starting 'version: 1')"
    return yaml.safe_load(blocks[0])


def errors_of(document: dict) -> str:
    try:
        config = PipelineConfig.model_validate(document)
    except ValidationError as exc:
        return format_validation_error(exc)
    return "; ".join(check_references(config))


def test_spec_example_is_valid_and_consistent() -> None:
    config = PipelineConfig.model_validate(spec_example())
    assert [s.tag for s in config.stages] == ["pseudonymize", "drop", "k_anonymity", "encrypt", "dp_stats", "train"]
    assert check_references(config) == []
    assert config.stages[2].params.hierarchies["birth_date"].params == ["month", "year", "5y", "10y"]


def test_committed_json_schema_is_in_sync() -> None:
    committed = (ROOT / "schemas" / "config.schema.json").read_text()
    assert committed == dumps(config_schema()), "regenerate: python -m privprep.schemas.jsonschema > schemas/config.schema.json"


def test_json_schema_accepts_spec_example_and_rejects_unknown_stage() -> None:
    schema = config_schema()
    jsonschema.validate(spec_example(), schema)
    bad = spec_example()
    bad["stages"].append({"no_such_stage": {}})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["stages"].append({"nope": {}}), "stages[6]: unknown stage 'nope'"),
        (lambda d: d["stages"][0]["pseudonymize"].update(colums=["x"]), "stages[0].pseudonymize.colums: unknown key"),
        (lambda d: d.update(extra_key=1), "extra_key: unknown key"),
        (lambda d: d["stages"][2]["k_anonymity"].update(k=0), "stages[2].k_anonymity.k:"),
        (lambda d: d["stages"][2]["k_anonymity"].update(suppression_limit=2), "stages[2].k_anonymity.suppression_limit"),
        (lambda d: d["columns"]["income"].update(role="secret"), "columns.income.role"),
        (lambda d: d["columns"]["income"].update(bounds=[5, 1]), "columns.income: bounds must be"),
        (lambda d: d["stages"][4]["dp_stats"].update(epsilon=0), "stages[4].dp_stats.epsilon"),
        (lambda d: d["stages"][4]["dp_stats"].update(epsilon=-1), "stages[4].dp_stats.epsilon"),
        (lambda d: d["stages"][4]["dp_stats"]["queries"].append({"column": "income", "stat": "median"}), "stat"),
        (lambda d: d.update(version=2), "version"),
        (lambda d: d["stages"][2]["k_anonymity"]["hierarchies"].update(zip={"hash": 1}), "unknown hierarchy 'hash'"),
        (lambda d: d["stages"][2]["k_anonymity"]["hierarchies"].update(birth_date={"date": ["year", "month"]}), "ordered"),
    ],
)
def test_config_errors_name_the_path(change, expected: str) -> None:
    document = spec_example()
    change(document)
    message = errors_of(document)
    assert expected in message, message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["stages"][0]["pseudonymize"].update(columns=["ghost"]), "stages[0].pseudonymize: column 'ghost' is not declared"),
        (lambda d: d["stages"].insert(2, {"mask": {"columns": ["name"]}}), "stages[2].mask: column 'name' was dropped"),
        (lambda d: d["stages"].pop(1), "columns.name: role identifier, but no stage protects it"),
        (lambda d: d["columns"]["income"].pop("bounds"), "needs declared bounds"),
        (lambda d: d["columns"]["label"].pop("categories"), "needs 'bins'"),
        (lambda d: d["stages"].insert(0, d["stages"].pop()), "must be the last stage"),
        (lambda d: d["stages"].append(d["stages"][2]), "at most one k_anonymity"),
    ],
)
def test_reference_errors(change, expected: str) -> None:
    document = spec_example()
    change(document)
    assert expected in errors_of(document)


def test_quasi_identifiers_default_to_role() -> None:
    config = PipelineConfig.model_validate(spec_example())
    assert config.columns_with_role("quasi_identifier") == ["birth_date", "zip", "sex"]


def test_schema_file_is_valid_json() -> None:
    json.loads((ROOT / "schemas" / "config.schema.json").read_text())
