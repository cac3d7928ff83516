"""s3:// input and output against a real local S3 server (moto in server mode on 127.0.0.1, a free port).

One server serves the whole test session; each test gets its own bucket and fake credentials in its
environment (never a real AWS address: the endpoint is always the loopback server)."""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import yaml

from privprep.pipeline.files import runtarget
from privprep.pipeline.files.io import InputSource
from privprep.pipeline.files.storage import ObjectPath, StoreOptions
from tests.conftest import base_config, small_table

moto_server = pytest.importorskip("moto.server", reason="moto is not installed (pip install 'privprep[dev]')")

SECRET = "fake-secret-" + secrets.token_hex(8)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request log lines
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    assert host == "127.0.0.1"
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the local server; AWS_* set for it (fake credentials)."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "fake-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    name = "privprep-" + secrets.token_hex(4)
    host = s3_endpoint.split("://", 1)[1]
    pafs.S3FileSystem(endpoint_override=host, scheme="http", region="us-east-1", allow_bucket_creation=True).create_dir(name)
    return name


def fs() -> pafs.FileSystem:
    return ObjectPath.from_uri("s3://x").filesystem


def put_table(uri: str, table: pa.Table, **kwargs: Any) -> None:
    pq.write_table(table, ObjectPath.from_uri(uri).path, filesystem=fs(), **kwargs)


def keys(bucket: str, prefix: str = "") -> list[str]:
    infos = fs().get_file_info(pafs.FileSelector(f"{bucket}/{prefix}".rstrip("/"), recursive=True, allow_not_found=True))
    return sorted(i.path[len(bucket) + 1:] for i in infos if i.type == pafs.FileType.File)


def write_config(tmp_path: Path, keyring: Path, input: str, output: str, **overrides: Any) -> Path:
    from privprep.pipeline.keys.keyring import Keyring

    if not keyring.exists():
        Keyring.create(keyring)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(base_config(input, output, keyring=str(keyring), **overrides), sort_keys=False))
    return path


@pytest.fixture
def s3_run(bucket: str, tmp_path: Path, cli: Any) -> tuple[str, Path]:
    """The sample pipeline from s3://bucket/in/ into s3://bucket/out/; (output URI, config)."""
    put_table(f"s3://{bucket}/in/part-0.parquet", small_table())
    config = write_config(tmp_path, tmp_path / "keys" / "k.keyring", f"s3://{bucket}/in/", f"s3://{bucket}/out/")
    result = cli("run", config, "--quiet")
    assert result.code == 0, result.err
    return f"s3://{bucket}/out", config


def test_run_from_and_into_a_bucket(s3_run: tuple[str, Path], bucket: str, tmp_path: Path) -> None:
    uri, config = s3_run
    names = keys(bucket, "out")
    manifest = json.loads(fs().open_input_file(f"{bucket}/out/_privprep_manifest.json").read())
    root = manifest["root"]
    assert names == sorted(["out/_privprep_manifest.json"] + [f"out/{root}/{f['path']}" for f in manifest["files"]])
    assert {f["path"] for f in manifest["files"]} >= {"data/part-00000.parquet", "report.json", "report.html"}
    # the same pipeline on the same data locally gives the same records
    local_in = tmp_path / "in.parquet"
    pq.write_table(small_table(), local_in)
    local_cfg = tmp_path / "local.yaml"
    document = yaml.safe_load(config.read_text())
    local_cfg.write_text(yaml.safe_dump({**document, "input": str(local_in), "output": str(tmp_path / "local-out")}))
    from privprep.pipeline import api

    api.run(local_cfg)
    remote = pq.read_table(f"{bucket}/out/{root}/data/part-00000.parquet", filesystem=fs())
    assert remote.equals(pq.read_table(tmp_path / "local-out" / "data"))
    assert remote.num_rows == 8 and "name" not in remote.column_names
    for f in manifest["files"]:  # sizes as listed
        assert fs().get_file_info(f"{bucket}/out/{root}/{f['path']}").size == f["size"]


