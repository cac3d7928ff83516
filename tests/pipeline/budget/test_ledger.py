"""The privacy ledger: budget refusal before any data pass, identity, composition, crash safety,
and the dp_stats outputs of a run directory (report entries, stats.json, ledger.json)."""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from privprep.pipeline.budget.ledger import FORMAT, Ledger, PlannedSpend
from privprep.schemas.errors import BudgetError
from tests.conftest import small_table, tree_digest

DP_STAGES = [
    {"pseudonymize": {"columns": ["patient_id"]}},
    {"drop": {"columns": ["name"]}},
    {"dp_stats": {"epsilon": 0.6, "seed": 1, "queries": [
        {"column": "income", "stat": "mean"},
        {"column": "income", "stat": "count", "by": "zip"},
        {"column": "age", "stat": "quantile", "quantiles": [0.5], "range": [0, 100], "bins": 20},
    ]}},
]


def dp_config(workspace, *, budget: dict | None = None, **overrides) -> Path:
    columns = yaml_columns()
    overrides.setdefault("stages", DP_STAGES)
    budget = {"epsilon": 1.0, "ledger": str(workspace.root / "ledgers" / "patients.json"), **(budget or {})}
    return workspace.config(columns=columns, budget=budget, **overrides)


def yaml_columns() -> dict:
    from tests.conftest import COLUMNS

    columns = {k: dict(v) for k, v in COLUMNS.items()}
    columns["zip"]["categories"] = ["10001", "10002", "10003"]
    return columns


def ledger_doc(workspace) -> dict:
    return json.loads((workspace.root / "ledgers" / "patients.json").read_text())


# -- a run with dp_stats ---------------------------------------------------------------------------


def test_a_run_writes_releases_stats_and_the_ledger(workspace, cli) -> None:
    assert cli("run", dp_config(workspace), "--quiet").code == 0
    report = json.loads((workspace.out / "report.json").read_text())
    stage = next(s for s in report["stages"] if s["name"] == "dp_stats")
    for entry in stage["releases"]:
        assert {"column", "stat", "value", "epsilon", "mechanism", "bounds", "noise_scale", "error_95"} <= set(entry)
    assert [e["stat"] for e in stage["releases"]] == ["mean", "count", "count", "count", "quantile"]
    assert stage["epsilon_split"]["method"] == "even" and stage["local_not_dp"]["differentially_private"] is False
    assert report["budget"]["spent_epsilon"] == pytest.approx(0.6) and report["budget"]["remaining_epsilon"] == pytest.approx(0.4)
    stats = json.loads((workspace.out / "stats.json").read_text())
    assert [v["value"] for v in stats["values"]] == [e["value"] for e in stage["releases"]]
    assert set(stats["values"][1]) == {"stage", "column", "stat", "by", "group", "value", "error_95"}
    copy = json.loads((workspace.out / "ledger.json").read_text())
    assert copy == ledger_doc(workspace) and copy["format"] == FORMAT and len(copy["entries"]) == 1
    entry = copy["entries"][0]
    assert entry["stage"] == "stages[2].dp_stats" and entry["epsilon"] == pytest.approx(0.6) and entry["config_sha256"]
    assert pq.read_table(workspace.out / "data").num_rows == 8


def test_a_second_run_over_budget_is_refused_before_reading_and_writes_nothing(workspace, cli, monkeypatch) -> None:
    assert cli("run", dp_config(workspace), "--quiet").code == 0
    before = tree_digest(workspace.root / "ledgers"), tree_digest(workspace.out)
    from privprep.pipeline.files import io

    def no_reading(*args, **kwargs):
        raise AssertionError("the input was read")

    monkeypatch.setattr(io.InputSource, "batches", no_reading)
    result = cli("run", dp_config(workspace, output=str(workspace.root / "second")), "--quiet")
    assert result.code == 1
    assert "budget exceeded" in result.err and "only 0.4 of budget.epsilon 1 remains" in result.err
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
    assert not (workspace.root / "second").exists()
    assert (tree_digest(workspace.root / "ledgers"), tree_digest(workspace.out)) == before
    assert len(ledger_doc(workspace)["entries"]) == 1
    assert cli("run", dp_config(workspace), "--overwrite", "--quiet").code == 1  # the earlier run is untouched too
    assert tree_digest(workspace.out) == before[1]


