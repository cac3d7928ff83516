"""Bad input (issue: foundation): each gives one clear line, the SPEC's exit code, writes nothing and
leaves the input untouched."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import tree_digest


def assert_clean_failure(result, code: int, *needles: str, workspace=None) -> None:
    assert result.code == code, result.err
    lines = [line for line in result.err.splitlines() if line.startswith("privprep: error:")]
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    for needle in needles:
        assert needle in lines[0], lines[0]
    if workspace is not None:
        assert not workspace.out.exists()
        leftovers = [p.name for p in workspace.root.iterdir() if "privprep-tmp" in p.name]
        assert leftovers == []


def test_missing_input_path(workspace, cli) -> None:
    config = workspace.config(input=str(workspace.root / "nope.parquet"))
    assert_clean_failure(cli("run", config), 2, "nope.parquet", "not found", workspace=workspace)


def test_missing_config_file(workspace, cli) -> None:
    assert_clean_failure(cli("run", workspace.root / "nope.yaml"), 2, "nope.yaml", workspace=workspace)


def test_file_that_is_not_parquet(workspace, cli) -> None:
    bogus = workspace.root / "bogus.parquet"
    bogus.write_text("id,name\n1,a\n")
    assert_clean_failure(cli("run", workspace.config(input=str(bogus))), 2, "bogus.parquet", "not a readable Parquet", workspace=workspace)


def test_truncated_parquet(workspace, cli) -> None:
    truncated = workspace.root / "truncated.parquet"
    data = workspace.input.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    before = tree_digest(truncated)
    assert_clean_failure(cli("run", workspace.config(input=str(truncated))), 2, "truncated.parquet", workspace=workspace)
    assert tree_digest(truncated) == before


def test_one_truncated_file_in_a_directory_fails_before_writing(workspace, cli) -> None:
    folder = workspace.root / "parts"
    folder.mkdir()
    shutil.copy(workspace.input, folder / "a.parquet")
    (folder / "b.parquet").write_bytes(workspace.input.read_bytes()[:100])
    assert_clean_failure(cli("run", workspace.config(input=str(folder))), 2, "b.parquet", workspace=workspace)


def test_invalid_yaml(workspace, cli) -> None:
    config = workspace.write_config_text("version: 1\ninput: [unclosed\n")
    assert_clean_failure(cli("run", config), 2, "not valid YAML", "line", workspace=workspace)


def test_yaml_that_is_not_a_mapping(workspace, cli) -> None:
    assert_clean_failure(cli("run", workspace.write_config_text("- a\n- b\n")), 2, "mapping", workspace=workspace)


def test_unknown_stage(workspace, cli) -> None:
    config = workspace.config(stages=[{"pseudonymise": {"columns": ["patient_id"]}}])
    assert_clean_failure(cli("run", config), 2, "stages[0]", "unknown stage 'pseudonymise'", workspace=workspace)


def test_unknown_key_in_config(workspace, cli) -> None:
    config = workspace.config(stages=[{"pseudonymize": {"columns": ["patient_id"], "salt": "x"}}, {"drop": {"columns": ["name"]}}])
    assert_clean_failure(cli("run", config), 2, "stages[0].pseudonymize.salt", "unknown key", workspace=workspace)


def test_a_typo_of_a_required_key_leads_the_message(workspace, cli) -> None:
    """Issue 23: the README's example, as the CLI prints it (it led with '...columns: Field required')."""
    config = workspace.config(stages=[{"pseudonymize": {"colums": ["patient_id"]}}, {"drop": {"columns": ["name"]}}])
    result = cli("run", config)
    assert_clean_failure(result, 2, workspace=workspace)
    assert result.err.strip() == (f"privprep: error: config file '{config}': stages[0].pseudonymize.colums: unknown key "
                                  "(did you mean 'columns'?)")
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "`stages[0].pseudonymize.colums: unknown key (did you mean 'columns'?)`" in readme  # what the README promises


def test_undeclared_input_column(workspace, cli) -> None:
    columns = {k: v for k, v in yaml.safe_load(workspace.config().read_text())["columns"].items() if k != "diagnosis"}
    assert_clean_failure(cli("run", workspace.config(columns=columns)), 1, "not declared", "diagnosis", workspace=workspace)


