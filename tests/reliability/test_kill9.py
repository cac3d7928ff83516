"""kill -9 at random points of a run (issue 16): a run killed anywhere leaves no run directory,
report.json or data/ where a successful run would be (or, killed after its commit, a complete run);
an earlier run kept intact under --overwrite; the ledger valid JSON; the leftover temporary folder
removed by the next run. Runs are forked from a warm process (imports done once) and SIGKILLed after
a random delay, so many trials fit in seconds."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import tree_digest
from tests.reliability.support import patients, tally

ZYGOTE = textwrap.dedent('''
    import json, os, signal, sys, time
    from privprep.pipeline.cli import main
    import privprep.pipeline.engines.runner, privprep.transforms.k_anonymity, privprep.transforms.dp  # warm imports only
    print("ready", flush=True)
    for line in sys.stdin:
        order = json.loads(line)
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os._exit(main(order["argv"]))
        if order["delay"] is not None:
            time.sleep(order["delay"])
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"killed": os.WIFSIGNALED(status), "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                          "seconds": time.perf_counter() - started}), flush=True)
''')


class Zygote:
    def __init__(self, cwd: Path) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, cwd=cwd)
        assert self.process.stdout is not None and self.process.stdout.readline().strip() == "ready"

    def run(self, argv: list[str], delay: float | None) -> dict:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"argv": [str(a) for a in argv], "delay": delay}) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


def assert_complete_run(run_dir: Path) -> None:
    """A run directory that exists is whole: its report, every part it lists with the rows it says."""
    report = json.loads((run_dir / "report.json").read_text())
    assert report["status"] == "success"
    parts = sorted((run_dir / "data").glob("*.parquet"))
    assert sum(pq.read_metadata(p).num_rows for p in parts) == report["output"]["rows"]
    assert (run_dir / "report.html").is_file()


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if "privprep-tmp" in p.name or "privprep-old" in p.name)


@pytest.mark.report_unchecked  # killed runs' directories are checked here, by assert_complete_run
def test_kill_9_at_random_points_leaves_nothing_partial(workspace, tmp_path: Path) -> None:
    source = tmp_path / "big.parquet"
    pq.write_table(patients(8_000, seed=1), source, row_group_size=1_000)
    config = workspace.config(
        input=str(source),
        stages=[
            {"pseudonymize": {"columns": ["patient_id"], "domain": "patients"}},
            {"drop": {"columns": ["name"]}},
            {"k_anonymity": {"k": 5, "hierarchies": {"zip": {"mask": {"char": "*"}}, "age": {"interval": {"widths": [10, 20]}}}}},
            {"encrypt": {"columns": ["diagnosis"]}},
        ],
        io={"batch_rows": 1_000, "rows_per_file": 1_000},
    )
    input_digest = tree_digest(source)
    zygote = Zygote(tmp_path)
    try:
        target = tmp_path / "kept"
        first = zygote.run(["run", config, "--output", target, "--quiet"], None)
        assert first["code"] == 0, first
        duration = first["seconds"]
        assert_complete_run(target)
        kept = tree_digest(target)
        rng = random.Random(16)
        outcomes = {"fresh: nothing": 0, "fresh: complete": 0, "overwrite: earlier kept": 0, "overwrite: replaced": 0}
        deadline = time.monotonic() + 25
        trials = 0
        while trials < 12 and time.monotonic() < deadline:
            delay = rng.uniform(0.0, duration * 1.25)
            if trials % 2 == 0:  # a fresh output: nothing there unless the run got through its commit
                fresh = tmp_path / f"fresh-{trials}"
                result = zygote.run(["run", config, "--output", fresh, "--quiet"], delay)
                if fresh.exists():
                    assert_complete_run(fresh)
                    outcomes["fresh: complete"] += 1
                else:
                    assert result["killed"], result
                    outcomes["fresh: nothing"] += 1
            else:  # over an earlier successful run, with --overwrite
                result = zygote.run(["run", config, "--output", target, "--overwrite", "--quiet"], delay)
                assert target.is_dir(), f"the earlier run is gone after a kill at {delay:.3f} s"
                assert_complete_run(target)
                now = tree_digest(target)
                if now == kept:
                    outcomes["overwrite: earlier kept"] += 1
                else:
                    assert (target / "report.json").is_file()
                    outcomes["overwrite: replaced"] += 1
                    kept = now
            assert tree_digest(source) == input_digest
            trials += 1
        print(f"run {duration:.2f} s; {trials} kills: {outcomes}")
        tally("kill -9", "trials", trials)
        tally("kill -9", "partial outputs", 0)
        assert outcomes["fresh: nothing"] + outcomes["overwrite: earlier kept"] >= 2, outcomes  # some kills landed mid-run
        # the next run cleans what the killed runs left beside their targets
        assert zygote.run(["run", config, "--output", target, "--overwrite", "--quiet"], None)["code"] == 0
        assert not any(name.startswith(".kept.") for name in leftovers(tmp_path)), leftovers(tmp_path)
        for index in range(0, trials, 2):
            fresh = tmp_path / f"fresh-{index}"
            if not fresh.exists():
                assert zygote.run(["run", config, "--output", fresh, "--quiet"], None)["code"] == 0
                assert_complete_run(fresh)
        assert leftovers(tmp_path) == [], leftovers(tmp_path)
    finally:
        zygote.close()


def test_leftovers_of_a_live_run_are_not_removed(tmp_path: Path) -> None:
    """The next run removes only the temporary directories that no live run holds."""
    from privprep.pipeline.files.rundir import RunDirectory, clean_leftovers

    target = tmp_path / "out"
    stale = tmp_path / ".out.privprep-tmp-deadbeef"
    (stale / "data").mkdir(parents=True)
    with RunDirectory(target) as live:  # entering removed the stale one
        assert not stale.exists()
        assert clean_leftovers(target) == [] and live.path.is_dir()  # the live one is held
    assert not live.path.exists()


@pytest.mark.report_unchecked
def test_an_earlier_run_set_aside_by_a_killed_commit_is_put_back(tmp_path: Path) -> None:
    from privprep.pipeline.files.rundir import clean_leftovers

    aside = tmp_path / ".out.privprep-old-0123abcd"
    aside.mkdir()
    (aside / "report.json").write_text("{}")
    clean_leftovers(tmp_path / "out")
    assert (tmp_path / "out" / "report.json").is_file() and not aside.exists()
