"""report.html (issue 7): written with every run from report.json alone, rebuilt by ``privprep report``,
self-contained, nothing leaks (canaries in every input column), progress and log lines, and a real
headless Chromium that renders the page with networking off (screenshot kept in the test's run directory)."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from privprep.pipeline.engines.progress import Progress, configure_logging
from privprep.pipeline.reports.html_report import render
from privprep.pipeline.reports.plots import available
from tests.schemas.test_report import decrypt_report, full_report

needs_plots = pytest.mark.skipif(not available(), reason="plots need the report extra: pip install 'privprep[report]'")

CANARIES = {
    "patient_id": "CANARY-PID-7Q3Z", "name": "CANARY-NAME-7Q3Z", "phone": "CANARY-PHONE-7Q3Z", "zip": "ZQXJK",
    "age": 73194628, "diagnosis": "CANARY-DX-7Q3Z", "income": 9876543210, "label": 86753091,
}
COLUMNS = {
    "patient_id": {"role": "identifier"}, "name": {"role": "identifier"}, "phone": {"role": "identifier"},
    "zip": {"role": "quasi_identifier"}, "age": {"role": "quasi_identifier"}, "diagnosis": {"role": "sensitive"},
    "income": {"role": "sensitive", "bounds": [0, 500000]}, "label": {"role": "insensitive", "categories": [0, 1, 2]},
}
STAGES = [
    {"pseudonymize": {"columns": ["patient_id"], "domain": "patients"}},
    {"drop": {"columns": ["name"]}},
    {"mask": {"columns": ["phone"], "keep_last": 2}},
    {"k_anonymity": {"k": 3, "suppression_limit": 0.1, "quasi_identifiers": ["zip", "age"],
                     "hierarchies": {"zip": {"mask": {}}, "age": {"interval": {"widths": [10, 20], "bottom": 0, "top": 100}}}}},
    {"encrypt": {"columns": ["diagnosis"]}},
    {"dp_stats": {"epsilon": 1.0, "queries": [
        {"column": "income", "stat": "mean"}, {"column": "income", "stat": "quantile", "quantiles": [0.25, 0.5, 0.9]},
        {"column": "label", "stat": "histogram"}, {"column": "income", "stat": "count", "by": "label"}]}},
]
PLOTS = ["budget", "timings", "class-sizes", "generalization", "risk", "search", "dp-6-1", "dp-6-2", "dp-6-3", "dp-6-4"]


def canary_table(rows: int = 90) -> pa.Table:
    """Ordinary rows, and a canary value in every column of three of them."""
    data: dict[str, list[Any]] = {
        "patient_id": [f"P{i:04d}" for i in range(rows)], "name": [f"Person {i % 17}" for i in range(rows)],
        "phone": [f"+1-555-{i:04d}" for i in range(rows)], "zip": [f"1000{i % 4}" for i in range(rows)],
        "age": [20 + (i * 7) % 50 for i in range(rows)], "diagnosis": [("flu", "cold", "asthma")[i % 3] for i in range(rows)],
        "income": [20_000 + 1_000 * (i % 60) for i in range(rows)], "label": [i % 3 for i in range(rows)],
    }
    for row in (5, 41, 77):
        for column, value in CANARIES.items():
            data[column][row] = value
    return pa.table(data)


@pytest.fixture
def full_run(workspace, cli) -> Path:
    """A run with every kind of stage that exists today (train runs elsewhere), on the canary input."""
    source = workspace.root / "canaries.parquet"
    pq.write_table(canary_table(), source)
    budget = {"epsilon": 3.0, "ledger": str(workspace.root / "ledgers" / "canaries.json")}
    config = workspace.config(input=str(source), columns=COLUMNS, stages=STAGES, budget=budget)
    result = cli("run", config, "--quiet")
    assert result.code == 0, result.err
    return workspace.out


def _key_material(keyring: Path) -> list[str]:
    found = []
    for entry in json.loads(keyring.read_text())["keys"]:
        material = entry["material"]
        for text in (material if isinstance(material, dict) else {"m": material}).values():
            found += [text, text[:16], base64.b64decode(text).hex()]
    return found


def test_nothing_leaks_from_any_column_or_the_keyring(full_run: Path, workspace) -> None:
    files = [p for p in full_run.rglob("*") if p.is_file() and "data" not in p.relative_to(full_run).parts]
    assert {"report.json", "report.html"} <= {p.name for p in files}
    secrets = [str(v) for v in CANARIES.values()] + _key_material(workspace.keyring)
    for path in files:
        text = path.read_text(encoding="utf-8")
        for secret in secrets:
            assert secret not in text, f"{path.name} holds a cell value or key material"
    data = pq.read_table(full_run / "data").to_pylist()
    assert any(row["phone"].endswith("3Z") for row in data if row["phone"])  # the canaries were in the run's data


@needs_plots
def test_every_run_writes_a_self_contained_page_with_every_section_and_plot(full_run: Path) -> None:
    page = (full_run / "report.html").read_text(encoding="utf-8")
    report = json.loads((full_run / "report.json").read_text())
    assert "<section id='summary'>" in page and "Privacy guarantees achieved" in page
    for index, stage in enumerate(report["stages"], start=1):
        assert f"<section class='stage' id='stage-{index}'>" in page and f"{stage['name']} <span class='badge'>" in page
    for name in PLOTS:
        assert f"data-plot='{name}'" in page, name
    assert_self_contained(page)


def assert_self_contained(page: str) -> None:
    """No script, no loaded resource: every URL in the page is an XML namespace name."""
    assert not re.search(r"<script|<link|<img|<iframe|<object|<embed|@import|@font-face|url\((?!#)", page, re.I)
    assert not re.search(r"\s(?:src|srcset|action|formaction)=", page, re.I)
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", page))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink", "https://privprep.dev/schemas/report.schema.json"}
    assert "default-src 'none'" in page  # and the page forbids loading anything anyway


def test_privprep_report_rebuilds_the_page_from_report_json_only(full_run: Path, cli) -> None:
    (full_run / "report.html").unlink()
    report = json.loads((full_run / "report.json").read_text())
    report["stages"][3]["equivalence_classes"] = 424242  # the page shows what report.json says
    (full_run / "report.json").write_text(json.dumps(report))
    result = cli("report", full_run)
    assert result.code == 0 and "report.html" in result.err
    assert "424,242" in (full_run / "report.html").read_text()


def test_privprep_report_refuses_what_is_not_a_valid_run(tmp_path: Path, cli) -> None:
    result = cli("report", tmp_path)
    assert result.code == 2 and "not a privprep run directory" in result.err
    (tmp_path / "report.json").write_text("{not json")
    assert cli("report", tmp_path).code == 2
    broken = full_report()
    del broken["stages"][2]["risk_after"]
    (tmp_path / "report.json").write_text(json.dumps(broken))
    result = cli("report", tmp_path)
    assert result.code == 2 and "stages.2.k_anonymity.risk_after: Field required" in result.err
    (tmp_path / "report.json").unlink()  # not a report the suite's schema hook should check


@needs_plots
def test_train_curve_and_budget_by_stage_are_drawn_from_the_report() -> None:
    page = render(full_report(), plots=True)
    for name in ("training", "budget", "class-sizes", "generalization", "risk", "search", "dp-5-1", "dp-5-4"):
        assert f"data-plot='{name}'" in page, name
    assert "6. train: ε 2" in page and "earlier runs: ε 0.5" in page  # budget bar: spent by stage, then what is left
    assert "81.0%" in page and "(ε, δ)-differential privacy" in page
    assert_self_contained(page)


@needs_plots
def test_what_the_report_lacks_is_skipped_cleanly() -> None:
    document = full_report()
    train = document["stages"][5]
    del train["history"]
    document["stages"][2].pop("class_sizes_before")
    document["stages"][2].pop("class_sizes_after")
    del document["budget"]
    page = render(document, plots=True)
    assert "data-plot='training'" not in page and "data-plot='budget'" not in page
    assert "data-plot='class-sizes'" not in page and "data-plot='risk'" in page
    assert "This report holds no budget section." in page


def test_without_matplotlib_the_page_says_how_to_get_the_plots() -> None:
    page = render(full_report(), plots=False)
    assert "<svg" not in page and "pip install &#x27;privprep[report]&#x27;" in page
    assert "Released values" in page and "Generalization" in page  # the tables are all there


def test_a_decrypt_run_gets_its_page_too() -> None:
    page = render(decrypt_report(), plots=False)
    assert "privprep decrypt report" in page and "<li class='none'><b>Protection removed</b>: <code>dx</code> decrypted" in page


def test_text_from_the_report_is_escaped() -> None:
    document = full_report()
    document["stages"][0]["columns"] = ["<b onmouseover=x>id</b>"]
    document["warnings"] = ["<script>alert(1)</script>"]
    page = render(document, plots=False)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<b onmouseover" not in page


# -- progress and log lines ------------------------------------------------------------------------------------


def test_plain_log_lines_without_a_terminal(caplog) -> None:
    caplog.set_level(logging.INFO, logger="privprep")
    progress = Progress(terminal=False, log_every=0.0)
    with progress.task("writing", 200) as advance:
        advance(100)
        advance(100)
    with progress.step("stages[3].k_anonymity: deciding"):
        pass
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "writing ..." and "writing: 100 of 200 rows (50%)" in lines and lines[3].startswith("writing done in")
    assert lines[-1].startswith("stages[3].k_anonymity: deciding done in")


def test_rich_bars_on_a_terminal() -> None:
    from rich.console import Console

    out = io.StringIO()
    progress = Progress(terminal=True, console=Console(file=out, force_terminal=True, width=100))
    with progress.task("observing", 10) as advance:
        advance(10)
    with progress.step("stages[5].dp_stats: releasing"):
        pass
    assert "observing" in out.getvalue() and "releasing" in out.getvalue()
    assert Progress(quiet=True).quiet


def test_log_format_json_gives_one_object_per_line(full_run: Path, workspace, cli) -> None:
    config = workspace.root / "pipeline.yaml"
    try:
        result = cli("run", config, "--overwrite", "--log-format", "json")
        assert result.code == 0
        events = [json.loads(line) for line in result.err.splitlines()]
        assert {"task_start", "task_done", "step_done", "run_done"} <= {e.get("event") for e in events}
        assert all({"time", "level", "logger", "message"} <= set(e) for e in events)
        done = next(e for e in events if e.get("event") == "run_done")
        assert done["rows"] == json.loads((full_run / "report.json").read_text())["output"]["rows"]
        failed = cli("run", workspace.root / "missing.yaml", "--log-format", "json")
        assert failed.code == 2 and json.loads(failed.err.splitlines()[-1])["level"] == "error"
    finally:
        configure_logging(quiet=True)  # the CLI runs in this process: back to plain lines for the next test
    assert cli("run", config, "--log-format", "xml").code == 2


# -- a real browser ------------------------------------------------------------------------------------------------

BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--host-resolver-rules=MAP * ~NOTFOUND"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)  # type: ignore[return-value]
    pytest.skip("no chromium on this machine: .ci/run installs Debian's chromium with apt-get; here: apt-get install chromium")


def browse(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [chromium(), *BROWSER_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *extra, page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def console_errors(stderr: str) -> list[str]:
    """Console messages and refused loads (the page has no script, so any console line is an error)."""
    return [line for line in stderr.splitlines() if re.search(r"CONSOLE|Refused to|net::ERR_|Uncaught", line)]


@needs_plots
@pytest.mark.slow
@pytest.mark.parametrize("which", ["run", "full"])
def test_chromium_renders_the_page_offline(which: str, full_run: Path, tmp_path: Path, cli) -> None:
    run_dir = full_run
    if which == "full":  # a report with a train stage too, rebuilt with privprep report
        run_dir = tmp_path / "full-run"
        run_dir.mkdir()
        (run_dir / "report.json").write_text(json.dumps(full_report()))
        assert cli("report", run_dir).code == 0
    page = run_dir / "report.html"
    report = json.loads((run_dir / "report.json").read_text())
    dom = browse(page, tmp_path / f"profile-{which}-dom", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert not console_errors(dom.stderr), console_errors(dom.stderr)
    headings = re.findall(r"<h2>(.*?)</h2>", dom.stdout, re.S)
    assert headings[0] == "Summary" and len(headings) == 1 + len(report["stages"])
    for heading, stage in zip(headings[1:], report["stages"]):
        assert f"{stage['name']} <span class=\"badge\">" in heading
    plots = re.findall(r'data-plot="([^"]+)"', dom.stdout)
    expected = PLOTS if which == "run" else ["budget", "timings", "class-sizes", "generalization", "risk", "search",
                                             "dp-5-1", "dp-5-2", "dp-5-3", "dp-5-4", "training"]
    assert sorted(plots) == sorted(expected)
    assert dom.stdout.count("<svg") == len(expected)
    shot = run_dir / "report.png"  # kept with the test's run directory, for people to look at
    result = browse(page, tmp_path / f"profile-{which}-shot", f"--screenshot={shot}", "--window-size=1280,4000", "--hide-scrollbars")
    assert result.returncode == 0 and shot.stat().st_size > 50_000, result.stderr[-2000:]
    assert not console_errors(result.stderr), console_errors(result.stderr)


# -- the page's figures are report.json's (issue 23: "Training rows 2,945" where 2,356 were trained on) -----


class _Figures(HTMLParser):
    """Per ``<section id=...>``: every labelled figure, from key-value tables (th -> td) and KPI cards."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, dict[str, str]] = {}
        self._section = ""
        self._cell: str | None = None
        self._text = ""
        self._label = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "section" and attr.get("id"):
            self._section = attr["id"] or ""
            self.sections.setdefault(self._section, {})
        elif tag in ("th", "td") or (tag == "div" and attr.get("class") in ("label", "value", "note")):
            self._cell, self._text = (attr.get("class") or tag), ""

    def handle_endtag(self, tag: str) -> None:
        if self._cell is None or tag not in ("th", "td", "div"):
            return
        text = " ".join(self._text.split())
        if self._cell in ("th", "label"):
            self._label = text
        elif self._cell in ("td", "value"):
            self.sections[self._section][self._label] = text
        elif self._cell == "note":
            self.sections[self._section][self._label + " (note)"] = text
        self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._text += data