def manifest_of(bucket: str, prefix: str = "out") -> dict[str, Any] | None:
    try:
        return json.loads(fs().open_input_file(f"{bucket}/{prefix}/_privprep_manifest.json").read())
    except FileNotFoundError:
        return None


KILLER = """
import os, signal, sys
from privprep.pipeline.files import runtarget
from privprep.pipeline.cli import main
real = runtarget.ObjectRunTarget._upload
count = []
def upload(self, fs, file):
    if len(count) >= 2:
        os.kill(os.getpid(), signal.SIGKILL)  # killed mid-upload: no cleanup runs at all
    count.append(file)
    return real(self, fs, file)
runtarget.ObjectRunTarget._upload = upload
runtarget.UPLOADS = 1
sys.exit(main(sys.argv[1:]))
"""


def run_killed(*args: str) -> int:
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", KILLER, *args], capture_output=True, timeout=120).returncode


def test_a_run_killed_mid_upload_leaves_nothing_readable_as_a_run(s3_run: tuple[str, Path], bucket: str, cli: Any) -> None:
    uri, config = s3_run
    first = manifest_of(bucket)
    assert first is not None
    before = {k: fs().open_input_file(f"{bucket}/{k}").read() for k in keys(bucket, "out")}
    # an --overwrite run killed (SIGKILL) after two of its objects were uploaded
    assert run_killed("run", str(config), "--overwrite", "--quiet") == -9
    assert manifest_of(bucket) == first  # the earlier run is still the committed one, untouched
    after = {k: fs().open_input_file(f"{bucket}/{k}").read() for k in keys(bucket, "out")}
    leftovers = sorted(set(after) - set(before))
    assert len(leftovers) == 2 and all(k.startswith("out/run-") and first["root"] not in k for k in leftovers)
    assert all(after[k] == before[k] for k in before)
    # a fresh prefix: the killed run leaves no manifest, and readers refuse it
    other = f"s3://{bucket}/fresh"
    assert run_killed("run", str(config), "--output", other, "--quiet") == -9
    assert manifest_of(bucket, "fresh") is None and keys(bucket, "fresh")
    for args in (["decrypt", other, "--keyring", str(config.parent / "keys" / "k.keyring"), "--columns", "patient_id"],
                 ["report", other], ["check", other + "/", "--qi", "zip"]):
        result = cli(*args)
        assert result.code == 2, args
        assert len(result.err.strip().splitlines()) == 1
        assert "never committed" in result.err or "no committed privprep run" in result.err
    # the next run there commits and removes what the killed one left
    assert cli("run", config, "--output", other, "--quiet").code == 0
    committed = manifest_of(bucket, "fresh")
    assert committed is not None
    assert {k.split("/")[1] for k in keys(bucket, "fresh")} == {"_privprep_manifest.json", committed["root"]}


