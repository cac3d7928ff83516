"""``privprep federate simulate``: one-line errors that write nothing, then one real 3-site DP run on Flower's
in-process Simulation Engine (skipped without flwr), checked for per-site ledgers and cumulative ε, a model
card and report with an entry per site, nothing left running, and the same weights as the plain-Python
loop of the same algorithm at the same seeds."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from privprep.pipeline.files.sample import write_sample
from privprep.pipeline.keys.keyring import Keyring

from tests.conftest import check_report_file, tree_digest

HAS_FLOWER = all(importlib.util.find_spec(m) is not None for m in ("flwr", "ray", "torch", "opacus"))
ROUNDS, SITES, TARGET = 3, 3, 3.0
COLUMNS = {
    "patient_id": {"role": "identifier"}, "name": {"role": "identifier"}, "email": {"role": "identifier"},
    "phone": {"role": "identifier"}, "national_id": {"role": "identifier"}, "birth_date": {"role": "quasi_identifier"},
    "zip": {"role": "quasi_identifier"}, "sex": {"role": "quasi_identifier"}, "occupation": {"role": "quasi_identifier"},
    "diagnosis": {"role": "sensitive"}, "income": {"role": "sensitive", "bounds": [0, 500000]},
    "image": {"role": "insensitive", "bounds": [0, 16]},
    "label": {"role": "insensitive", "categories": list(range(10))},
}


def write_config(root: Path, *, rows: int = 600, train: dict[str, Any] | None = None, stages: list[Any] | None = None,
                 budget: float = 10.0) -> Path:
    if not (root / "in").exists():
        write_sample(rows, root / "in")
        Keyring.create(root / "keys" / "k.keyring")
    train_params = {"model": "cnn", "image": "image", "label": "label", "target_epsilon": TARGET, "epochs": 6,
                    "batch_size": 40, "accountant": "rdp", **(train or {})}
    document = {
        "version": 1, "input": "in/", "output": "out/", "keyring": "keys/k.keyring",
        "budget": {"epsilon": budget, "delta": 1e-3, "ledger": "ledgers/patients.json"},
        "columns": COLUMNS,
        "stages": stages if stages is not None else [
            {"pseudonymize": {"columns": ["patient_id"], "domain": "patients"}},
            {"drop": {"columns": ["name", "email", "phone", "national_id"]}},
            {"dp_stats": {"epsilon": 0.5, "queries": [{"column": "label", "stat": "histogram"}]}},
            {"train": train_params},
        ],
    }
    path = root / "pipeline.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


# -- errors: one line, the right exit code, nothing written -----------------------------------------------------


@pytest.mark.parametrize(("flags", "code", "message"), [
    (["--sites", "1"], 2, "--sites must be at least 2"),
    (["--sites", "400"], 2, "--sites 400 is more than the input's 600 row(s) allow"),
    (["--sites", "3", "--partition", "shards"], 2, "--partition must be one of iid, label-skew"),
    (["--sites", "3", "--rounds", "0"], 2, "--rounds must be at least 1"),
    (["--sites", "3", "--client-epsilon", "-1"], 2, "--client-epsilon must be a finite number > 0"),
])
def test_bad_flags_fail_with_one_line_and_write_nothing(cli, tmp_path: Path, flags, code, message) -> None:
    config = write_config(tmp_path)
    before = tree_digest(tmp_path / "in")
    result = cli("federate", "simulate", config, *flags, "--quiet")
    assert result.code == code, result.err
    assert result.err.startswith("privprep: error: ") and message in result.err and result.err.count("\n") == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "ledgers").exists()
    assert tree_digest(tmp_path / "in") == before


def test_a_config_without_a_train_stage_is_refused(cli, tmp_path: Path) -> None:
    config = write_config(tmp_path, stages=[{"drop": {"columns": ["patient_id", "name", "email", "phone", "national_id"]}}])
    result = cli("federate", "simulate", config, "--sites", "3", "--quiet")
    assert result.code == 2 and "has no 'train' stage" in result.err and result.err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_label_skew_needs_every_label(cli, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    config = write_config(tmp_path)
    for part in (tmp_path / "in").glob("*.parquet"):
        table = pq.read_table(part)
        labels = pa.array([None] + table.column("label").to_pylist()[1:], pa.int64())
        pq.write_table(table.set_column(table.schema.get_field_index("label"), "label", labels), part)
    result = cli("federate", "simulate", config, "--sites", "3", "--partition", "label-skew", "--quiet")
    assert result.code == 1 and "label column 'label', which has 1 missing label" in result.err
    assert not (tmp_path / "out").exists()


def test_a_site_whose_budget_cannot_afford_training_stops_everything_before_it_starts(cli, tmp_path: Path) -> None:
    config = write_config(tmp_path, budget=3.2)                 # dp_stats 0.5 + train 3.0 > 3.2 at every site
    result = cli("federate", "simulate", config, "--sites", "3", "--quiet")
    assert result.code == 1 and "budget exceeded" in result.err and "patients.site-0.json" in result.err
    assert result.err.count("\n") == 1 and not (tmp_path / "out").exists()
    assert not list(tmp_path.glob("ledgers/*.json"))           # refused before anything was recorded


def test_without_flower_the_error_says_how_to_install_it(cli, tmp_path: Path, monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("flwr", "ray") else real(name, *a))
    result = cli("federate", "simulate", write_config(tmp_path), "--sites", "3", "--quiet")
    assert result.code == 2 and "pip install 'privprep[federated]'" in result.err and result.err.count("\n") == 1
    assert not (tmp_path / "out").exists()


# -- a real run on the Simulation Engine --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Any]:
    if not HAS_FLOWER:
        pytest.skip("needs flwr[simulation], torch and opacus: pip install 'privprep[federated]'")
    import torch

    from privprep.pipeline.cli import main

    root = tmp_path_factory.mktemp("federated")
    config = write_config(root)
    before_input = tree_digest(root / "in")
    children_before = _children()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(["federate", "simulate", str(config), "--sites", str(SITES), "--rounds", str(ROUNDS), "--local-epochs", "2",
                     "--seed", "0", "--quiet"])
    finally:
        torch.set_num_threads(threads)
    return {"root": root, "code": code, "before_input": before_input, "children_before": children_before,
            "children_after": _children()}


def _children() -> set[str]:
    """This process' child processes (pid and command), leaving out the ``ps`` that lists them."""
    out = subprocess.run(["ps", "-o", "pid=,comm=", "--ppid", str(os.getpid())], capture_output=True, text=True).stdout
    return {line.strip() for line in out.splitlines() if line.strip() and line.split()[-1] != "ps"}


