"""Shared checks of the reliability suite: a failure is one clear line, the SPEC's exit code, no
traceback, nothing written and the input untouched."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa

ERROR_PREFIX = "privprep: error:"
#: What the suite saw, by family and outcome (printed at the end of a pytest run by conftest.py).
TALLY: Counter[tuple[str, str]] = Counter()


def tally(family: str, outcome: str, count: int = 1) -> None:
    TALLY[(family, outcome)] += count


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(ERROR_PREFIX)]


def assert_clean_failure(result: Any, codes: tuple[int, ...], *needles: str) -> str:
    """``result`` (a CliResult) failed with an exit code in ``codes`` and one error line holding every needle;
    returns that line."""
    if result.code not in codes or "Traceback" in result.err or "internal error" in result.err:
        tally("any", "traceback or internal error")
    assert result.code in codes, f"exit {result.code}: {result.err[-2000:]}"
    assert "Traceback" not in result.err and "internal error" not in result.err, result.err[-2000:]
    lines = error_lines(result.err)
    assert len(lines) == 1, result.err[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def assert_nothing_written(root: Path, *outputs: Path) -> None:
    """No run directory at ``outputs`` and no temporary run folder left anywhere under ``root``."""
    for output in outputs:
        assert not output.exists(), f"{output} exists after a failed run"
    leftovers = [str(p) for p in root.rglob("*") if "privprep-tmp" in p.name or "privprep-old" in p.name]
    assert leftovers == [], leftovers


def patients(rows: int, *, seed: int = 0) -> pa.Table:
    """``rows`` rows with the columns of tests/conftest.py's COLUMNS, few distinct quasi-identifiers."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return pa.table({
        "patient_id": [f"P{i}" for i in range(rows)],
        "name": [f"N{i}" for i in range(rows)],
        "zip": [f"1000{int(v)}" for v in rng.integers(0, 3, rows)],
        "age": pa.array(rng.integers(20, 60, rows), pa.int64()),
        "diagnosis": [["flu", "cold", "asthma"][int(v)] for v in rng.integers(0, 3, rows)],
        "income": pa.array(rng.integers(0, 100_000, rows), pa.int64()),
    })


def forkserver() -> Any:
    """A multiprocessing context whose processes fork from a server that imported privprep once, so a
    process starts in milliseconds (and not from pytest's own, threaded, process)."""
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["privprep.pipeline.cli", "privprep.pipeline.engines.runner", "privprep.pipeline.budget.ledger",
                                    "privprep.transforms.dp", "diffprivlib", "tests.reliability.support"])
    return context


def run_cli_to_files(argv: list[str], err_path: str) -> None:
    """Process target: run the CLI with stderr into ``err_path``; the exit code is the process's."""
    import os
    import sys

    from privprep.pipeline.cli import main

    with open(err_path, "w") as err:
        os.dup2(err.fileno(), 2)
        sys.stderr = err
        code = main(argv)
        err.flush()
    os._exit(code)


def spend_until_refused(name: str, base: str, start: float, step: float, limit: float, tag: int, confirm: Any) -> None:
    """Process target: spend ``step`` from the ledger ``name`` (resolved against ``base``) from time
    ``start`` until refused, sending each confirmed count through ``confirm``."""
    import time

    from privprep.pipeline.budget.ledger import Ledger, resolve_ledger_path
    from privprep.schemas.errors import BudgetError

    ledger = Ledger(resolve_ledger_path(name, Path(base)), epsilon=limit, fingerprint="sha256:x")
    while time.time() < start:
        time.sleep(0.001)
    done = 0
    while True:
        try:
            ledger.spend(step, stage=f"p{tag}-{done}", details={"pad": "x" * 2000})
        except BudgetError:
            break
        done += 1
        confirm.send(done)
    confirm.send(-done - 1)  # refused after ``done`` spends