def figures(page: str) -> dict[str, dict[str, str]]:
    parser = _Figures()
    parser.feed(page)
    return parser.sections


def as_number(text: str) -> float:
    return float(text.replace(",", "").rstrip("%"))


def test_the_training_section_shows_rows_trained_on_and_held_out_as_in_report_json() -> None:
    document = full_report()
    train = next(s for s in document["stages"] if s["name"] == "train")
    assert (train["rows"], train["train_rows"], train["holdout_rows"]) == (2945, 2356, 589)  # as the train stage writes them
    index = document["stages"].index(train)
    shown = figures(render(document, plots=False))[f"stage-{index + 1}"]
    assert as_number(shown["Rows trained on"]) == train["train_rows"]
    assert as_number(shown["Rows held out (never trained on)"]) == train["holdout_rows"]
    assert as_number(shown["Rows read (trained on + held out)"]) == train["rows"] == train["train_rows"] + train["holdout_rows"]
    assert "Training rows" not in shown and shown["Accuracy (note)"] == "on 589 held-out rows"
    for label, key in (("ε", "epsilon"), ("δ", "delta"), ("Noise multiplier", "noise_multiplier"), ("Sample rate", "sample_rate"),
                       ("Epochs", "epochs"), ("Steps", "steps"), ("Max gradient norm", "max_grad_norm")):
        assert as_number(shown[label]) == pytest.approx(train[key], rel=1e-3), label
    assert as_number(shown["Accuracy"]) == pytest.approx(100 * train["accuracy"], abs=0.05)
    summary = figures(render(document, plots=False))["summary"]
    assert as_number(summary["Rows in"]) == document["input"]["rows"] and as_number(summary["Rows out"]) == document["output"]["rows"]