def test_the_run_writes_the_global_model_a_card_and_a_report_with_an_entry_per_site(run) -> None:
    root = run["root"]
    assert run["code"] == 0
    out = root / "out"
    report = check_report_file(out / "report.json")
    card = json.loads((out / "model" / "model_card.json").read_text())
    assert report["kind"] == "federated" and [s["site"] for s in report["sites"]] == ["site-0", "site-1", "site-2"]
    assert sum(s["rows"] for s in report["sites"]) == report["output"]["rows"] == 600
    for site in report["sites"]:
        check_report_file(out / site["report"])                    # each site's own sanitization run
        assert site["stages"] == ["pseudonymize", "drop", "dp_stats"]
    entry = report["stages"][0]
    assert entry["name"] == "federated_train" and entry["sites"] == card["sites"]
    assert card["rounds"] == ROUNDS and card["privacy_unit"] == "one training record of one site"
    assert any("which sites took part" in n for n in card["not_hidden"]) and any("how many rows" in n for n in card["not_hidden"])
    for site in card["sites"]:
        assert site["rounds"] == ROUNDS and site["delta"] == 1e-3 and 0 <= site["accuracy"] <= 1
        assert TARGET - 0.05 <= site["epsilon"] <= TARGET
    assert card["accuracy"] > 0.15                                   # learns a little in 3 noisy rounds (chance: 0.1)
    assert tree_digest(root / "in") == run["before_input"]
    assert not any(p.name.startswith(".") for p in root.iterdir() if p.name != ".privprep")  # no temporary directories left


