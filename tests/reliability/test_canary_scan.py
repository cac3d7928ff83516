"""Canary scan (issue 16): canary strings planted in every protected column (pseudonymized, dropped,
tokenized, masked and encrypted identifiers, encrypted and recipient-sealed sensitive values, and
quasi-identifier raw values that k_anonymity generalizes) appear nowhere: not in any byte of the run
directory, not in the decoded Parquet values (parts are zstd-compressed, so raw bytes alone prove
nothing), not on stderr or in any log record, with --debug and --log-format json, in failing runs and
--dry-run too. Nor does any key's material, raw, hex or base64, including the derived pseudonym key
and the per-file data keys of recipient mode. A plaintext control column shows the scan sees values."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.reliability.support import tally

ROWS = 240
CANARIES = {
    "patient_id": "CNRY-PSEUDONYMIZED-a81f",
    "name": "CNRY-DROPPED-4c2e",
    "email": "CNRY-TOKENIZED-9d07",
    "ssn": "CNRY-MASKED-31b5",
    "diagnosis": "CNRY-ENCRYPTED-e6a2",
    "notes": "CNRY-RECIPIENT-7f90",
    "zip": "CNRYZIPRAW",  # each row's zip is unique: k_anonymity must mask it, so no raw value survives
}
CONTROL = "PLAIN-CONTROL-5e1d"
COLUMNS = {
    "patient_id": {"role": "identifier"}, "name": {"role": "identifier"}, "email": {"role": "identifier"},
    "ssn": {"role": "identifier"}, "zip": {"role": "quasi_identifier"}, "age": {"role": "quasi_identifier"},
    "diagnosis": {"role": "sensitive"}, "notes": {"role": "sensitive"},
    "income": {"role": "sensitive", "bounds": [0, 200_000]}, "label": {"role": "insensitive"},
}


def canary_values(column: str) -> list[str]:
    if column == "zip":
        return [f"{CANARIES['zip']}{i:04d}" for i in range(ROWS)]
    return [CANARIES[column] if i % 4 else f"{CANARIES[column]}-{i}" for i in range(ROWS)]


def every_raw_value() -> list[bytes]:
    """Every protected cell, and the common prefix of each column's canaries."""
    values = {v for column in CANARIES for v in canary_values(column)} | set(CANARIES.values())
    values.discard(CANARIES["zip"])  # a generalized zip keeps this prefix by design (10 of 14 characters)
    return sorted(v.encode() for v in values)


def key_forms(material: bytes) -> list[bytes]:
    b64 = base64.b64encode(material)
    return [material, material.hex().encode(), material.hex().upper().encode(), b64, b64.rstrip(b"="),
            base64.urlsafe_b64encode(material).rstrip(b"=")]


@pytest.fixture
def planted(workspace, cli, monkeypatch):
    source = workspace.root / "canaries.parquet"
    pq.write_table(pa.table({
        **{column: canary_values(column) for column in CANARIES},
        "age": pa.array([20 + i % 50 for i in range(ROWS)], pa.int64()),
        "income": pa.array([1000 * (i % 90) for i in range(ROWS)], pa.int64()),
        "label": [CONTROL] * ROWS,
    }), source)
    analyst = workspace.root / "analyst" / "analyst.keyring"
    assert cli("keys", "new", "--out", analyst, "--purpose", "recipient", "--id", "analyst-1").code == 0
    data_keys: list[bytes] = []
    from privprep.transforms import encrypt as encrypt_module

    original = encrypt_module.new_data_key

    def recording() -> bytes:
        data_keys.append(original())
        return data_keys[-1]

    monkeypatch.setattr(encrypt_module, "new_data_key", recording)
    stages = [
        {"pseudonymize": {"columns": ["patient_id"], "domain": "patients"}},
        {"drop": {"columns": ["name"]}},
        {"tokenize": {"columns": ["email"]}},
        {"mask": {"columns": ["ssn"]}},
        {"k_anonymity": {"k": 5, "hierarchies": {"zip": {"mask": {"char": "*"}}, "age": {"interval": {"widths": [10, 20]}}}}},
        {"encrypt": {"columns": ["diagnosis"]}},
        {"encrypt": {"columns": ["notes"], "recipient": str(analyst.parent / "analyst-1.pub")}},
        {"dp_stats": {"epsilon": 0.5, "queries": [{"column": "income", "stat": "mean"}, {"column": "zip", "stat": "count"}]}},
    ]
    config = workspace.config(input=str(source), columns=COLUMNS, stages=stages,
                              budget={"epsilon": 100.0, "ledger": str(workspace.root / "ledger.json")},
                              io={"rows_per_file": 100, "batch_rows": 64})
    return workspace, config, analyst, data_keys