def test_a_misspelled_declaration_is_named_with_the_input_column(workspace, cli) -> None:
    columns = yaml.safe_load(workspace.config().read_text())["columns"]
    columns["diagnoses"] = columns.pop("diagnosis")
    assert_clean_failure(cli("run", workspace.config(columns=columns)), 1, "not declared", "diagnosis",
                         "(columns.diagnoses is declared but not in the input: a misspelling of 'diagnosis'?)", workspace=workspace)


def test_declared_column_missing_from_data(workspace, cli) -> None:
    columns = yaml.safe_load(workspace.config().read_text())["columns"]
    columns["ssn"] = {"role": "sensitive"}
    assert_clean_failure(cli("run", workspace.config(columns=columns)), 1, "missing from the input", "ssn", workspace=workspace)


def test_stage_naming_unknown_column(workspace, cli) -> None:
    stages = [{"pseudonymize": {"columns": ["patient_id", "ghost"]}}, {"drop": {"columns": ["name"]}}]
    assert_clean_failure(cli("run", workspace.config(stages=stages)), 2, "stages[0].pseudonymize", "'ghost'", workspace=workspace)


def test_unprotected_identifier_fails_closed(workspace, cli) -> None:
    stages = [{"pseudonymize": {"columns": ["patient_id"]}}]
    assert_clean_failure(cli("run", workspace.config(stages=stages)), 2, "columns.name", "no stage protects it", workspace=workspace)


def test_missing_keyring(workspace, cli, monkeypatch) -> None:
    monkeypatch.delenv("PRIVPREP_KEYRING", raising=False)
    config = workspace.config(keyring=str(workspace.root / "absent.keyring"))
    assert_clean_failure(cli("run", config), 2, "absent.keyring", "privprep keys new", workspace=workspace)


def test_no_keyring_configured(workspace, cli, monkeypatch) -> None:
    monkeypatch.delenv("PRIVPREP_KEYRING", raising=False)
    document = yaml.safe_load(workspace.config().read_text())
    document.pop("keyring")
    config = workspace.write_config_text(yaml.safe_dump(document))
    assert_clean_failure(cli("run", config), 2, "PRIVPREP_KEYRING", workspace=workspace)


def test_keyring_from_environment(workspace, cli, monkeypatch) -> None:
    document = yaml.safe_load(workspace.config().read_text())
    document.pop("keyring")
    config = workspace.write_config_text(yaml.safe_dump(document))
    monkeypatch.setenv("PRIVPREP_KEYRING", str(workspace.keyring))
    assert cli("run", config, "--quiet").code == 0
    assert (workspace.out / "report.json").is_file()


def test_missing_key_id(workspace, cli) -> None:
    stages = [{"pseudonymize": {"columns": ["patient_id"], "key": "pseudo-ghost"}}, {"drop": {"columns": ["name"]}}]
    assert_clean_failure(cli("run", workspace.config(stages=stages)), 2, "stages[0].pseudonymize", "pseudo-ghost", workspace=workspace)


def test_wrong_keyring_permissions_are_warned_about(workspace, cli) -> None:
    os.chmod(workspace.keyring, 0o644)
    result = cli("run", workspace.config())
    assert result.code == 0
    assert "chmod 600" in result.err


def test_output_from_earlier_run_is_refused_without_overwrite(workspace, cli) -> None:
    config = workspace.config()
    assert cli("run", config, "--quiet").code == 0
    before = tree_digest(workspace.out)
    result = cli("run", config)
    assert result.code == 2 and "--overwrite" in result.err
    assert tree_digest(workspace.out) == before


def test_failed_overwrite_leaves_the_earlier_run_whole(workspace, cli) -> None:
    assert cli("run", workspace.config(), "--quiet").code == 0
    before = tree_digest(workspace.out)
    truncated = workspace.root / "truncated.parquet"
    truncated.write_bytes(workspace.input.read_bytes()[:50])
    result = cli("run", workspace.config(input=str(truncated)), "--overwrite")
    assert result.code == 2
    assert tree_digest(workspace.out) == before
    assert not [p for p in workspace.root.iterdir() if "privprep-" in p.name]


