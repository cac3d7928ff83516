"""``privprep sweep`` (issue 17): settings from the strongest privacy to the weakest, one pass 1, a
scratch ledger, attack rates within 1/k, DP errors against exact values computed here with pandas,
early stopping, and ``sweep.html`` rendered by headless Chromium."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from privprep.pipeline.reports.plots import available
from tests.pipeline.risk.test_attack import HIERARCHIES, QIS, population
from tests.pipeline.reports.test_html_report import browse, console_errors

BOUNDS = [0, 200_000]


def write_config(root: Path, *, train: bool = False, seed: int | None = 3, dp: bool = True) -> Path:
    if train:
        from privprep.pipeline.files.sample import write_sample

        write_sample(400, root, seed=1)
        data = root / "patients.parquet"
        columns = yaml.safe_load((Path(__file__).resolve().parents[3] / "sample_data" / "pipeline.yaml").read_text())["columns"]
        stages = [{"drop": {"columns": ["patient_id", "name", "email", "phone", "national_id", "diagnosis", "income"]}},
                  {"train": {"model": "cnn", "image": "image", "label": "label", "target_epsilon": 1.0, "epochs": 2,
                             "batch_size": 64, "seed": 0}}]
    else:
        frame = population()
        frame["income"] = np.random.default_rng(0).integers(0, BOUNDS[1], len(frame))
        data = root / "population.parquet"
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), data)
        columns = {"row_id": {"role": "insensitive"}, "name": {"role": "identifier"}, "age": {"role": "quasi_identifier"},
                   "zip": {"role": "quasi_identifier"}, "sex": {"role": "quasi_identifier"}, "diagnosis": {"role": "sensitive"},
                   "income": {"role": "sensitive", "bounds": BOUNDS}}
        stages = [{"drop": {"columns": ["name"]}},
                  {"k_anonymity": {"k": 5, "suppression_limit": 0.05, "hierarchies": HIERARCHIES}}]
        if dp:
            stages.append({"dp_stats": {"epsilon": 1.0, "seed": seed, "queries": [
                {"column": "income", "stat": "mean"}, {"column": "income", "stat": "count"}]}})
    config = {"version": 1, "input": str(data), "output": str(root / "out" / "run"), "columns": columns, "stages": stages}
    if train or dp:
        config["budget"] = {"epsilon": 2.0, "delta": 1e-3, "ledger": str(root / "real-ledger.json")}
    path = root / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from privprep.pipeline.cli import main

    root = tmp_path_factory.mktemp("sweep")
    config = write_config(root)
    assert main(["sweep", str(config), "--k", "2,5,10,20", "--epsilon", "0.1,0.5,1,3", "--out", str(root / "sweep"), "-q"]) == 0
    return root


def test_the_k_axis_runs_strongest_first_and_the_attack_stays_within_one_over_k(swept: Path) -> None:
    doc = json.loads((swept / "sweep" / "sweep.json").read_text())
    assert [r["k"] for r in doc["k"]] == [20, 10, 5, 2]
    frame = pq.read_table(swept / "population.parquet").to_pandas()
    losses = []
    for row in doc["k"]:
        run = swept / "sweep" / row["run"]
        released = pq.read_table(run / "data").to_pandas()
        classes = released.groupby(QIS, dropna=False).size()
        assert classes.min() >= row["k"] and row["achieved_k"] == classes.min()
        assert row["suppressed_rows"] == len(frame) - len(released)
        attack = row["attack"]
        assert attack["auxiliary_records"] == len(frame) and attack["unlinked"] == row["suppressed_rows"]
        assert attack["reidentification_rate"] <= 1 / row["k"] and attack["expected_reidentification_rate"] <= 1 / row["k"]
        assert attack["expected_reidentification_rate"] == pytest.approx(len(classes) / len(frame))
        losses.append(row["information_loss"])
    assert losses == sorted(losses, reverse=True)  # a larger k never costs less information
    raw = doc["attack"]["raw_input"]  # the attack is no no-op: on the input itself it re-identifies the unique records
    sizes = frame.groupby(QIS, dropna=False)["row_id"].transform("size")
    assert raw["reidentification_rate"] == pytest.approx(float((sizes == 1).mean())) and raw["reidentification_rate"] > 0.5


def test_the_epsilon_axis_measures_dp_errors_against_the_exact_values(swept: Path) -> None:
    doc = json.loads((swept / "sweep" / "sweep.json").read_text())
    assert [r["epsilon"] for r in doc["epsilon"]] == [0.1, 0.5, 1.0, 3.0]
    for row in doc["epsilon"]:
        queries = {(q["column"], q["stat"]): q for q in row["dp_stats"]["queries"]}
        assert set(queries) == {("income", "mean"), ("income", "count")}
        assert row["dp_stats"]["max_relative_error"] == max(q["max_relative_error"] for q in queries.values())
    # the errors shrink as epsilon grows (seeded noise; 40x the epsilon)
    assert doc["epsilon"][-1]["dp_stats"]["max_relative_error"] < doc["epsilon"][0]["dp_stats"]["max_relative_error"]


def test_exact_values_match_pandas() -> None:
    from privprep.pipeline.sweeps.sweep_dp import exact_values
    from privprep.transforms.dp import DpStats, SpendLog

    frame = population()
    income = np.random.default_rng(0).integers(-1000, 250_000, len(frame)).astype(float)
    stage = DpStats(epsilon=1.0, queries=[{"column": "income", "stat": "mean"}, {"column": "income", "stat": "count"},
                                          {"column": "income", "stat": "sum"}],
                    columns={"income": {"role": "sensitive", "bounds": BOUNDS}}, seed=0)
    stage.observe(pa.table({"income": income}))
    stage.release(SpendLog(epsilon=1.0))
    clipped = pd.Series(income).clip(*BOUNDS)
    mean, count, total = (e["value"] for e in exact_values(stage))
    assert mean == pytest.approx(clipped.mean()) and count == len(income) and total == pytest.approx(clipped.sum())


def test_dp_spends_from_a_scratch_ledger_never_the_datasets(swept: Path) -> None:
    doc = json.loads((swept / "sweep" / "sweep.json").read_text())
    assert doc["ledger"]["scratch"] is True and "scratch" in doc["ledger"]["note"]
    assert not (swept / "real-ledger.json").exists()
    scratch = json.loads((swept / "sweep" / "scratch-ledger.json").read_text())
    assert sum(e["epsilon"] for e in scratch["entries"]) == pytest.approx(0.1 + 0.5 + 1 + 3)
    assert "exact" in doc["exact_values_note"]


def test_max_error_stops_at_the_cheapest_epsilon_that_meets_it(swept: Path, tmp_path: Path, cli) -> None:
    full = json.loads((swept / "sweep" / "sweep.json").read_text())["epsilon"]
    errors = [r["dp_stats"]["max_relative_error"] for r in full]
    limit = (errors[1] + errors[2]) / 2 if errors[1] > errors[2] else errors[1] * 1.0001  # met first at index 2 (or 1)
    first = next(i for i, e in enumerate(errors) if e <= limit)
    result = cli("sweep", swept / "pipeline.yaml", "--k", "5", "--epsilon", "0.1,0.5,1,3", "--max-error", limit,
                 "--out", tmp_path / "early", "-q")
    assert result.code == 0, result.err
    doc = json.loads((tmp_path / "early" / "sweep.json").read_text())
    assert doc["cheapest"]["epsilon"] == [0.1, 0.5, 1.0, 3.0][first]
    assert [r["status"] for r in doc["epsilon"]] == ["ok"] * (first + 1) + ["skipped"] * (3 - first)
    scratch = json.loads((tmp_path / "early" / "scratch-ledger.json").read_text())
    assert sum(e["epsilon"] for e in scratch["entries"]) == pytest.approx(sum([0.1, 0.5, 1.0, 3.0][: first + 1]))
    never = cli("sweep", swept / "pipeline.yaml", "--k", "5", "--epsilon", "0.1,0.5", "--max-error", 1e-12, "--out", tmp_path / "never", "-q")
    assert never.code == 0 and json.loads((tmp_path / "never" / "sweep.json").read_text())["cheapest"] is None


def test_training_accuracy_by_epsilon_and_target_accuracy(tmp_path: Path, cli) -> None:
    import torch

    torch.set_num_threads(1)
    config = write_config(tmp_path, train=True)
    result = cli("sweep", config, "--epsilon", "0.5,3", "--target-accuracy", 0.01, "--out", tmp_path / "sweep", "-q")
    assert result.code == 0, result.err
    doc = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    first, second = doc["epsilon"]
    assert first["status"] == "ok" and 0 <= first["train"]["accuracy"] <= 1 and first["train"]["epsilon"] <= 0.5 + 0.01
    assert second["status"] == "skipped" and doc["cheapest"] == {"epsilon": 0.5, "target_accuracy": first["train"]["accuracy"]}
    assert doc["k"] == [] and not (tmp_path / "real-ledger.json").exists()


def test_an_axis_the_config_lacks_is_left_out(tmp_path: Path, cli) -> None:
    no_dp = write_config(tmp_path, dp=False)
    result = cli("sweep", no_dp, "--k", "5", "--epsilon", "0.1,1", "--out", tmp_path / "s", "-q")
    assert result.code == 0, result.err
    doc = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert [r["k"] for r in doc["k"]] == [5] and doc["epsilon"] == [] and doc["exact_values_note"] is None
    assert not (tmp_path / "s" / "scratch-ledger.json").exists()  # nothing was spent


def test_bad_input_exits_2_with_one_line(swept: Path, tmp_path: Path, cli) -> None:
    config = swept / "pipeline.yaml"
    for args, needle in [
        ((config, "--k", "2,x"), "--k takes"),
        ((config, "--epsilon", "0,1"), "positive"),
        ((config, "--target-accuracy", "0.9"), "needs a train stage"),
        ((config, "--out", swept / "sweep"), "already exists"),
    ]:
        result = cli("sweep", *args, "-q")
        assert result.code == 2 and needle in result.err, (args, result.err)
        assert len(result.err.strip().splitlines()) == 1


SWEEP_PLOTS = ["sweep-k-utility", "sweep-k-attack", "sweep-epsilon"]


@pytest.mark.skipif(not available(), reason="plots need the report extra: pip install 'privprep[report]'")
def test_sweep_page_is_self_contained_with_every_plot(swept: Path) -> None:
    page = (swept / "sweep" / "sweep.html").read_text()
    assert sorted(re.findall(r"data-plot='([^']+)'", page)) == sorted(SWEEP_PLOTS)
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org", "")
    assert "https://" not in page
    frame = pq.read_table(swept / "population.parquet").to_pandas()
    for value in frame["zip"].unique():
        assert value not in page


@pytest.mark.skipif(not available(), reason="plots need the report extra: pip install 'privprep[report]'")
@pytest.mark.slow
def test_chromium_renders_the_sweep_page_offline(swept: Path, tmp_path: Path) -> None:
    page = swept / "sweep" / "sweep.html"
    dom = browse(page, tmp_path / "profile-dom", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert not console_errors(dom.stderr), console_errors(dom.stderr)
    assert re.findall(r"<h2>(.*?)</h2>", dom.stdout, re.S)[0] == "Summary"
    assert sorted(re.findall(r'data-plot="([^"]+)"', dom.stdout)) == sorted(SWEEP_PLOTS)
    assert dom.stdout.count("<svg") == len(SWEEP_PLOTS)
    shot = swept / "sweep" / "sweep.png"  # kept with the test's sweep directory, for people to look at
    result = browse(page, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1280,2600", "--hide-scrollbars")
    assert result.returncode == 0 and shot.stat().st_size > 50_000, result.stderr[-2000:]
    assert not console_errors(result.stderr), console_errors(result.stderr)


def test_one_first_pass_feeds_every_setting(tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from privprep.pipeline.engines.engine import StreamingEngine

    calls: list[int] = []
    real = StreamingEngine.observe

    def counting(self, plan, observers, columns, progress, seconds):  # type: ignore[no-untyped-def]
        calls.append(len(observers))
        return real(self, plan, observers, columns, progress, seconds)

    monkeypatch.setattr(StreamingEngine, "observe", counting)
    config = write_config(tmp_path)
    assert cli("sweep", config, "--k", "2,5,10", "--epsilon", "0.5,1", "--out", tmp_path / "s", "-q").code == 0
    assert calls == [3 + 2]  # one pass: a k_anonymity stage per k and a dp_stats stage per epsilon


def test_a_sweep_run_can_be_attacked_with_privprep_attack(swept: Path, cli) -> None:
    doc = json.loads((swept / "sweep" / "sweep.json").read_text())
    row = next(r for r in doc["k"] if r["k"] == 5)
    result = cli("attack", swept / "sweep" / row["run"], "--auxiliary", swept / "population.parquet", "--on", ",".join(QIS),
                 "--truth", "row_id", "--json")
    assert result.code == 0, result.err
    attack = json.loads(result.out)
    assert attack["reidentified_correctly"] == row["attack"]["reidentified_correctly"] == 0
    assert attack["expected_reidentification_rate"] == pytest.approx(row["attack"]["expected_reidentification_rate"])


@pytest.mark.skipif(not available(), reason="plots need the report extra: pip install 'privprep[report]'")
def test_the_docs_figure_and_tables_come_from_a_sweep_document(swept: Path) -> None:
    from privprep.pipeline.reports.plots_sweep import overview
    from privprep.pipeline.sweeps.sweep_docs import markdown

    doc = json.loads((swept / "sweep" / "sweep.json").read_text())
    svg = overview(doc)
    assert svg is not None and svg.startswith("<svg") and 'id="sweep-overview-' in svg
    table = markdown(doc)
    assert table.count("\n| 20 |") == 1 and "| raw input |" in table and "| 0.1 |" in table
    committed = (Path(__file__).resolve().parents[3] / "docs" / "choosing-k-epsilon.svg").read_text()
    assert 'id="sweep-overview-' in committed  # drawn by python -m privprep.pipeline.sweeps.sweep_docs, not by hand
