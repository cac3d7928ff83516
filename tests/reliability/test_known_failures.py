"""Regression tests for failures found by hand on main (issue 16): each was an internal error (exit 70)
or a silent mix of output into input."""

from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest

from tests.conftest import COLUMNS, small_table, tree_digest
from tests.reliability.support import assert_clean_failure, assert_nothing_written

K_ANONYMITY = {"k_anonymity": {"k": 2, "hierarchies": {"zip": {"mask": {"char": "*"}}, "age": {"interval": {"widths": [10, 20]}}}}}
DP_STATS = {"dp_stats": {"epsilon": 1.0, "queries": [{"column": "income", "stat": "mean"}, {"column": "age", "stat": "count"}]}}


def test_a_csv_header_that_repeats_a_column_is_a_usage_error(workspace, cli) -> None:
    source = workspace.root / "dup.csv"
    source.write_text("patient_id,name,zip,zip,age,diagnosis,income\nP1,Ann,10001,10001,31,flu,5\n")
    result = cli("run", workspace.config(input=str(source)))
    assert_clean_failure(result, (2,), str(source), "'zip'", "more than once")
    assert_nothing_written(workspace.root, workspace.out)


def test_a_parquet_file_that_repeats_a_column_is_a_usage_error(workspace, cli) -> None:
    import pyarrow as pa

    table = small_table()
    source = workspace.root / "dup.parquet"
    pq.write_table(pa.Table.from_arrays(list(table.columns) + [table["age"]], names=table.column_names + ["age"]), source)
    result = cli("run", workspace.config(input=str(source)))
    assert_clean_failure(result, (2,), str(source), "'age'", "more than once")
    assert_nothing_written(workspace.root, workspace.out)


def test_zero_rows_through_pseudonymize_k_anonymity_and_dp_stats(workspace, cli) -> None:
    """An empty input is vacuously k-anonymous: an empty output, no class, nothing suppressed, achieved_k
    null; the DP release is still DP (noise over no rows) and still spends."""
    source = workspace.root / "empty.parquet"
    pq.write_table(small_table().slice(0, 0), source)
    stages = [{"pseudonymize": {"columns": ["patient_id"], "domain": "patients"}}, {"drop": {"columns": ["name"]}},
              K_ANONYMITY, DP_STATS]
    ledger = workspace.root / "ledger.json"
    config = workspace.config(input=str(source), stages=stages, budget={"epsilon": 2.0, "ledger": str(ledger)})
    result = cli("run", config)
    assert result.code == 0, result.err
    report = json.loads((workspace.out / "report.json").read_text())
    assert report["input"]["rows"] == 0 and report["output"]["rows"] == 0
    k_entry = report["stages"][2]
    assert (k_entry["achieved_k"], k_entry["equivalence_classes"], k_entry["suppressed_rows"]) == (None, 0, 0)
    assert k_entry["levels"] == {"age": 0, "zip": 0}
    releases = report["stages"][3]["releases"]
    assert [r["stat"] for r in releases] == ["mean", "count"]
    assert releases[0]["bounds"] == [0.0, 500000.0] and 0.0 <= releases[0]["value"] <= 500000.0
    assert json.loads(ledger.read_text())["spent"]["epsilon"] == 1.0
    parts = sorted((workspace.out / "data").glob("*.parquet"))
    assert [pq.read_metadata(p).num_rows for p in parts] == [0]
    assert pq.read_schema(parts[0]).names == ["patient_id", "zip", "age", "diagnosis", "income"]


def test_zero_rows_csv_through_k_anonymity(workspace, cli) -> None:
    source = workspace.root / "empty.csv"
    source.write_text("patient_id,name,zip,age,diagnosis,income\n")
    stages = [{"pseudonymize": {"columns": ["patient_id"], "domain": "patients"}}, {"drop": {"columns": ["name"]}}, K_ANONYMITY]
    result = cli("run", workspace.config(input=str(source), stages=stages))
    if result.code:  # a header alone gives CSV columns of type null, which the declared roles may refuse
        assert_clean_failure(result, (1, 2), str(source))
        assert_nothing_written(workspace.root, workspace.out)
    else:
        assert json.loads((workspace.out / "report.json").read_text())["output"]["rows"] == 0


