"""The ledger under concurrency and crashes (issue 16): processes spending from one ledger at once (some
through a symlink to it) never take the total over budget.epsilon; concurrent runs neither; a process
killed while spending leaves valid JSON with each spend whole or absent; a damaged ledger is a clear
error naming it, left as it is, never read as empty."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import COLUMNS
from tests.reliability.support import (assert_clean_failure, assert_nothing_written, forkserver, run_cli_to_files,
                                       spend_until_refused, tally)

def _spenders(tmp_path: Path, names: list[str], start: float, step: float, limit: float):
    context = forkserver()
    pipes, processes = [], []
    for tag, name in enumerate(names):
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=spend_until_refused, args=(name, str(tmp_path), start, step, limit, tag, send))
        process.start()
        pipes.append(receive)
        processes.append(process)
    return pipes, processes


def _final_count(pipe) -> int:
    while True:
        value = pipe.recv()
        if value < 0:
            return -value - 1


def test_processes_spending_at_once_never_overspend(tmp_path: Path) -> None:
    (tmp_path / "ledger.json").touch()
    (tmp_path / "ledger.json").unlink()
    os.symlink("ledger.json", tmp_path / "alias.json")  # a second name of the same account
    start = time.time() + 0.5
    pipes, processes = _spenders(tmp_path, ["alias.json" if i % 2 else "ledger.json" for i in range(6)], start, 0.07, 1.0)
    successes = [_final_count(pipe) for pipe in pipes]
    for process in processes:
        process.join(timeout=30)
    doc = json.loads((tmp_path / "ledger.json").read_text())
    spent = math.fsum(e["epsilon"] for e in doc["entries"])
    assert sum(successes) == len(doc["entries"]) == 14  # floor(1.0 / 0.07)
    assert spent <= 1.0 and doc["spent"]["epsilon"] == pytest.approx(spent)
    assert (tmp_path / "alias.json").is_symlink()  # the symlink still names the one ledger
    tally("ledger", "concurrent spends", len(doc["entries"]))
    tally("ledger", "overspends", 0)


def test_a_process_killed_while_spending_leaves_each_spend_whole_or_absent(tmp_path: Path) -> None:
    rng = random.Random(16)
    path = tmp_path / "ledger.json"
    confirmed_total = 0
    for trial in range(4):
        context = forkserver()
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=spend_until_refused, args=("ledger.json", str(tmp_path), 0.0, 0.001, 1e9, trial, send))
        process.start()
        confirmed = 0
        while confirmed < 3 + trial:
            confirmed = receive.recv()
        time.sleep(rng.uniform(0.0, 0.02))
        os.kill(process.pid, signal.SIGKILL)
        process.join()
        while receive.poll():
            confirmed = max(confirmed, receive.recv())
        doc = json.loads(path.read_text())  # never half a file
        entries = [e for e in doc["entries"] if e["stage"].startswith(f"p{trial}-")]
        assert len(entries) >= confirmed  # no confirmed spend lost
        assert all({"id", "epsilon", "delta", "stage", "time"} <= set(e) and e["epsilon"] == 0.001 for e in entries)
        assert [e["stage"] for e in entries] == [f"p{trial}-{i}" for i in range(len(entries))]
        confirmed_total += len(entries)
    assert len(json.loads(path.read_text())["entries"]) == confirmed_total
    tally("ledger", "kill -9 while spending", 4)


def _dp_config(workspace, ledger: Path, epsilon: float, output: Path) -> Path:
    columns = dict(COLUMNS)
    return workspace.config(
        name=f"{output.name}.yaml", output=str(output), columns=columns,
        stages=[{"pseudonymize": {"columns": ["patient_id"]}}, {"drop": {"columns": ["name"]}},
                {"dp_stats": {"epsilon": epsilon, "queries": [{"column": "income", "stat": "mean"}]}}],
        budget={"epsilon": 1.0, "ledger": str(ledger)},
    )


def test_concurrent_runs_never_overspend(workspace) -> None:
    ledger = workspace.root / "ledgers" / "patients.json"
    outputs = [workspace.root / f"out-{i}" for i in range(3)]
    configs = [_dp_config(workspace, ledger, 0.4, out) for out in outputs]
    context = forkserver()
    runs = [context.Process(target=run_cli_to_files, args=(["run", str(c), "--quiet"], str(c) + ".err")) for c in configs]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=120)
    results = [(run.exitcode, Path(str(c) + ".err").read_text()) for run, c in zip(runs, configs)]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 0, 1], results
    refused = [err for code, err in results if code == 1][0]
    assert "budget exceeded" in refused and "Traceback" not in refused
    doc = json.loads(ledger.read_text())
    assert len(doc["entries"]) == 2 and math.fsum(e["epsilon"] for e in doc["entries"]) == pytest.approx(0.8)
    assert sum(out.exists() for out in outputs) == 2
    tally("ledger", "concurrent runs", 3)


DAMAGED = {
    "empty file": b"",
    "truncated": b'{"format": "privprep-ledger/1", "entries": [',
    "not JSON": b"\x00\xff garbage",
    "a list": b"[]",
    "null": b"null",
    "another format": b'{"format": "other/1", "dataset": {"fingerprints": []}, "entries": []}',
    "entries not a list": b'{"format": "privprep-ledger/1", "dataset": {"fingerprints": []}, "entries": {}}',
    "negative epsilon": b'{"format": "privprep-ledger/1", "dataset": {"fingerprints": []}, "entries": [{"epsilon": -5, "delta": 0}]}',
    "NaN epsilon": b'{"format": "privprep-ledger/1", "dataset": {"fingerprints": []}, "entries": [{"epsilon": NaN, "delta": 0}]}',
    "Infinity epsilon": b'{"format": "privprep-ledger/1", "dataset": {"fingerprints": []}, "entries": [{"epsilon": Infinity}]}',
    "epsilon as text": b'{"format": "privprep-ledger/1", "dataset": {"fingerprints": []}, "entries": [{"epsilon": "0.5"}]}',
    "boolean epsilon": b'{"format": "privprep-ledger/1", "dataset": {"fingerprints": []}, "entries": [{"epsilon": true}]}',
    "entry not an object": b'{"format": "privprep-ledger/1", "dataset": {"fingerprints": []}, "entries": [1]}',
    "fingerprints not a list": b'{"format": "privprep-ledger/1", "dataset": {"fingerprints": "x"}, "entries": []}',
    "not UTF-8": b'{"format": "privprep-ledger/1", "x": "\xff", "dataset": {"fingerprints": []}, "entries": []}',
    "deeply nested": b'{"format": "privprep-ledger/1", "dataset": {"fingerprints": []}, "entries": [], "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
}


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_a_damaged_ledger_is_a_clear_error_never_an_empty_ledger(workspace, cli, case) -> None:
    ledger = workspace.root / "ledgers" / "patients.json"
    ledger.parent.mkdir(exist_ok=True)
    ledger.write_bytes(DAMAGED[case])
    result = cli("run", _dp_config(workspace, ledger, 0.3, workspace.out), "--quiet")
    assert_clean_failure(result, (1, 2), str(ledger))
    assert ledger.read_bytes() == DAMAGED[case]
    assert_nothing_written(workspace.root, workspace.out)
    tally("ledger", f"damaged ledger refused (exit {result.code})")


def test_a_ledger_that_is_a_directory_is_a_clear_error(workspace, cli) -> None:
    ledger = workspace.root / "ledgers" / "patients.json"
    ledger.mkdir(parents=True)
    result = cli("run", _dp_config(workspace, ledger, 0.3, workspace.out), "--quiet")
    assert_clean_failure(result, (2,), str(ledger), "directory")
    assert_nothing_written(workspace.root, workspace.out)
