from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml

from privprep.pipeline import api
from privprep.pipeline.keys.keyring import Keyring
from privprep.schemas.stages import DpStatsParams, KAnonymityParams
from privprep.transforms import Pseudonymize, registry
from privprep.transforms.base import GlobalStage, ReleaseStage
from tests.conftest import small_table, tree_digest


def read_output(run_dir: Path) -> pa.Table:
    return pq.read_table(run_dir / "data")


def test_report_has_the_spec_fields(workspace, cli) -> None:
    config = workspace.config()
    assert cli("run", config, "--quiet").code == 0
    report = json.loads((workspace.out / "report.json").read_text())
    assert report["privprep_version"]
    assert report["config_sha256"] == hashlib.sha256(config.read_bytes()).hexdigest()
    assert report["status"] == "success"
    assert report["input"]["rows"] == 8 and report["output"]["rows"] == 8
    key_id = Keyring.load(workspace.keyring).resolve("pseudonymize", None).id
    assert report["keys_used"] == [key_id]
    assert report["timings"]["total_seconds"] >= 0
    assert [s["name"] for s in report["stages"]] == ["pseudonymize", "drop"]
    assert report["stages"][0]["rows_in"] == 8 and report["stages"][0]["columns"] == ["patient_id"]


def test_output_values_match_the_transform_and_keep_row_order(workspace, cli) -> None:
    assert cli("run", workspace.config(), "--quiet").code == 0
    out = read_output(workspace.out)
    key = Keyring.load(workspace.keyring).resolve("pseudonymize", None)
    expected = Pseudonymize(columns=["patient_id"], domain="patients", key=key).apply(small_table())
    assert out.column_names == ["patient_id", "zip", "age", "diagnosis", "income"]
    assert out.column("patient_id").to_pylist() == expected.column("patient_id").to_pylist()
    assert out.column("zip").to_pylist() == small_table().column("zip").to_pylist()


def test_report_and_outputs_hold_no_identifier_values_or_key_material(workspace, cli) -> None:
    assert cli("run", workspace.config(), "--quiet").code == 0
    blob = b"".join(p.read_bytes() for p in workspace.out.rglob("*") if p.is_file())
    for value in ("Zoë-Ørsted-Łukasz", "Ann", "Bob", "Dee"):
        assert value.encode() not in blob
    for entry in json.loads(workspace.keyring.read_text())["keys"]:
        assert entry["material"].encode() not in blob


def test_many_files_small_batches_and_parts(workspace, cli) -> None:
    folder = workspace.root / "parts"
    folder.mkdir()
    rows = pa.concat_tables([small_table()] * 50)
    for i in range(4):
        pq.write_table(rows.slice(i * 100, 100), folder / f"part-{i}.parquet", row_group_size=17)
    (folder / "_SUCCESS").write_text("")
    (folder / ".hidden.parquet").write_text("ignored")
    config = workspace.config(input=str(folder), io={"batch_rows": 13, "rows_per_file": 150})
    assert cli("run", config, "--quiet").code == 0
    files = sorted((workspace.out / "data").iterdir())
    assert [f.name for f in files] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    out = pa.concat_tables(pq.read_table(f) for f in files)
    key = Keyring.load(workspace.keyring).resolve("pseudonymize", None)
    expected = Pseudonymize(columns=["patient_id"], domain="patients", key=key).apply(rows)
    assert out.column("patient_id").to_pylist() == expected.column("patient_id").to_pylist()
    assert out.column("age").to_pylist() == rows.column("age").to_pylist()


def test_glob_and_csv_inputs(workspace, cli) -> None:
    folder = workspace.root / "csv"
    folder.mkdir()
    pacsv.write_csv(small_table(), folder / "a.csv")
    pacsv.write_csv(small_table(), folder / "b.csv")
    config = workspace.config(input=str(folder / "*.csv"))
    assert cli("run", config, "--quiet").code == 0
    assert read_output(workspace.out).num_rows == 16