def test_dry_run_shows_the_budget_and_refuses_an_overspend(workspace, cli) -> None:
    result = cli("run", dp_config(workspace), "--dry-run")
    assert result.code == 0 and "budget   epsilon 1: 1 remaining, this run spends 0.6" in result.out
    assert not (workspace.root / "ledgers").exists()
    assert cli("run", dp_config(workspace), "--quiet").code == 0
    assert cli("run", dp_config(workspace), "--dry-run").code == 1


def test_a_run_that_fails_after_the_release_still_counts(workspace, cli, monkeypatch) -> None:
    from privprep.pipeline.files import io

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(io.PartWriter, "write", broken)
    assert cli("run", dp_config(workspace), "--quiet").code != 0
    assert not workspace.out.exists()
    assert [e["epsilon"] for e in ledger_doc(workspace)["entries"]] == [pytest.approx(0.6)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.pop("budget"), "no 'budget'"),
        (lambda c: c["budget"].pop("ledger"), "budget.ledger: required"),
        (lambda c: c["budget"].update(epsilon=0.5), "stages[2].dp_stats: epsilon 0.6 is more than the whole budget.epsilon 0.5"),
        (lambda c: c["budget"].update(composition="advanced"), "needs 0 < slack <= delta"),
    ],
)
def test_budget_config_errors(workspace, cli, change, message) -> None:
    import yaml

    path = dp_config(workspace)
    document = yaml.safe_load(path.read_text())
    change(document)
    path.write_text(yaml.safe_dump(document))
    result = cli("run", path, "--quiet")
    assert result.code == 2 and message in result.err, result.err
    assert not workspace.out.exists()


def test_a_ledger_inside_the_output_is_refused(workspace, cli) -> None:
    result = cli("run", dp_config(workspace, budget={"ledger": str(workspace.out / "ledger.json")}), "--quiet")
    assert result.code == 2 and "lies inside the output" in result.err


def test_a_ledger_of_another_input_is_refused_unless_told(workspace, cli) -> None:
    assert cli("run", dp_config(workspace, budget={"epsilon": 2.0}), "--quiet").code == 0
    other = workspace.root / "other.parquet"
    pq.write_table(small_table().slice(0, 5), other)
    config = dp_config(workspace, input=str(other), output=str(workspace.root / "o2"), budget={"epsilon": 2.0})
    result = cli("run", config, "--quiet")
    assert result.code == 1 and "records spends on another input" in result.err and "allow_input_change" in result.err
    config = dp_config(workspace, input=str(other), output=str(workspace.root / "o2"),
                       budget={"epsilon": 2.0, "allow_input_change": True})
    assert cli("run", config, "--quiet").code == 0
    doc = ledger_doc(workspace)
    assert len(doc["entries"]) == 2 and len(doc["dataset"]["fingerprints"]) == 2


def test_a_damaged_ledger_is_refused_and_left_alone(workspace, cli) -> None:
    path = workspace.root / "ledgers" / "patients.json"
    path.parent.mkdir()
    path.write_text('{"format": "privprep-ledger/1", "entries": [')
    result = cli("run", dp_config(workspace), "--quiet")
    assert result.code == 1 and "cannot be read" in result.err
    assert path.read_text() == '{"format": "privprep-ledger/1", "entries": ['