def test_overwrite_refuses_a_folder_that_is_not_a_run(workspace, cli) -> None:
    workspace.out.mkdir()
    (workspace.out / "precious.txt").write_text("keep me")
    result = cli("run", workspace.config(), "--overwrite")
    assert result.code == 2 and "not a privprep run" in result.err.replace("holds no privprep run", "not a privprep run")
    assert (workspace.out / "precious.txt").read_text() == "keep me"


def test_output_inside_input_is_refused(workspace, cli) -> None:
    folder = workspace.root / "parts"
    folder.mkdir()
    shutil.copy(workspace.input, folder / "a.parquet")
    result = cli("run", workspace.config(input=str(folder), output=str(folder)), "--overwrite")
    assert result.code == 2 and "input" in result.err
    assert (folder / "a.parquet").read_bytes() == workspace.input.read_bytes()


def test_bad_flag_is_a_usage_error(workspace, cli) -> None:
    result = cli("run", workspace.config(), "--no-such-flag")
    assert result.code == 2 and not workspace.out.exists()


def test_debug_shows_the_traceback(workspace, cli) -> None:
    with pytest.raises(Exception):
        cli("run", workspace.root / "nope.yaml", "--debug")


def test_type_mismatch_between_files(workspace, cli) -> None:
    folder = workspace.root / "parts"
    folder.mkdir()
    shutil.copy(workspace.input, folder / "a.parquet")
    table = pq.read_table(workspace.input)
    table = table.set_column(table.schema.get_field_index("age"), "age", pa.array(["x"] * table.num_rows))
    pq.write_table(table, folder / "b.parquet")
    result = cli("run", workspace.config(input=str(folder)))
    assert result.code in (1, 2) and "b.parquet" in result.err
    assert not workspace.out.exists()


def test_input_is_never_modified(workspace, cli) -> None:
    before = tree_digest(workspace.input)
    assert cli("run", workspace.config(), "--quiet").code == 0
    assert tree_digest(workspace.input) == before


def _k_stages(**k_params):
    return [
        {"pseudonymize": {"columns": ["patient_id"]}},
        {"drop": {"columns": ["name"]}},
        {"k_anonymity": {"hierarchies": {"zip": {"mask": {}}, "age": {"interval": {"widths": [10, 20]}}}, **k_params}},
    ]


def test_unreachable_k_exits_1_and_writes_nothing(workspace, cli) -> None:
    result = cli("run", workspace.config(stages=_k_stages(k=50)))
    assert_clean_failure(result, 1, "k_anonymity", "best reachable k is 8", workspace=workspace)


def test_unreachable_l_diversity_names_the_criterion(workspace, cli) -> None:
    result = cli("run", workspace.config(stages=_k_stages(k=2, l_diversity={"diagnosis": 4})))
    assert_clean_failure(result, 1, "l_diversity[diagnosis]", workspace=workspace)


def test_quasi_identifier_without_hierarchy_is_a_config_error(workspace, cli) -> None:
    stages = _k_stages(k=2)
    del stages[2]["k_anonymity"]["hierarchies"]["age"]
    assert_clean_failure(cli("run", workspace.config(stages=stages)), 2, "stages[2].k_anonymity", "age", workspace=workspace)


def test_hierarchy_file_missing_values_exits_1_without_naming_them(workspace, cli) -> None:
    (workspace.root / "zip.csv").write_text("10001;1000*;*\n10002;1000*;*\n")
    stages = _k_stages(k=2)
    stages[2]["k_anonymity"]["hierarchies"]["zip"] = {"csv": "zip.csv"}
    result = cli("run", workspace.config(stages=stages))
    assert_clean_failure(result, 1, "column 'zip'", "3 distinct value(s)", workspace=workspace)
    assert "10003" not in result.err


def test_missing_hierarchy_file_is_a_config_error(workspace, cli) -> None:
    stages = _k_stages(k=2)
    stages[2]["k_anonymity"]["hierarchies"]["zip"] = {"csv": "absent.csv"}
    assert_clean_failure(cli("run", workspace.config(stages=stages)), 2, "absent.csv", workspace=workspace)
