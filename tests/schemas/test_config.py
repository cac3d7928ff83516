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
        (lambda d: d["columns"]["label"].pop("categories"), "for a text or categorical column add categories: [...] to columns.label"),
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


# -- "did you mean ...?" (issue 23) -------------------------------------------------------------------------


def test_a_typo_of_a_required_key_is_reported_first_as_the_typo() -> None:
    """README: ``stages[0].pseudonymize.colums: unknown key``; it led with ``...columns: Field required``."""
    document = spec_example()
    document["stages"][0] = {"pseudonymize": {"colums": ["patient_id"], "domain": "patients"}}
    message = errors_of(document)
    assert message == "stages[0].pseudonymize.colums: unknown key (did you mean 'columns'?)"  # the missing 'columns' is that typo


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.update(stage=[]), "stage: unknown key (did you mean 'stages'?)"),
        (lambda d: d.update(io={"batch_row": 5}), "io.batch_row: unknown key (did you mean 'batch_rows'?)"),
        (lambda d: d["columns"]["zip"].update(rol="x"), "columns.zip.rol: unknown key (did you mean 'role'?)"),
        (lambda d: d["columns"]["sex"].update(role="quasi-identifier"), "(did you mean 'quasi_identifier'?)"),
        (lambda d: d["budget"].update(epsilom=1), "budget.epsilom: unknown key (did you mean 'epsilon'?)"),
        (lambda d: d["stages"][2]["k_anonymity"].update(supression_limit=0.1),
         "stages[2].k_anonymity.supression_limit: unknown key (did you mean 'suppression_limit'?)"),
        (lambda d: d["stages"][2]["k_anonymity"].update(metric="nu-entropy"), "(did you mean 'nu_entropy'?)"),
        (lambda d: d["stages"][2]["k_anonymity"]["hierarchies"].update(zip={"mask": {"chars": "#"}}),
         "stages[2].k_anonymity.hierarchies.zip.mask.chars: unknown key (did you mean 'char'?)"),
        (lambda d: d["stages"][2]["k_anonymity"]["hierarchies"].update(zip={"intervals": {"widths": [5]}}),
         "unknown hierarchy 'intervals' (did you mean 'interval'?)"),
        (lambda d: d["stages"][2]["k_anonymity"].update(l_diversity={"diagnosis": {"l": 2, "varient": "entropy"}}),
         "varient: unknown key (did you mean 'variant'?)"),
        (lambda d: d["stages"][4]["dp_stats"]["queries"][0].update(colum="income"), "(did you mean 'column'?)"),
        (lambda d: d["stages"].append({"pseudonymise": {"columns": ["name"]}}), "unknown stage 'pseudonymise' (did you mean 'pseudonymize'?)"),
        (lambda d: d["stages"][5]["train"].update(epoch=3), "stages[5].train.epoch: unknown key (did you mean 'epochs'?)"),
    ],
)
def test_every_unknown_key_gets_the_close_valid_one(change, expected: str) -> None:
    document = spec_example()
    change(document)
    message = errors_of(document)
    assert expected in message and "\n" not in message, message


def test_an_unknown_key_with_nothing_close_keeps_the_plain_message() -> None:
    document = spec_example()
    document["stages"][0]["pseudonymize"]["salt"] = "x"
    assert errors_of(document) == "stages[0].pseudonymize.salt: unknown key (check the spelling against the config reference)"


def test_an_undeclared_column_suggests_the_declared_one() -> None:
    document = spec_example()
    document["stages"][0]["pseudonymize"]["columns"] = ["patient_ld"]
    assert "column 'patient_ld' is not declared under 'columns' (did you mean 'patient_id'?)" in errors_of(document)


def test_a_histogram_without_a_declared_domain_suggests_categories_first() -> None:
    document = spec_example()
    document["stages"][4]["dp_stats"]["queries"].append({"column": "diagnosis", "stat": "histogram"})
    message = errors_of(document)
    assert message.startswith("stages[4].dp_stats.queries[2]: a histogram of 'diagnosis' needs its domain declared: "
                              "for a text or categorical column add categories: [...] to columns.diagnosis"), message
    assert "needs declared bounds" not in message


def test_where_dp_stats_is_configured_it_says_it_runs_on_the_input_as_declared() -> None:
    """Issue 23: only docs/dp_stats.md said dp_stats does not see the k-anonymous rows."""
    readme = (ROOT / "README.md").read_text()
    dp_block = readme[readme.index("### Differentially private statistics") :]
    dp_block = dp_block[: dp_block.index("\n### ")]
    assert "- dp_stats:" in dp_block and "on the input as declared, not on the k-anonymous rows" in dp_block
    assert "**input as declared**" in dp_block
    schema = json.loads((ROOT / "schemas" / "config.schema.json").read_text())
    assert "computed on the input as declared" in " ".join(schema["$defs"]["DpStatsParams"]["description"].split())
    sample = (ROOT / "sample_data" / "pipeline.yaml").read_text()
    assert "- dp_stats:" in sample and "computed on the input as declared" in sample