def test_a_stage_that_records_no_spend_is_charged_by_the_runner(workspace, cli, monkeypatch) -> None:
    from privprep.transforms import registry
    from tests.pipeline.engines.test_runner import _CountRelease

    monkeypatch.setitem(registry._STAGES, "dp_stats", _CountRelease)
    assert cli("run", dp_config(workspace), "--quiet").code == 0
    entries = ledger_doc(workspace)["entries"]
    assert [e["epsilon"] for e in entries] == [pytest.approx(0.6)] and "charged by the runner" in entries[0]["details"]["note"]


# -- the ledger on its own -------------------------------------------------------------------------


def test_basic_composition_adds_up_and_names_the_remaining_budget(tmp_path) -> None:
    ledger = Ledger(tmp_path / "l.json", epsilon=1.0, fingerprint="sha256:x")
    for _ in range(3):
        ledger.spend(0.1 + 0.2, stage="s")  # float sums that overshoot 0.9 by an ulp still fit
    assert ledger.total()[0] == pytest.approx(0.9)
    with pytest.raises(BudgetError, match=r"only 0.1 of budget.epsilon 1 remains"):
        ledger.check([PlannedSpend("stages[1].dp_stats", "dp_stats", 0.2)])
    ledger.spend(0.1, stage="s")
    assert Ledger(tmp_path / "l.json", epsilon=1.0, fingerprint="sha256:x").remaining() == pytest.approx(0.0, abs=1e-12)


def test_advanced_composition_matches_the_kairouz_oh_viswanath_bound(tmp_path) -> None:
    ledger = Ledger(None, epsilon=10.0, delta=1e-5, composition="advanced", slack=1e-6)
    for _ in range(100):
        ledger.spend(0.05)
    eps = [0.05] * 100
    head = sum(e * (math.exp(e) - 1) / (math.exp(e) + 1) for e in eps)
    squares = sum(e * e for e in eps)
    drv = head + math.sqrt(2 * squares * math.log(1 / 1e-6))
    kov = head + math.sqrt(2 * squares * math.log(math.e + math.sqrt(squares) / 1e-6))
    assert ledger.total()[0] == pytest.approx(min(sum(eps), drv, kov)) and ledger.total()[0] < 5.0 * 0.6
    assert ledger.total()[1] == pytest.approx(1e-6)


def test_concurrent_spends_never_exceed_the_budget(tmp_path) -> None:
    path = tmp_path / "l.json"
    outcomes: list[bool] = []

    def spend() -> None:
        try:
            Ledger(path, epsilon=1.0, fingerprint="sha256:x").spend(0.1, stage="s")
            outcomes.append(True)
        except BudgetError:
            outcomes.append(False)

    threads = [threading.Thread(target=spend) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count(True) == 10 and len(json.loads(path.read_text())["entries"]) == 10


def _spend_forever(path: str, confirm) -> None:
    ledger = Ledger(Path(path), epsilon=1e9, fingerprint="sha256:x")
    i = 0
    while True:
        ledger.spend(0.001, stage=f"s{i}", details={"padding": "x" * 4000})
        confirm.send(i)  # only after spend() returned: the spend is on disk
        i += 1


def test_a_process_killed_while_writing_leaves_the_ledger_readable_and_complete(tmp_path) -> None:
    import multiprocessing

    fork = multiprocessing.get_context("fork")  # no interpreter start-up per trial
    path = tmp_path / "l.json"
    recorded = 0
    for trial in range(6):
        receive, send = fork.Pipe(duplex=False)
        child = fork.Process(target=_spend_forever, args=(str(path), send))
        child.start()
        confirmed = 0
        while confirmed < 3 + 2 * trial:
            receive.recv()
            confirmed += 1
        time.sleep(0.0005 * trial)  # kill at different points of a write
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        while receive.poll():
            receive.recv()
            confirmed += 1
        doc = json.loads(path.read_text())  # never half a file
        count = len(doc["entries"])
        assert count >= recorded + confirmed  # no confirmed spend is lost
        assert [e["stage"] for e in doc["entries"]][recorded:] == [f"s{i}" for i in range(count - recorded)]
        recorded = count
