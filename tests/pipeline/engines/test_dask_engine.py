"""The Dask engine gives the streaming engine's output: same rows, pseudonyms, tokens, generalization,
suppression and DP releases; ciphertexts decrypt to the same values. On Dask's synchronous scheduler
and on a 2-worker local cluster."""

from __future__ import annotations

import json
from collections import Counter
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

pytest.importorskip("dask")
pytest.importorskip("distributed")

from privprep.pipeline import api  # noqa: E402
from privprep.pipeline.files.sample import generate_sample  # noqa: E402
from privprep.pipeline.keys.column_encryption import is_encrypted_file, read_table  # noqa: E402
from privprep.pipeline.keys.decrypt import decrypt_run  # noqa: E402
from privprep.pipeline.keys.keyring import Keyring  # noqa: E402
from privprep.transforms.recipient import SEALED_KEY_PREFIX  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[3] / "sample_data"
ENCRYPTED = ("diagnosis",)


@pytest.fixture(scope="session")
def cluster() -> Any:
    """One 2-worker local cluster for the session (process workers, as on a real cluster)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as local:
        yield local


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4,000 sample rows in two files whose row groups make several partitions of unequal size."""
    folder = tmp_path_factory.mktemp("dask-input")
    table = generate_sample(4000, seed=11).drop_columns(["image"])
    pq.write_table(table.slice(0, 2500), folder / "a.parquet", row_group_size=400)
    pq.write_table(table.slice(2500), folder / "b.parquet", row_group_size=700)
    return folder


def config(root: Path, data: Path, out: str, **extra: Any) -> Path:
    """The sample pipeline (without training, DP noise seeded) over ``data``."""
    document = yaml.safe_load((SAMPLE / "pipeline.yaml").read_text())
    keyring = root / "keys" / "run.keyring"
    if not keyring.exists():
        Keyring.create(keyring)
    shutil.copytree(SAMPLE / "hierarchies", root / "hierarchies", dirs_exist_ok=True)
    document.update(input=str(data), output=str(root / out), keyring=str(keyring))
    document["budget"].update(ledger=str(root / f"{out}-ledger.json"))
    document["columns"].pop("image")
    stages = [s for s in document["stages"] if "train" not in s]
    for stage in stages:
        if "k_anonymity" in stage:
            stage["k_anonymity"].update(k=8, suppression_limit=0.05)  # the optimum suppresses some rows
        if "dp_stats" in stage:
            stage["dp_stats"]["seed"] = 5
            stage["dp_stats"]["queries"].append({"column": "income", "stat": "std"})
            stage["dp_stats"]["queries"].append({"column": "income", "stat": "sum", "by": "label"})
    document["stages"] = stages
    document["io"] = {"batch_rows": 300, "partition_rows": 1000, "rows_per_file": 900}
    document.update(extra)
    path = root / f"{out}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def assert_same_output(root: Path, streaming: Path, dask: Path, *, keyring: Path) -> None:
    a, b = pq.read_table(streaming / "data"), pq.read_table(dask / "data")
    assert a.schema.equals(b.schema) and a.num_rows == b.num_rows
    for name in a.column_names:
        if name not in ENCRYPTED:
            assert a.column(name).equals(b.column(name)), name
    clear = [decrypt_run(run, keyring=keyring, columns=list(ENCRYPTED), output=root / f"clear-{run.name}").run_dir
             for run in (streaming, dask)]
    for name in ENCRYPTED:
        assert a.column(name).to_pylist() != b.column(name).to_pylist()  # fresh random nonces
        assert pq.read_table(clear[0] / "data").column(name).equals(pq.read_table(clear[1] / "data").column(name))
    ra, rb = (json.loads((run / "report.json").read_text()) for run in (streaming, dask))
    assert rb["engine"]["name"] == "dask" and rb["engine"]["partitions"] == 5
    assert (ra["input"]["rows"], ra["output"]["rows"]) == (rb["input"]["rows"], rb["output"]["rows"])
    for sa, sb in zip(ra["stages"], rb["stages"]):
        assert (sa["name"], sa["rows_in"], sa["rows_out"]) == (sb["name"], sb["rows_in"], sb["rows_out"])
        if sa["name"] == "k_anonymity":
            for key in ("levels", "suppressed_rows", "equivalence_classes", "information_loss", "risk_after"):
                assert sa[key] == sb[key], key
            assert sa["suppressed_rows"] > 0  # the comparison covers suppression
        if sa["name"] == "dp_stats":
            assert [r["value"] for r in sa["releases"]] == [r["value"] for r in sb["releases"]]  # exactly
            assert sa["local_not_dp"] == sb["local_not_dp"]