def test_epsilon_is_cumulative_over_rounds_and_recorded_once_per_site_before_training(run) -> None:
    from privprep.transforms.federated.accounting import epsilon_of

    out = run["root"] / "out"
    card = json.loads((out / "model" / "model_card.json").read_text())
    for index, site in enumerate(card["sites"]):
        by_round = site["epsilon_by_round"]
        assert len(by_round) == ROUNDS and all(a < b for a, b in zip(by_round, by_round[1:]))
        steps_per_round = site["steps"] // ROUNDS
        for number, eps in enumerate(by_round, start=1):     # Opacus' RDP over rounds × steps, computed directly
            assert eps == pytest.approx(epsilon_of([(site["noise_multiplier"], site["sample_rate"], number * steps_per_round)],
                                                   site["delta"], "rdp"), rel=1e-9)
        ledger = json.loads((run["root"] / "ledgers" / f"patients.site-{index}.json").read_text())
        assert [(e["kind"], e["stage"]) for e in ledger["entries"]] == [("dp_stats", "stages[2].dp_stats"), ("train", "stages[3].train")]
        assert ledger["entries"][1]["epsilon"] == pytest.approx(site["epsilon"], rel=1e-9)
    assert not (run["root"] / "ledgers" / "patients.json").exists()  # each site spends from its own ledger only


def test_nothing_is_left_running(run) -> None:
    import ray

    assert not ray.is_initialized()
    assert run["children_after"] <= run["children_before"]
    assert not [k for k in ("RAY_TMPDIR", "FLWR_HOME") if os.environ.get(k, "").startswith("/tmp/privprep-flwr-")]


def test_the_plain_loop_of_the_same_algorithm_gives_the_same_model(run) -> None:
    import torch

    from privprep.pipeline.federated.site import SiteSpec, SiteWorker
    from privprep.transforms.federated.loop import federated_loop
    from privprep.transforms.federated.settings import FederatedSettings, round_seed
    from privprep.transforms.train import load_model

    out = run["root"] / "out"
    specs = [SiteSpec.read(out / "sites" / f"site-{i}") for i in range(SITES)]
    sites = [SiteWorker(spec).data(round_seed(0, spec.index, 0)) for spec in specs]
    settings = FederatedSettings(rounds=ROUNDS, local_epochs=2, target_epsilon=TARGET, batch_size=40, accountant="rdp", seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        plain = federated_loop(sites, settings, classes=10)
    finally:
        torch.set_num_threads(threads)
    flower = load_model(out / "model").state_dict()
    for name, value in plain.weights.items():
        np.testing.assert_allclose(flower[name].numpy(), value, rtol=0, atol=1e-6)  # bit-identical in practice
    card = json.loads((out / "model" / "model_card.json").read_text())
    assert [h["accuracy"] for h in card["history"]] == pytest.approx([h["accuracy"] for h in plain.history], abs=1e-9)
    assert [s["epsilon"] for s in card["sites"]] == pytest.approx([a.epsilon() for a in plain.accounts], rel=1e-12)


def test_a_relative_config_path_puts_every_spend_of_a_site_in_one_ledger(tmp_path: Path, monkeypatch) -> None:
    from privprep.pipeline.configs.config import load_config
    from privprep.pipeline.federated.sites import site_config

    write_config(tmp_path / "project")
    monkeypatch.chdir(tmp_path)
    loaded = load_config("project/pipeline.yaml")
    site = site_config(loaded, input=str(tmp_path / "project" / "in"), output=tmp_path / "o", ledger=Path("project/ledgers/x.site-0.json"))
    assert site.config.budget.ledger == str(tmp_path / "project" / "ledgers" / "x.site-0.json")
    assert [entry.tag for entry in site.config.stages] == ["pseudonymize", "drop", "dp_stats"]