def _folder_input(workspace):
    folder = workspace.root / "parts"
    folder.mkdir()
    pq.write_table(small_table(), folder / "a.parquet")
    return folder


def test_an_output_inside_the_input_directory_is_refused(workspace, cli) -> None:
    folder = _folder_input(workspace)
    before = tree_digest(folder)
    result = cli("run", workspace.config(input=str(folder), output=str(folder / "out")))
    assert_clean_failure(result, (2,), str(folder / "out"), "inside the input")
    assert tree_digest(folder) == before


def test_an_output_inside_the_input_through_a_symlink_is_refused(workspace, cli) -> None:
    folder = _folder_input(workspace)
    os.symlink(folder, workspace.root / "alias")
    before = tree_digest(folder)
    result = cli("run", workspace.config(input=str(folder), output=str(workspace.root / "alias" / "out")))
    assert_clean_failure(result, (2,), "inside the input")
    assert tree_digest(folder) == before
    result = cli("run", workspace.config(input=str(workspace.root / "alias"), output=str(folder / "deeper" / "out")))
    assert_clean_failure(result, (2,), "inside the input")
    assert tree_digest(folder) == before


def test_an_output_where_a_recursive_input_glob_finds_files_is_refused(workspace, cli) -> None:
    folder = _folder_input(workspace)
    result = cli("run", workspace.config(input=str(folder) + "/**/*.parquet", output=str(folder / "sub" / "out")))
    assert_clean_failure(result, (2,), "input pattern")
    assert not (folder / "sub").exists()


def test_an_output_beside_a_glob_that_cannot_match_it_is_accepted(workspace, cli) -> None:
    folder = _folder_input(workspace)
    result = cli("run", workspace.config(input=str(folder) + "/a*.parquet", output=str(folder / "out")))
    assert result.code == 0, result.err


def test_an_input_inside_the_output_is_refused(workspace, cli) -> None:
    assert cli("run", workspace.config()).code == 0
    earlier = workspace.out / "data"
    before = tree_digest(workspace.out)
    result = cli("run", workspace.config(input=str(earlier), output=str(workspace.out)), "--overwrite")
    assert_clean_failure(result, (2,), "input")
    assert tree_digest(workspace.out) == before


def test_a_keyring_inside_the_output_is_refused(workspace, cli) -> None:
    """Found by this suite: --overwrite replaced an earlier run holding the keyring, deleting every key."""
    assert cli("run", workspace.config()).code == 0
    ring = workspace.out / "kept.keyring"
    ring.write_bytes(workspace.keyring.read_bytes())
    result = cli("run", workspace.config(keyring=str(ring)), "--overwrite")
    assert_clean_failure(result, (2,), str(ring), "inside the output")
    assert ring.read_bytes() == workspace.keyring.read_bytes()


@pytest.mark.parametrize("change, needle", [
    ({"bounds": [-1e308, 1e308]}, "columns.income: bounds must be finite"),  # was exit 70 after spending
    ({"bounds": [0, float("inf")]}, "columns.income: bounds must be finite"),  # infinite sensitivity
    ({"epsilon": 1e-300}, "stages[2].dp_stats.epsilon"),  # was ZeroDivisionError after spending
    ({"bins": 10**9}, "bins"),  # a histogram of 10**9 counters: minutes and gigabytes before anything failed
])
def test_dp_parameters_no_mechanism_can_serve_are_config_errors(workspace, cli, change, needle) -> None:
    ledger = workspace.root / "ledger.json"
    columns = {**COLUMNS, "income": {"role": "sensitive", "bounds": change.get("bounds", [0, 500000])}}
    query = {"column": "income", "stat": "quantile", "quantiles": [0.5], "bins": change["bins"]} if "bins" in change else \
        {"column": "income", "stat": "mean"}
    stages = [{"pseudonymize": {"columns": ["patient_id"]}}, {"drop": {"columns": ["name"]}},
              {"dp_stats": {"epsilon": change.get("epsilon", 1.0), "queries": [query]}}]
    result = cli("run", workspace.config(columns=columns, stages=stages, budget={"epsilon": 10.0, "ledger": str(ledger)}))
    assert_clean_failure(result, (2,), needle)
    assert not ledger.exists()  # refused before anything was spent
    assert_nothing_written(workspace.root, workspace.out)