def test_same_output_as_streaming_on_the_synchronous_scheduler(tmp_path: Path, dataset: Path) -> None:
    streaming = api.run(config(tmp_path, dataset, "streaming"))
    dask = api.run(config(tmp_path, dataset, "dask"), engine="dask", scheduler="synchronous")
    assert_same_output(tmp_path, streaming.run_dir, dask.run_dir, keyring=tmp_path / "keys" / "run.keyring")
    assert streaming.report["stages"][5]["rows_out"] < 4000


def test_same_output_on_a_two_worker_local_cluster(tmp_path: Path, dataset: Path, cluster: Any) -> None:
    streaming = api.run(config(tmp_path, dataset, "streaming"))
    dask = api.run(config(tmp_path, dataset, "dask"), engine="dask", scheduler=cluster.scheduler_address)
    assert dask.report["engine"]["workers"] == 2
    assert_same_output(tmp_path, streaming.run_dir, dask.run_dir, keyring=tmp_path / "keys" / "run.keyring")


def test_k_anonymity_counts_spilled_to_disk_give_the_same_output(tmp_path: Path, dataset: Path, cluster: Any, monkeypatch) -> None:
    """``memory_tuples`` below the input's distinct tuples: counts go to disk on the client and the
    workers, the search runs in buckets, and nothing changes but the memory used."""
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    def spilled(out: str) -> Path:
        path = config(tmp_path, dataset, out)
        document = yaml.safe_load(path.read_text())
        for stage in document["stages"]:
            if "k_anonymity" in stage:
                stage["k_anonymity"]["memory_tuples"] = 1024
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    in_memory = api.run(config(tmp_path, dataset, "memory"))
    streaming = api.run(spilled("streaming"))
    dask = api.run(spilled("dask"), engine="dask", scheduler=cluster.scheduler_address)
    assert streaming.report["stages"][5]["search"]["distinct_tuples"] > 1024
    assert_same_output(tmp_path, streaming.run_dir, dask.run_dir, keyring=tmp_path / "keys" / "run.keyring")
    a, b = (pq.read_table(r.run_dir / "data").drop_columns(list(ENCRYPTED)) for r in (in_memory, streaming))
    assert a.equals(b)
    ka, kb = in_memory.report["stages"][5], streaming.report["stages"][5]
    assert {**ka, "search": None, "seconds": None} == {**kb, "search": None, "seconds": None}
    assert list(scratch.iterdir()) == []  # the spill directories went with the search


def test_keys_reach_the_workers_without_touching_their_disks(tmp_path: Path, dataset: Path, cluster: Any) -> None:
    from distributed import Client

    api.run(config(tmp_path, dataset, "dask"), engine="dask", scheduler=cluster.scheduler_address)
    ring = Keyring.load(tmp_path / "keys" / "run.keyring")
    materials = [ring._decode(entry).material for entry in ring.entries()]
    assert len(materials) >= 3
    with Client(cluster.scheduler_address) as client:
        folders = client.run(lambda dask_worker: dask_worker.local_directory)
    assert len(folders) == 2
    for folder in folders.values():
        for path in Path(folder).rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert not any(m in data or m.hex().encode() in data for m in materials), path


def test_recipient_mode_seals_a_data_key_per_file(tmp_path: Path, dataset: Path, cli: Any) -> None:
    analyst = tmp_path / "analyst" / "analyst.keyring"
    assert cli("keys", "new", "--out", analyst, "--purpose", "recipient", "--id", "analyst-1").code == 0
    path = config(tmp_path, dataset, "dask")
    document = yaml.safe_load(path.read_text())
    for stage in document["stages"]:
        if "encrypt" in stage:
            stage["encrypt"] = {"columns": ["diagnosis"], "recipient": str(analyst.parent / "analyst-1.pub")}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    result = api.run(path, engine="dask", scheduler="threads")
    files = sorted((result.run_dir / "data").iterdir())
    assert [f.name for f in files] == [f"part-{i:05d}.parquet" for i in range(len(files))] and len(files) >= 5
    sealed = {pq.read_schema(f).metadata[(SEALED_KEY_PREFIX + "diagnosis").encode()] for f in files}
    assert len(sealed) == len(files)  # one data key per file, though tasks ran in parallel threads
    clear = decrypt_run(result.run_dir, keyring=analyst, columns=["diagnosis"], output=tmp_path / "clear")
    expected = pq.read_table(dataset).column("diagnosis").to_pylist()
    kept = pq.read_table(clear.run_dir / "data").column("diagnosis").to_pylist()
    assert len(kept) == result.report["output"]["rows"] and Counter(kept) <= Counter(expected)


def test_output_column_encryption(tmp_path: Path, dataset: Path) -> None:
    expected = api.run(config(tmp_path, dataset, "streaming"))
    result = api.run(config(tmp_path, dataset, "dask", output_encryption={"columns": {"income": None}}),
                     engine="dask", scheduler="synchronous")
    ring = Keyring.load(tmp_path / "keys" / "run.keyring")
    files = sorted((result.run_dir / "data").iterdir())
    assert all(is_encrypted_file(f) for f in files)
    income = pa.chunked_array([read_table(f, keyring=ring).column("income") for f in files])
    assert income.to_pylist() == pq.read_table(expected.run_dir / "data").column("income").to_pylist()