def test_overwrite_replaces_a_run_only_once_the_new_one_is_committed(
    s3_run: tuple[str, Path], bucket: str, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, config = s3_run
    first = manifest_of(bucket)
    refused = cli("run", config, "--quiet")
    assert refused.code == 2 and "already holds a run; pass --overwrite" in refused.err
    assert manifest_of(bucket) == first
    # a run that fails while uploading (not killed): its objects are removed, the earlier run stays
    calls: list[Path] = []
    real = runtarget.ObjectRunTarget._upload

    def failing(self: Any, filesystem: Any, file: Path) -> dict[str, Any]:
        calls.append(file)
        if len(calls) > 1:
            raise OSError("connection reset")
        return real(self, filesystem, file)

    monkeypatch.setattr(runtarget.ObjectRunTarget, "_upload", failing)
    failed = cli("run", config, "--overwrite", "--quiet")
    assert failed.code == 2 and "no run was committed" in failed.err
    assert manifest_of(bucket) == first
    assert {k.split("/")[1] for k in keys(bucket, "out")} == {"_privprep_manifest.json", first["root"]}
    monkeypatch.setattr(runtarget.ObjectRunTarget, "_upload", real)
    assert cli("run", config, "--overwrite", "--quiet").code == 0
    second = manifest_of(bucket)
    assert second is not None and second["run_id"] != first["run_id"]
    assert {k.split("/")[1] for k in keys(bucket, "out")} == {"_privprep_manifest.json", second["root"]}


def test_a_prefix_holding_other_objects_is_never_written(bucket: str, tmp_path: Path, cli: Any) -> None:
    put_table(f"s3://{bucket}/in/part-0.parquet", small_table())
    put_table(f"s3://{bucket}/taken/other.parquet", small_table())
    config = write_config(tmp_path, tmp_path / "k.keyring", f"s3://{bucket}/in/", f"s3://{bucket}/taken")
    result = cli("run", config, "--overwrite", "--quiet")
    assert result.code == 2 and "not a privprep run" in result.err
    assert keys(bucket, "taken") == ["taken/other.parquet"]


def test_decrypt_from_a_run_in_a_bucket(bucket: str, tmp_path: Path, cli: Any) -> None:
    put_table(f"s3://{bucket}/in/part-0.parquet", small_table())
    stages = [{"pseudonymize": {"columns": ["patient_id"], "domain": "patients"}},
              {"encrypt": {"columns": ["diagnosis"]}}, {"drop": {"columns": ["name"]}}]
    config = write_config(tmp_path, tmp_path / "k.keyring", f"s3://{bucket}/in/", f"s3://{bucket}/enc", stages=stages)
    assert cli("run", config, "--quiet").code == 0
    encrypted = pq.read_table(f"{bucket}/enc/{manifest_of(bucket, 'enc')['root']}/data", filesystem=fs())  # type: ignore[index]
    assert encrypted.column("diagnosis").to_pylist() != small_table().column("diagnosis").to_pylist()
    # into the bucket (default name RUN-decrypted) and into a local folder
    result = cli("decrypt", f"s3://{bucket}/enc", "--keyring", tmp_path / "k.keyring", "--columns", "diagnosis", "--quiet")
    assert result.code == 0, result.err
    decrypted = manifest_of(bucket, "enc-decrypted")
    assert decrypted is not None
    table = pq.read_table(f"{bucket}/enc-decrypted/{decrypted['root']}/data", filesystem=fs())
    assert table.column("diagnosis").to_pylist() == small_table().column("diagnosis").to_pylist()
    local = tmp_path / "plain"
    assert cli("decrypt", f"s3://{bucket}/enc", "--keyring", tmp_path / "k.keyring", "--columns", "diagnosis",
               "--output", local, "--quiet").code == 0
    assert pq.read_table(local / "data").column("diagnosis").to_pylist() == small_table().column("diagnosis").to_pylist()
    assert json.loads((local / "report.json").read_text())["source"]["run_dir"] == f"s3://{bucket}/enc"
    # a tampered object is refused (its sha256 differs from the manifest)
    part = f"{bucket}/enc/{manifest_of(bucket, 'enc')['root']}/data/part-00000.parquet"  # type: ignore[index]
    with fs().open_output_stream(part) as out:
        out.write(b"PAR1 not the committed bytes")
    refused = cli("decrypt", f"s3://{bucket}/enc", "--keyring", tmp_path / "k.keyring", "--columns", "diagnosis",
                  "--output", tmp_path / "again", "--quiet")
    assert refused.code == 2 and "differs from the run's manifest" in refused.err
    assert not (tmp_path / "again").exists()


def test_report_rebuilds_the_page_of_a_run_in_a_bucket(s3_run: tuple[str, Path], bucket: str, cli: Any) -> None:
    uri, _ = s3_run
    before = manifest_of(bucket)
    assert before is not None
    root = before["root"]
    with fs().open_output_stream(f"{bucket}/out/{root}/report.html") as out:
        out.write(b"stale")
    assert cli("report", uri, "--quiet").code == 2  # its digest no longer matches the manifest: refused
    entry = next(f for f in before["files"] if f["path"] == "report.html")
    fs().delete_file(f"{bucket}/out/_privprep_manifest.json")  # put back a manifest naming the stale page
    stale = {**before, "files": [{**f, "size": 5, "sha256": __import__("hashlib").sha256(b"stale").hexdigest()}
                                 if f is entry else f for f in before["files"]]}
    with fs().open_output_stream(f"{bucket}/out/_privprep_manifest.json") as out:
        out.write(json.dumps(stale).encode())
    result = cli("report", uri, "--quiet")
    assert result.code == 0, result.err
    page = fs().open_input_file(f"{bucket}/out/{root}/report.html").read()
    assert page.startswith(b"<!DOCTYPE html>") or page.lower().startswith(b"<!doctype html>")
    after = manifest_of(bucket)
    assert after is not None and after["run_id"] == before["run_id"]
    rebuilt = next(f for f in after["files"] if f["path"] == "report.html")
    assert rebuilt["size"] == len(page) and rebuilt["sha256"] == __import__("hashlib").sha256(page).hexdigest()


def test_check_on_an_input_in_a_bucket(bucket: str, cli: Any) -> None:
    put_table(f"s3://{bucket}/raw/a.parquet", small_table().slice(0, 4))
    put_table(f"s3://{bucket}/raw/b.parquet", small_table().slice(4))
    result = cli("check", f"s3://{bucket}/raw/", "--qi", "zip,age", "--json")
    assert result.code == 0, result.err
    measured = json.loads(result.out)
    # (10001, 31) twice, the six other rows unique: k = 1, seven classes
    assert measured["k"] == 1 and measured["equivalence_classes"] == 7


def test_a_multi_file_input_streams_in_batches(bucket: str) -> None:
    table = pa.table({"n": pa.array(range(3000), pa.int64()), "s": [f"v{i % 7}" for i in range(3000)]})
    for i in range(3):
        put_table(f"s3://{bucket}/many/part-{i}.parquet", table.slice(i * 1000, 1000), row_group_size=250)
    put_table(f"s3://{bucket}/many/_ignored.parquet", table.slice(0, 5))
    source = InputSource.open(f"s3://{bucket}/many/")
    assert [f.name for f in source.files] == ["part-0.parquet", "part-1.parquet", "part-2.parquet"]
    assert source.rows == 3000
    sizes = [t.num_rows for t in source.batches(["n"], batch_rows=100, piece_rows=250)]
    assert sizes == [100, 100, 50] * 12  # 12 row groups of 250 rows, read 100 rows at a time: never the whole input
    assert pa.concat_tables(source.batches(["n"], batch_rows=100, piece_rows=250)).column("n").to_pylist() == list(range(3000))


def test_dask_workers_read_their_own_pieces(bucket: str, tmp_path: Path) -> None:
    pytest.importorskip("dask", reason="the Dask engine needs the dask extra")
    import pickle

    from privprep.pipeline import api

    put_table(f"s3://{bucket}/in/part-0.parquet", small_table(), row_group_size=3)
    source = InputSource.open(f"s3://{bucket}/in/")
    piece = source.pieces(3)[1]
    assert SECRET.encode() not in pickle.dumps(piece) and b"fake-key-id" not in pickle.dumps(piece)
    config = write_config(tmp_path, tmp_path / "k.keyring", f"s3://{bucket}/in/", f"s3://{bucket}/dask",
                          io={"partition_rows": 3})
    streaming = api.run(config, output=str(tmp_path / "streaming"))
    dask = api.run(config, engine="dask", scheduler="processes")
    assert str(dask.run_dir) == f"s3://{bucket}/dask"
    root = manifest_of(bucket, "dask")["root"]  # type: ignore[index]
    assert pq.read_table(f"{bucket}/dask/{root}/data", filesystem=fs()).equals(pq.read_table(streaming.run_dir / "data"))


def test_keyring_and_ledger_stay_local(bucket: str, tmp_path: Path, cli: Any) -> None:
    put_table(f"s3://{bucket}/in/part-0.parquet", small_table())
    config = write_config(tmp_path, tmp_path / "k.keyring", f"s3://{bucket}/in/", f"s3://{bucket}/out")
    document = yaml.safe_load(config.read_text())
    for change, name in (({"keyring": f"s3://{bucket}/k.keyring"}, "keyring"),
                         ({"budget": {"epsilon": 1.0, "ledger": f"s3://{bucket}/l.json"}}, "budget.ledger")):
        config.write_text(yaml.safe_dump({**document, **change}))
        result = cli("run", config, "--quiet")
        assert result.code == 2 and len(result.err.strip().splitlines()) == 1
        assert f"{name} 's3://{bucket}/" in result.err and "local file" in result.err
    result = cli("decrypt", f"s3://{bucket}/out", "--keyring", f"s3://{bucket}/k.keyring", "--columns", "diagnosis")
    assert result.code == 2 and "the keyring must be a local file" in result.err
    assert keys(bucket, "out") == []


def test_a_bad_endpoint_is_one_line_without_credentials(bucket: str, tmp_path: Path, cli: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path, tmp_path / "k.keyring", f"s3://{bucket}/in/", str(tmp_path / "out"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # loopback, nothing listening
    result = cli("run", config, "--quiet")
    assert result.code == 2, result.err
    assert len(result.err.strip().splitlines()) == 1 and f"s3://{bucket}/in" in result.err
    assert SECRET not in result.err and "fake-key-id" not in result.err
    assert not (tmp_path / "out").exists()


def test_storage_options_in_the_config_name_the_endpoint(bucket: str, s3_endpoint: str, tmp_path: Path,
                                                         cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    put_table(f"s3://{bucket}/in/part-0.parquet", small_table())
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.delenv("AWS_REGION")
    config = write_config(tmp_path, tmp_path / "k.keyring", f"s3://{bucket}/in/", f"s3://{bucket}/opt",
                          io={"storage_options": {"endpoint": s3_endpoint, "region": "us-east-1"}})
    assert cli("run", config, "--quiet").code == 0
    options = StoreOptions(endpoint=s3_endpoint, region="us-east-1")
    assert (ObjectPath.from_uri(f"s3://{bucket}/opt", options) / "_privprep_manifest.json").is_file()


def test_attack_on_a_run_in_a_bucket_matches_the_local_run(bucket: str, tmp_path: Path, cli: Any) -> None:
    from tests.pipeline.risk.test_attack import HIERARCHIES, population

    frame = population(300)
    data = tmp_path / "population.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), data)
    config = {
        "version": 1, "input": str(data), "output": f"s3://{bucket}/att",
        "columns": {"row_id": {"role": "insensitive"}, "name": {"role": "identifier"}, "age": {"role": "quasi_identifier"},
                    "zip": {"role": "quasi_identifier"}, "sex": {"role": "quasi_identifier"}, "diagnosis": {"role": "sensitive"}},
        "stages": [{"drop": {"columns": ["name"]}},
                   {"k_anonymity": {"k": 5, "suppression_limit": 0.05, "hierarchies": HIERARCHIES}}],
    }
    path = tmp_path / "att.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    assert cli("run", path, "--quiet").code == 0
    assert cli("run", path, "--output", tmp_path / "att-local", "--quiet").code == 0
    args = ["--auxiliary", str(data), "--on", "age,zip,sex", "--truth", "row_id", "--json"]
    remote = cli("attack", f"s3://{bucket}/att", *args, "--record")
    local = cli("attack", tmp_path / "att-local", *args)
    assert remote.code == 0 and local.code == 0, remote.err + local.err
    measured, expected = json.loads(remote.out), json.loads(local.out)
    assert measured.pop("run") == f"s3://{bucket}/att"
    expected.pop("run")
    assert measured == expected
    # --record rewrote report.json in the run folder and the manifest with its new digest
    with runtarget.open_run(f"s3://{bucket}/att") as run:
        assert "attack" in json.loads((run / "report.json").read_text())


def test_a_dp_release_on_an_input_in_a_bucket_spends_from_a_local_ledger(bucket: str, tmp_path: Path, cli: Any) -> None:
    put_table(f"s3://{bucket}/in/a.parquet", small_table().slice(0, 4))
    put_table(f"s3://{bucket}/in/b.parquet", small_table().slice(4))
    ledger = tmp_path / "ledgers" / "patients.json"
    stages = [{"pseudonymize": {"columns": ["patient_id"], "domain": "patients"}}, {"drop": {"columns": ["name"]}},
              {"dp_stats": {"epsilon": 0.5, "queries": [{"column": "income", "stat": "mean"}]}}]
    config = write_config(tmp_path, tmp_path / "k.keyring", f"s3://{bucket}/in/", f"s3://{bucket}/dp", stages=stages,
                          budget={"epsilon": 1.0, "ledger": str(ledger)})
    assert cli("run", config, "--quiet").code == 0
    assert cli("run", config, "--overwrite", "--quiet").code == 0  # the same input: the same fingerprint, one ledger
    spent = json.loads(ledger.read_text())
    assert len(spent["entries"]) == 2 and sum(e["epsilon"] for e in spent["entries"]) == pytest.approx(1.0)
    refused = cli("run", config, "--overwrite", "--quiet")
    assert refused.code == 1 and "budget exceeded" in refused.err


def test_sweep_refuses_an_output_in_a_bucket(bucket: str, tmp_path: Path, cli: Any) -> None:
    stages = [{"pseudonymize": {"columns": ["patient_id"], "domain": "patients"}}, {"drop": {"columns": ["name"]}},
              {"k_anonymity": {"k": 2, "hierarchies": {"zip": {"mask": {}}, "age": {"interval": {"widths": [10]}}}}}]
    config = write_config(tmp_path, tmp_path / "k.keyring", str(tmp_path / "in.parquet"), f"s3://{bucket}/sw", stages=stages)
    result = cli("sweep", config, "--quiet")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    assert "privprep sweep writes to a local folder" in result.err


@pytest.mark.slow
def test_the_bundled_sample_pipeline_end_to_end_on_s3(bucket: str, tmp_path: Path, cli: Any) -> None:
    """sample_data/pipeline.yaml (every kind of stage; train with 1 epoch when torch is installed) from and into
    the bucket, then decrypt from it: the same records as the same pipeline on local folders."""
    import shutil

    root = Path(__file__).resolve().parents[3] / "sample_data"
    shutil.copytree(root / "hierarchies", tmp_path / "hierarchies")
    pq.write_table(pq.read_table(root / "patients.parquet"), ObjectPath.from_uri(f"s3://{bucket}/patients/p.parquet").path,
                   filesystem=fs())
    document = yaml.safe_load((root / "pipeline.yaml").read_text())
    document.update(input=f"s3://{bucket}/patients/", output=f"s3://{bucket}/sample", keyring=str(tmp_path / "k.keyring"))
    document["budget"]["ledger"] = str(tmp_path / "ledger.json")
    try:
        import opacus  # noqa: F401
        import torch

        torch.set_num_threads(1)
        next(s for s in document["stages"] if "train" in s)["train"]["epochs"] = 1
    except ImportError:
        document["stages"] = [s for s in document["stages"] if "train" not in s]
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    assert cli("keys", "new", "--out", tmp_path / "k.keyring").code == 0
    result = cli("run", config, "--quiet")
    assert result.code == 0, result.err
    local_config = tmp_path / "local.yaml"  # another input identity: its own ledger
    local_config.write_text(yaml.safe_dump({**document, "input": str(root / "patients.parquet"), "output": str(tmp_path / "local"),
                                            "stages": [s for s in document["stages"] if "train" not in s],  # data only
                                            "budget": {**document["budget"], "ledger": str(tmp_path / "local-ledger.json")}}))
    assert cli("run", local_config, "--quiet").code == 0
    manifest = manifest_of(bucket, "sample")
    assert manifest is not None
    names = {f["path"] for f in manifest["files"]}
    assert {"report.json", "report.html", "ledger.json", "stats.json", "data/part-00000.parquet"} <= names
    if any("train" in s for s in document["stages"]):
        assert "model/model_card.json" in names
    remote = pq.read_table(f"{bucket}/sample/{manifest['root']}/data", filesystem=fs())
    local = pq.read_table(tmp_path / "local" / "data")
    assert remote.drop(["diagnosis"]).equals(local.drop(["diagnosis"]))  # ciphertexts differ only by their nonces
    args = ["--keyring", str(tmp_path / "k.keyring"), "--columns", "diagnosis,national_id", "--quiet"]
    assert cli("decrypt", f"s3://{bucket}/sample", "--output", tmp_path / "plain-remote", *args).code == 0
    assert cli("decrypt", tmp_path / "local", "--output", tmp_path / "plain-local", *args).code == 0
    assert pq.read_table(tmp_path / "plain-remote" / "data").equals(pq.read_table(tmp_path / "plain-local" / "data"))


def test_file_uris_are_local_paths(tmp_path: Path, cli: Any) -> None:
    data = tmp_path / "in.parquet"
    pq.write_table(small_table(), data)
    config = write_config(tmp_path, tmp_path / "k.keyring", f"file://{data}", f"file://{tmp_path / 'out'}")
    document = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**document, "keyring": f"file://{tmp_path / 'k.keyring'}"}))
    result = cli("run", config, "--quiet")
    assert result.code == 0, result.err
    assert pq.read_table(tmp_path / "out" / "data").num_rows == 8


def test_globs_and_csv_objects_as_input(bucket: str, tmp_path: Path) -> None:
    import pyarrow.csv as pacsv

    table = small_table().select(["zip", "age", "diagnosis"])
    put_table(f"s3://{bucket}/g/2026-01/part-0.parquet", table.slice(0, 3))
    put_table(f"s3://{bucket}/g/2026-02/part-0.parquet", table.slice(3))
    put_table(f"s3://{bucket}/g/2025-12/part-0.parquet", table)
    source = InputSource.open(f"s3://{bucket}/g/2026-*/part-*.parquet")
    assert [str(f) for f in source.files] == [f"s3://{bucket}/g/2026-01/part-0.parquet", f"s3://{bucket}/g/2026-02/part-0.parquet"]
    assert pa.concat_tables(source.batches()).equals(table)
    with fs().open_output_stream(f"{bucket}/csv/t.csv") as out:
        pacsv.write_csv(table, out)
    pacsv.write_csv(table, tmp_path / "t.csv")
    source, local = InputSource.open(f"s3://{bucket}/csv/t.csv"), InputSource.open(str(tmp_path / "t.csv"))
    assert source.format == "csv" and source.schema.equals(local.schema)  # the same inference as for a local file
    assert pa.concat_tables(source.batches(batch_rows=3)).equals(pa.concat_tables(local.batches(batch_rows=3)))
    assert pa.concat_tables(source.batches()).column("diagnosis").to_pylist() == table.column("diagnosis").to_pylist()


def test_an_error_that_echoes_a_credential_is_scrubbed(bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from privprep.pipeline.files import io

    assert SECRET not in io._short(OSError(f"AWS Error: signature for {SECRET} does not match"))
    assert "***" in io._short(OSError(f"AWS Error: signature for {SECRET} does not match"))
