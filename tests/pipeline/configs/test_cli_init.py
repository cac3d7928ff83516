"""privprep init (issue 22): a starting config for a table of one's own, every column declared with a
guessed role marked for review, that validates and runs as written; never a cell value in it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml

from privprep.pipeline.configs.init_config import guess_role
from privprep.schemas.config import PipelineConfig, check_references
from tests.conftest import tree_digest

# a table of a shop's customers, not the sample's patients; the roles a reviewer would expect of each name
EXPECTED = {"customerId": "identifier", "full_name": "identifier", "email": "identifier", "phone_number": "identifier",
            "birth_date": "quasi_identifier", "zip": "quasi_identifier", "gender": "quasi_identifier",
            "annual_income": "sensitive", "diagnosis": "sensitive", "visits": "insensitive", "plan": "insensitive"}


def customers(rows: int = 60) -> pa.Table:
    return pa.table({
        "customerId": [f"C-{i:04d}" for i in range(rows)],
        "full_name": [f"Secretname{i}" for i in range(rows)],
        "email": [f"person{i}@example.org" for i in range(rows)],
        "phone_number": [f"+1-555-01{i:02d}" for i in range(rows)],
        "birth_date": pa.array([dt.date(1950 + i % 40, 1 + i % 12, 1) for i in range(rows)]),
        "zip": [f"{90210 + i % 7}" for i in range(rows)],
        "gender": ["F" if i % 2 else "M" for i in range(rows)],
        "annual_income": pa.array([30_000.0 + 1_000 * i for i in range(rows)]),
        "diagnosis": [["flu", "cold", "asthma"][i % 3] for i in range(rows)],
        "visits": pa.array([i % 5 for i in range(rows)], pa.int32()),
        "plan": [["basic", "gold"][i % 2] for i in range(rows)],
    })


def test_init_declares_every_column_for_review_and_the_config_runs(tmp_path: Path, cli) -> None:
    data = tmp_path / "shop" / "customers.parquet"
    data.parent.mkdir()
    pq.write_table(customers(), data)
    before = tree_digest(data)
    config = tmp_path / "conf" / "customers.yaml"
    result = cli("init", data, "--output", config)
    assert result.code == 0, result.err
    assert result.err.startswith(f"wrote {config}: 11 columns (4 identifier, 3 quasi_identifier, 2 sensitive, 2 insensitive)")
    text = config.read_text()
    document = yaml.safe_load(text)
    assert {name: c["role"] for name, c in document["columns"].items()} == EXPECTED
    column_lines = [line for line in text.splitlines() if line.startswith("  ") and "{role:" in line]
    assert len(column_lines) == 11 and all("# review" in line for line in column_lines)
    # no cell value of the table is in the file, and no bounds were read from the data (DP refuses until declared)
    table = customers()
    for name in table.column_names:
        for value in table.column(name).to_pylist()[:5]:
            if not isinstance(value, (int, float)) and str(value) not in ("F", "M") and len(str(value)) > 3:
                assert str(value) not in text, name
    assert "bounds" not in document["columns"]["annual_income"]
    parsed = PipelineConfig.model_validate(document)
    assert check_references(parsed) == []
    with_dp = dict(document, budget={"epsilon": 1.0, "ledger": "l.json"},
                   stages=document["stages"] + [{"dp_stats": {"epsilon": 0.5, "queries": [{"column": "annual_income", "stat": "mean"}]}}])
    assert any("needs declared bounds" in p for p in check_references(PipelineConfig.model_validate(with_dp)))
    # the written config runs as written once its keyring exists (paths relative to the config's folder)
    keyring = config.parent / document["keyring"]
    assert cli("keys", "new", "--output", keyring).code == 0
    dry = cli("run", config, "--dry-run")
    assert dry.code == 0, dry.err
    ran = cli("run", config, "--quiet")
    assert ran.code == 0, ran.err
    out = pq.read_table(config.parent / document["output"] / "data")
    assert out.num_rows + yaml.safe_load((config.parent / document["output"] / "report.json").read_text())["output"]["rows_removed"] == 60
    assert all(v.startswith("p1_") for v in out.column("customerId").to_pylist())
    assert tree_digest(data) == before


def test_init_refuses_to_overwrite_without_force(tmp_path: Path, cli) -> None:
    data = tmp_path / "c.parquet"
    pq.write_table(customers(10), data)
    config = tmp_path / "pipeline.yaml"
    config.write_text("# mine\n")
    refused = cli("init", data, "--output", config)
    assert refused.code == 2 and refused.err.count("\n") == 1 and "--force" in refused.err and str(config) in refused.err
    assert config.read_text() == "# mine\n"
    assert cli("init", data, "--output", config, "--force", "--quiet").code == 0
    assert "customerId" in config.read_text()
    assert [p.name for p in tmp_path.iterdir() if "privprep-tmp" in p.name] == []


def test_init_on_a_csv_with_awkward_names_validates(tmp_path: Path, cli) -> None:
    data = tmp_path / "odd.csv"
    pacsv.write_csv(pa.table({"yes": [1, 2], "123": ["a", "b"], "a: b, c": ["x", "y"], "Name": ["n1", "n2"], "ZIP code": ["1", "2"]}), data)
    config = tmp_path / "odd.yaml"
    assert cli("init", data, "--output", config, "--quiet").code == 0
    document = yaml.safe_load(config.read_text())
    assert list(document["columns"]) == ["yes", "123", "a: b, c", "Name", "ZIP code"]
    assert document["columns"]["Name"]["role"] == "identifier" and document["columns"]["ZIP code"]["role"] == "quasi_identifier"
    assert check_references(PipelineConfig.model_validate(document)) == []
    assert (config.parent / document["input"]).resolve() == data.resolve()


def test_init_on_a_missing_input_writes_nothing(tmp_path: Path, cli) -> None:
    result = cli("init", tmp_path / "nope.parquet", "--output", tmp_path / "p.yaml")
    assert result.code == 2 and "nope.parquet" in result.err and result.err.count("\n") == 1
    assert not (tmp_path / "p.yaml").exists()


@pytest.mark.parametrize(("name", "kind", "role"), [
    ("patient_id", pa.string(), "identifier"), ("customerId", pa.int64(), "identifier"), ("E-Mail", pa.string(), "identifier"),
    ("mobile", pa.string(), "identifier"), ("last_name", pa.string(), "identifier"), ("ssn", pa.string(), "identifier"),
    ("age", pa.int64(), "quasi_identifier"), ("PostCode", pa.string(), "quasi_identifier"), ("sex", pa.string(), "quasi_identifier"),
    ("DateOfBirth", pa.string(), "quasi_identifier"), ("admitted", pa.timestamp("s"), "quasi_identifier"),
    ("salary", pa.float64(), "sensitive"), ("icd10", pa.string(), "sensitive"), ("Diagnosis", pa.string(), "sensitive"),
    ("emp_no", pa.int64(), "identifier"), ("case_number", pa.string(), "identifier"), ("sick_days", pa.int64(), "sensitive"),
    ("valid", pa.bool_(), "insensitive"), ("no", pa.string(), "insensitive"), ("score", pa.float64(), "insensitive"), ("paid", pa.bool_(), "insensitive"),
])
def test_roles_are_guessed_from_the_name_and_date_types(name, kind, role) -> None:
    assert guess_role(name, kind)[0] == role