def test_zero_rows_give_a_valid_empty_output(workspace, cli) -> None:
    empty = workspace.root / "empty.parquet"
    pq.write_table(small_table().slice(0, 0), empty)
    assert cli("run", workspace.config(input=str(empty)), "--quiet").code == 0
    out = read_output(workspace.out)
    assert out.num_rows == 0 and out.column_names == ["patient_id", "zip", "age", "diagnosis", "income"]
    assert json.loads((workspace.out / "report.json").read_text())["output"]["rows"] == 0


def test_same_pseudonyms_across_runs_and_processes(workspace, cli) -> None:
    config = workspace.config()
    assert cli("run", config, "--quiet").code == 0
    first = read_output(workspace.out)
    for seed in ("1", "999"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run(
            [sys.executable, "-m", "privprep.pipeline", "run", str(config), "--overwrite", "--quiet"],
            env=env, check=True, capture_output=True,
        )
        assert read_output(workspace.out).equals(first)


def test_overwrite_replaces_an_earlier_run(workspace, cli) -> None:
    config = workspace.config()
    assert cli("run", config, "--quiet").code == 0
    (workspace.out / "stale.txt").write_text("from the old run")
    assert cli("run", config, "--overwrite", "--quiet").code == 0
    assert not (workspace.out / "stale.txt").exists() and (workspace.out / "report.json").is_file()


def test_dry_run_prints_the_plan_and_writes_nothing(workspace, cli) -> None:
    result = cli("run", workspace.config(), "--dry-run")
    assert result.code == 0
    assert "pseudonymize" in result.out and "8 rows" in result.out and "passes   1" in result.out
    assert not workspace.out.exists()


def test_relative_paths_resolve_against_the_config_folder(workspace, cli, monkeypatch, tmp_path) -> None:
    sub = workspace.root / "conf"
    sub.mkdir()
    shutil.copy(workspace.input, sub / "data.parquet")
    document = yaml.safe_load(workspace.config().read_text())
    document.update(input="data.parquet", output="../rel-out", keyring=os.path.relpath(workspace.keyring, sub))
    (sub / "p.yaml").write_text(yaml.safe_dump(document))
    monkeypatch.chdir(tmp_path.parent)
    assert cli("run", sub / "p.yaml", "--quiet").code == 0
    assert (workspace.root / "rel-out" / "report.json").is_file()


def test_cli_output_and_input_flags_override_the_config(workspace, cli) -> None:
    other = workspace.root / "other.parquet"
    pq.write_table(small_table().slice(0, 3), other)
    assert cli("run", workspace.config(), "--input", other, "--output", workspace.root / "o2", "--quiet").code == 0
    assert read_output(workspace.root / "o2").num_rows == 3


# -- the stage interface: a global and a release stage plug in without touching the runner ----------


class _SuppressRareZips(GlobalStage):
    """Test double of a global stage: removes rows whose zip occurs fewer than k times."""

    name: ClassVar[str] = "k_anonymity"
    Params = KAnonymityParams
    observed: list[int] = []

    def __init__(self, *, k: int) -> None:
        self.k, self.counts, self.keep = k, {}, None

    @classmethod
    def from_config(cls, params: Any, *, context: Any) -> "_SuppressRareZips":
        return cls(k=params.k)

    def input_columns(self) -> list[str]:
        return ["zip"]

    def observe(self, table: pa.Table) -> None:
        assert table.column_names == ["zip"], "pass 1 reads only the columns the stage needs"
        _SuppressRareZips.observed.append(table.num_rows)
        for value in table.column("zip").to_pylist():
            self.counts[value] = self.counts.get(value, 0) + 1

    def decide(self) -> None:
        self.keep = pa.array(sorted(v for v, c in self.counts.items() if c >= self.k))

    def transform(self, table: pa.Table) -> pa.Table:
        return table.filter(pc.is_in(table.column("zip"), value_set=self.keep))

    def report(self) -> dict[str, Any]:
        return {"k": self.k}


class _CountRelease(ReleaseStage):
    name: ClassVar[str] = "dp_stats"
    Params = DpStatsParams

    def __init__(self) -> None:
        self.rows = 0

    @classmethod
    def from_config(cls, params: Any, *, context: Any) -> "_CountRelease":
        return cls()

    def input_columns(self) -> list[str]:
        return ["income"]

    def observe(self, table: pa.Table) -> None:
        self.rows += table.num_rows

    def release(self, ledger: Any) -> list[dict[str, Any]]:
        return [{"column": "income", "stat": "count", "value": self.rows}]


def test_global_and_release_stages_plug_into_the_runner(workspace, cli, monkeypatch) -> None:
    monkeypatch.setitem(registry._STAGES, "k_anonymity", _SuppressRareZips)
    monkeypatch.setitem(registry._STAGES, "dp_stats", _CountRelease)
    _SuppressRareZips.observed = []
    stages = [
        {"pseudonymize": {"columns": ["patient_id"]}},
        {"drop": {"columns": ["name"]}},
        {"k_anonymity": {"k": 2, "quasi_identifiers": ["zip"], "hierarchies": {"zip": {"mask": {}}}}},
        {"dp_stats": {"epsilon": 1.0, "queries": [{"column": "income", "stat": "mean"}]}},
    ]
    before = tree_digest(workspace.input)
    budget = {"epsilon": 2.0, "ledger": str(workspace.root / "ledger.json")}  # DP stages fail closed without one
    assert cli("run", workspace.config(stages=stages, io={"batch_rows": 3}, budget=budget), "--quiet").code == 0
    out = read_output(workspace.out)
    assert sorted(set(out.column("zip").to_pylist())) == ["10001", "10002"]
    assert out.num_rows == 5 and sum(_SuppressRareZips.observed) == 8
    report = json.loads((workspace.out / "report.json").read_text())
    stages_by_name = {s["name"]: s for s in report["stages"]}
    assert stages_by_name["k_anonymity"]["rows_in"] == 8 and stages_by_name["k_anonymity"]["rows_out"] == 5
    assert stages_by_name["dp_stats"]["releases"] == [{"column": "income", "stat": "count", "value": 8}]
    assert report["output"]["rows_removed"] == 3
    assert tree_digest(workspace.input) == before


def test_python_api_returns_the_report(workspace) -> None:
    result = api.run(workspace.config())
    assert result.run_dir == workspace.out and result.report["output"]["rows"] == 8


def test_module_entry_point_and_sample_command(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "privprep.pipeline", "sample", "--rows", "20", "--out", str(tmp_path / "s"), "--seed", "3"],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    assert pq.read_table(tmp_path / "s" / "patients.parquet").num_rows == 20


@pytest.mark.parametrize("mode", [0o600])
def test_keys_new_file_mode(tmp_path: Path, cli, mode: int) -> None:
    assert cli("keys", "new", "--out", tmp_path / "r.keyring").code == 0
    assert (tmp_path / "r.keyring").stat().st_mode & 0o777 == mode


def test_k_anonymity_stage_in_a_run(workspace, cli) -> None:
    stages = [
        {"pseudonymize": {"columns": ["patient_id"]}},
        {"drop": {"columns": ["name"]}},
        {"k_anonymity": {"k": 2, "suppression_limit": 0.25, "hierarchies": {"zip": {"mask": {}}, "age": {"interval": {"widths": [10, 20, 40]}}}}},
    ]
    assert cli("run", workspace.config(stages=stages, io={"batch_rows": 3}), "--quiet").code == 0
    out = read_output(workspace.out).to_pandas()
    report = json.loads((workspace.out / "report.json").read_text())
    entry = report["stages"][2]
    assert out.groupby(["zip", "age"], dropna=False).size().min() >= 2
    assert entry["suppressed_rows"] == 8 - len(out) <= 2
    assert entry["achieved_k"] >= 2 and set(entry["levels"]) == {"zip", "age"}
    assert report["output"]["rows"] == len(out)