def secrets(workspace, analyst: Path, data_keys: list[bytes]) -> list[bytes]:
    from privprep.transforms.pseudonymize import derive_domain_key

    forms: list[bytes] = []
    for path in (workspace.keyring, analyst):
        for entry in json.loads(path.read_text())["keys"]:
            raw = base64.b64decode(entry["material"])
            forms += key_forms(raw)
            if entry["purpose"] == "pseudonymize":
                forms += key_forms(derive_domain_key(raw, "patients"))
    for key in data_keys:
        forms += key_forms(key)
    return forms


def decoded_values(run_dir: Path) -> bytes:
    """Every value of every Parquet part, decoded, and every part's key-value metadata."""
    chunks = []
    for part in sorted(run_dir.rglob("*.parquet")):
        table = pq.read_table(part)
        chunks += [k + b"=" + v for k, v in (table.schema.metadata or {}).items()]
        for column in table.columns:
            for value in column.to_pylist():
                chunks.append(value if isinstance(value, bytes) else str(value).encode())
    return b"\n".join(chunks)


def raw_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


@pytest.mark.parametrize("flags", [[], ["--debug"], ["--log-format", "json"]], ids=["text", "debug", "json-logs"])
def test_no_canary_or_key_anywhere_a_run_writes_or_says(planted, cli, caplog, flags) -> None:
    workspace, config, analyst, data_keys = planted
    with caplog.at_level(logging.DEBUG):
        result = cli("run", config, *flags)
        assert result.code == 0, result.err
        failing = [
            cli("run", config, "--output", workspace.root / "never", "--dry-run", *flags),
            cli("check", workspace.root / "canaries.parquet", "--qi", "zip,age", "--sensitive", "diagnosis", "--json"),
            cli("decrypt", workspace.out, "--keyring", workspace.keyring, "--columns", "notes", "--output", workspace.root / "d"),
        ]
    said = "".join(r.out + r.err for r in [result, *failing]).encode()
    logged = caplog.text.encode() + "".join(str(r.args) for r in caplog.records).encode()
    written = raw_bytes(workspace.out)
    decoded = decoded_values(workspace.out)
    assert CONTROL.encode() in decoded and CONTROL.encode() in written  # the scans do see plaintext
    assert b"CNRYZIPRAW" in decoded  # generalized zips keep a prefix: the scan reads the zip column
    assert failing[-1].code == 2 and "notes" in failing[-1].err  # the producer cannot read recipient mode back
    haystacks = {"run directory bytes": written, "decoded Parquet values": decoded, "stdout and stderr": said,
                 "log records": logged}
    found = [(where, value[:30]) for where, blob in haystacks.items() for value in every_raw_value() if value in blob]
    assert found == []
    leaked = [where for where, blob in haystacks.items() for secret in secrets(workspace, analyst, data_keys) if secret in blob]
    assert leaked == []
    assert len(data_keys) == 3  # one sealed data key per output part
    tally("canary", "scans (runs, checks, decrypts)", 4)
    tally("canary", "leaks", len(found) + len(leaked))


def test_no_canary_in_failing_runs_with_debug_tracebacks(planted, cli, caplog) -> None:
    """Errors and --debug tracebacks raised over the canary input quote no cell value."""
    workspace, config, _, _ = planted
    import yaml

    document = yaml.safe_load(config.read_text())
    cases = {
        "k unreachable": {"k_anonymity": {"k": 10_000, "hierarchies": {"zip": {"mask": {"char": "*", "levels": 2}},
                                                                        "age": {"interval": {"widths": [10]}}}}},
        "map hierarchy missing values": {"k_anonymity": {"k": 2, "hierarchies": {
            "zip": {"map": {canary_values("zip")[0]: ["x"]}}, "age": {"interval": {"widths": [10]}}}}},
    }
    outputs = []
    with caplog.at_level(logging.DEBUG):
        for name, stage in cases.items():
            document["stages"][4] = stage
            path = workspace.root / f"{name.replace(' ', '-')}.yaml"
            path.write_text(yaml.safe_dump(document))
            for flags in ([], ["--debug"], ["--log-format", "json"]):
                try:
                    result = cli("run", path, *flags)
                except Exception as exc:  # --debug re-raises: its message and traceback are what a user sees
                    import traceback

                    outputs.append("".join(traceback.format_exception(exc)))
                    continue
                assert result.code == 1, (name, result.err)
                outputs.append(result.out + result.err)
    blob = "".join(outputs).encode() + caplog.text.encode()
    assert [v for v in every_raw_value() if v in blob] == []
    assert not (workspace.out).exists()
    tally("canary", "failing runs scanned", len(outputs))
