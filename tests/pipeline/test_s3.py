"""s3:// input and output against a real local S3 server (moto in server mode on 127.0.0.1, a free port).

One server serves the whole test session; each test gets its own bucket and fake credentials in its
environment (never a real AWS address: the endpoint is always the loopback server)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import yaml

from privprep.pipeline import runtarget
from privprep.pipeline.io import InputSource
from privprep.pipeline.storage import ObjectPath, StoreOptions
from tests.conftest import base_config, small_table

moto_server = pytest.importorskip("moto.server", reason="moto is not installed (pip install 'privprep[dev]')")

SECRET = "fake-secret-" + secrets.token_hex(8)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
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
    from privprep.pipeline.keyring import Keyring

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