def test_everything_suppressed_gives_one_empty_part(tmp_path: Path, dataset: Path) -> None:
    path = config(tmp_path, dataset, "dask")
    document = yaml.safe_load(path.read_text())
    document["stages"] = [
        {"drop": {"columns": ["patient_id", "name", "email", "phone", "national_id", "diagnosis"]}},
        {"k_anonymity": {"k": 4001, "suppression_limit": 1.0, "hierarchies": {
            "birth_date": {"date": ["year"]}, "zip": {"mask": {"char": "*", "levels": 1}},
            "sex": {"map": {"F": ["*"], "M": ["*"]}}, "occupation": {"csv": "hierarchies/occupation.csv"}}}},
    ]
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    result = api.run(path, engine="dask", scheduler="synchronous")
    files = sorted((result.run_dir / "data").iterdir())
    assert [f.name for f in files] == ["part-00000.parquet"] and pq.read_table(files[0]).num_rows == 0
    assert result.report["stages"][1]["rows_in"] == 4000 and result.report["stages"][1]["rows_out"] == 0


def test_cli_engine_errors(tmp_path: Path, dataset: Path, cli: Any) -> None:
    path = config(tmp_path, dataset, "out")
    bad = cli("run", path, "--engine", "spark")
    assert bad.code == 2 and bad.err.count("\n") == 1 and "--engine" in bad.err
    bad = cli("run", path, "--scheduler", "tcp://127.0.0.1:9")
    assert bad.code == 2 and "--scheduler applies only to --engine dask" in bad.err
    assert not (tmp_path / "out").exists()
    ok = cli("run", path, "--engine", "dask", "--scheduler", "synchronous", "--quiet")
    assert ok.code == 0 and json.loads((tmp_path / "out" / "report.json").read_text())["engine"]["name"] == "dask"


def test_bad_worker_count_is_a_usage_error(tmp_path: Path, dataset: Path, cli: Any, monkeypatch) -> None:
    monkeypatch.setenv("PRIVPREP_DASK_WORKERS", "two")
    result = cli("run", config(tmp_path, dataset, "out"), "--engine", "dask", "--quiet")
    assert result.code == 2 and "PRIVPREP_DASK_WORKERS" in result.err and result.err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_unreachable_scheduler_is_a_usage_error(tmp_path: Path, dataset: Path, cli: Any, monkeypatch) -> None:
    monkeypatch.setenv("PRIVPREP_DASK_CONNECT_TIMEOUT", "2s")
    path = config(tmp_path, dataset, "out")
    result = cli("run", path, "--engine", "dask", "--scheduler", "tcp://127.0.0.1:9", "--quiet")
    assert result.code == 2 and result.err.startswith("privprep: error: --scheduler 'tcp://127.0.0.1:9'")
    assert result.err.count("\n") == 1 and not (tmp_path / "out").exists()


def test_csv_input_gives_the_same_output(tmp_path: Path, dataset: Path) -> None:
    import pyarrow.csv as pacsv

    folder = tmp_path / "csv"
    folder.mkdir()
    table = pq.read_table(dataset).slice(0, 1500)
    pacsv.write_csv(table.slice(0, 900), folder / "a.csv")
    pacsv.write_csv(table.slice(900), folder / "b.csv")
    streaming = api.run(config(tmp_path, folder, "streaming"))
    dask = api.run(config(tmp_path, folder, "dask"), engine="dask", scheduler="synchronous")
    a, b = pq.read_table(streaming.run_dir / "data"), pq.read_table(dask.run_dir / "data")
    assert a.drop_columns(list(ENCRYPTED)).equals(b.drop_columns(list(ENCRYPTED)))
    assert dask.report["input"]["rows"] == streaming.report["input"]["rows"] == 1500
    assert [(s["rows_in"], s["rows_out"]) for s in dask.report["stages"]] == \
        [(s["rows_in"], s["rows_out"]) for s in streaming.report["stages"]]


def _worker_settings() -> tuple[Any, ...]:
    import os

    import dask

    return (os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("OMP_NUM_THREADS"),
            dask.config.get("distributed.worker.profile.enabled"))


def test_the_local_cluster_runs_its_workers_without_profiler_or_malloc_trim(monkeypatch) -> None:
    """Both cost a worker 15 % over the streaming engine on the same rows (bench_scale.py)."""
    from privprep.pipeline.engines.dask_engine import DaskEngine

    monkeypatch.setenv("PRIVPREP_DASK_WORKERS", "1")
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)  # a nanny started earlier in this process sets it here
    with DaskEngine() as engine:
        settings = engine.client.run(_worker_settings)
    assert list(settings.values()) == [(None, "1", False)]