@pytest.mark.parametrize("text, needle", [
    ("10001;" + "x" * 200_000 + "\n", "line 1: field larger than field limit"),  # was csv.Error, exit 70
    ('{\n "a": 1\n}\n', "line 1: 1 field; each line needs"),  # said "1 fields, expected 1"
    ("10001;1000*\n10002\n", "line 2: 1 fields, expected 2"),
])
def test_a_bad_hierarchy_file_is_a_config_error_naming_the_line(workspace, cli, text, needle) -> None:
    hierarchy = workspace.root / "zip.csv"
    hierarchy.write_text(text)
    stages = [{"pseudonymize": {"columns": ["patient_id"]}}, {"drop": {"columns": ["name"]}},
              {"k_anonymity": {"k": 2, "hierarchies": {"zip": {"csv": str(hierarchy)}, "age": {"interval": {"widths": [10]}}}}}]
    result = cli("run", workspace.config(stages=stages))
    assert_clean_failure(result, (2,), str(hierarchy), needle)
    assert_nothing_written(workspace.root, workspace.out)


@pytest.mark.report_unchecked  # the hostile report.json is the point
def test_privprep_report_over_a_hostile_report_json(workspace, cli) -> None:
    """Nesting too deep was a RecursionError (exit 70); markup in values is escaped in report.html."""
    assert cli("run", workspace.config()).code == 0
    report = json.loads((workspace.out / "report.json").read_text())
    report["input"]["path"] = "<script>alert(1)</script>"
    report["stages"][0]["columns"] = ["<img src=x onerror=alert(1)>"]
    (workspace.out / "report.json").write_text(json.dumps(report))
    assert cli("report", workspace.out, "--quiet").code == 0
    html = (workspace.out / "report.html").read_text()
    assert "<script>alert(1)" not in html and "<img src=x" not in html and "&lt;script&gt;alert(1)" in html
    (workspace.out / "report.json").write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert_clean_failure(cli("report", workspace.out), (2,), "report.json")


@pytest.mark.report_unchecked  # the foreign report.json is the point
def test_overwrite_refuses_a_folder_whose_report_json_privprep_did_not_write(workspace, cli) -> None:
    """Found by this suite: any file named report.json made --overwrite replace the whole folder."""
    folder = workspace.root / "home"
    folder.mkdir()
    (folder / "report.json").write_text('{"tool": "someone else"}')
    (folder / "thesis.tex").write_text("years of work")
    result = cli("run", workspace.config(output=str(folder)), "--overwrite")
    assert_clean_failure(result, (2,), "holds no privprep run")
    assert (folder / "thesis.tex").read_text() == "years of work"


def test_a_column_listed_twice_in_a_stage_is_a_config_error(workspace, cli) -> None:
    """Found by this suite: drop: {columns: [name, name]} was an internal error (ValueError) while writing."""
    stages = [{"pseudonymize": {"columns": ["patient_id"]}}, {"drop": {"columns": ["name", "name"]}}]
    result = cli("run", workspace.config(stages=stages))
    assert_clean_failure(result, (2,), "stages[1].drop.columns", "more than once: name")
    assert_nothing_written(workspace.root, workspace.out)


def test_generalizing_an_encrypted_quasi_identifier_is_a_data_error(workspace, cli) -> None:
    """Found by this suite: k_anonymity over a column an earlier stage encrypted was ArrowInvalid (exit 70)."""
    stages = [{"pseudonymize": {"columns": ["patient_id"]}}, {"drop": {"columns": ["name"]}}, {"encrypt": {"columns": ["zip"]}},
              {"k_anonymity": {"k": 2, "hierarchies": {"zip": {"mask": {}}, "age": {"interval": {"widths": [10]}}}}}]
    result = cli("run", workspace.config(stages=stages))
    assert_clean_failure(result, (1,), "column 'zip'", "encrypted or tokenized")
    assert_nothing_written(workspace.root, workspace.out)
