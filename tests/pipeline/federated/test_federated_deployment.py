"""Optional smoke test of the Deployment Engine on 127.0.0.1: a SuperLink, three SuperNodes (one per site,
each prepared with ``privprep federate prepare``) and ``flwr run`` of the privprep Flower app.

Slow (Flower starts a Python process per message: about a minute on 2 cores), so it runs only with
``PRIVPREP_FEDERATED_DEPLOYMENT=1``. Every process runs in its own session and is killed by process group.
``flwr run`` returns once the run is submitted (and exits 0 even when the run later fails), so the test
waits for the ServerApp's model card and checks it."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from privprep.pipeline.cli import main
from privprep.pipeline.files.sample import write_sample

from .test_federated import COLUMNS

pytestmark = [
    pytest.mark.skipif(os.environ.get("PRIVPREP_FEDERATED_DEPLOYMENT") != "1",
                       reason="slow; set PRIVPREP_FEDERATED_DEPLOYMENT=1 to run the Deployment Engine smoke test"),
    pytest.mark.skipif(importlib.util.find_spec("flwr") is None, reason="needs flwr: pip install 'privprep[federated]'"),
]
BIN = Path(sys.executable).parent
SITES, ROUNDS = 3, 2

APP_PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "privprep-fedavg"
version = "1.0.0"
description = "privprep's FedAvg with DP-SGD at every site"
# privprep, torch and flwr are installed on every machine beforehand: none is declared here, so the SuperLink
# installs nothing (and never a CUDA torch) before a run
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "privprep"

[tool.flwr.app.components]
serverapp = "privprep.pipeline.federated.app:server_app"
clientapp = "privprep.pipeline.federated.app:client_app"

[tool.flwr.app.config]
sites = 3
rounds = 2
local-epochs = 1
target-epsilon = 3.0
batch-size = 40
learning-rate = 1.0
max-grad-norm = 1.0
accountant = "rdp"
image-shape = "1,8,8"
classes = 10
seed = 0
output = "model"
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_three_sites_train_on_the_deployment_engine(tmp_path: Path) -> None:
    write_sample(360, tmp_path / "all")
    table = pq.read_table(tmp_path / "all")
    sites = []
    for i in range(SITES):
        folder = tmp_path / f"site-{i}"
        folder.mkdir()
        pq.write_table(table.slice(i * 120, 120), folder / "input.parquet")
        config = {
            "version": 1, "input": "input.parquet", "output": "run",
            "budget": {"epsilon": 5.0, "delta": 1e-3, "ledger": "ledger.json"}, "columns": COLUMNS,
            "stages": [{"drop": {"columns": ["patient_id", "name", "email", "phone", "national_id"]}},
                       {"train": {"model": "cnn", "image": "image", "label": "label", "target_epsilon": 3.0, "accountant": "rdp"}}],
        }
        (folder / "site.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        assert main(["federate", "prepare", str(folder / "site.yaml"), "--name", f"site-{i}", "--quiet"]) == 0
        sites.append(folder)

    app = tmp_path / "app"
    app.mkdir()
    output = tmp_path / "global-model"
    (app / "pyproject.toml").write_text(APP_PYPROJECT.replace('output = "model"', f'output = "{output}"'))
    link = _port()  # Flower 1.41: the SuperLink serves the Fleet, Control and Runtime APIs over HTTP on one port
    home = tmp_path / "flwr-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "smoke"\n\n[superlink.smoke]\naddress = "127.0.0.1:{link}"\ninsecure = true\n')
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}
    logs = tmp_path / "logs"
    logs.mkdir()
    processes: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> None:
        with open(logs / f"{name}.log", "w") as log:
            processes.append(subprocess.Popen([str(BIN / args[0]), *args[1:]], env=env, stdout=log, stderr=subprocess.STDOUT,
                                              start_new_session=True, cwd=tmp_path))

    try:
        start("superlink", "flower-superlink", "--insecure", "--disable-runtime-dependency-installation",
              "--host", "127.0.0.1", "--port", str(link))
        _wait_for_port(link, processes, logs)
        for i, folder in enumerate(sites):
            start(f"supernode-{i}", "flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{link}",
                  "--node-config", f"site-dir='{folder / 'run'}' partition-id={i}", "--port", str(_port()))
        time.sleep(5)
        submitted = subprocess.run([str(BIN / "flwr"), "run", str(app), "smoke"], env=env, capture_output=True, text=True,
                                   timeout=120, cwd=tmp_path)
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        card_path = output / "model_card.json"
        deadline = time.monotonic() + 300
        while not card_path.exists() and time.monotonic() < deadline:
            assert all(p.poll() is None for p in processes), _tail(logs)
            time.sleep(2)
        assert card_path.exists(), "the ServerApp wrote no model within 300 s\n" + _tail(logs)
        card = json.loads(card_path.read_text())
        assert card["rounds"] == ROUNDS and card["engine"] == "flower-deployment" and len(card["sites"]) == SITES
        for i, site in enumerate(card["sites"]):
            assert 2.9 <= site["epsilon"] <= 3.0 and site["rounds"] == ROUNDS
            ledger = json.loads((sites[i] / "ledger.json").read_text())
            assert [e["kind"] for e in ledger["entries"]] == ["train"]
            assert ledger["entries"][0]["epsilon"] == pytest.approx(site["epsilon"], rel=1e-9)
    finally:
        for process in processes:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def _wait_for_port(port: int, processes: list[subprocess.Popen], logs: Path, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert all(p.poll() is None for p in processes), _tail(logs)
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {seconds} s\n" + _tail(logs))


def _tail(logs: Path) -> str:
    return "\n".join(f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-15:]) for p in sorted(logs.glob("*.log")))
