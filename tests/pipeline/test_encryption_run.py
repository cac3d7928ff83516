"""encrypt, tokenize, recipient mode and output column encryption inside a run; key rotation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from privprep.pipeline.keys.column_encryption import METADATA_KEY, is_encrypted_file, read_table
from privprep.pipeline.keys.decrypt import decrypt_run
from privprep.pipeline.keys.keyring import Keyring
from privprep.schemas.stages import KAnonymityParams
from privprep.transforms import decrypt_column, registry
from privprep.transforms.base import GlobalStage
from privprep.transforms.recipient import SEALED_KEY_PREFIX
from tests.conftest import small_table

STAGES = [
    {"tokenize": {"columns": ["patient_id"], "domain": "patients"}},
    {"encrypt": {"columns": ["name", "age"]}},
]


def recipient(workspace, cli, key_id: str = "analyst-1") -> tuple[Path, Path]:
    ring = workspace.root / "analyst" / "analyst.keyring"
    assert cli("keys", "new", "--out", ring, "--purpose", "recipient", "--id", key_id).code == 0
    return ring, ring.parent / f"{key_id}.pub"


def test_encrypt_and_tokenize_stages_in_a_run(workspace, cli) -> None:
    assert cli("run", workspace.config(stages=STAGES), "--quiet").code == 0
    out = pq.read_table(workspace.out / "data")
    assert out.schema.field("patient_id").type == pa.binary() and out.schema.field("age").type == pa.binary()
    ring = Keyring.load(workspace.keyring)
    report = json.loads((workspace.out / "report.json").read_text())
    assert report["keys_used"] == [ring.resolve("tokenize", None).id, ring.resolve("encrypt", None).id]
    assert [s["name"] for s in report["stages"]] == ["tokenize", "encrypt"]
    assert report["stages"][1]["format"].startswith("privprep-ciphertext-v1")
    ages = decrypt_column(out.column("age"), column="age", keys=ring.resolve, original_type=pa.int64())
    assert ages.to_pylist() == small_table().column("age").to_pylist()


def test_tokens_are_equal_across_files_batches_and_runs(workspace, cli) -> None:
    config = workspace.config(stages=STAGES, io={"batch_rows": 3, "rows_per_file": 5})
    assert cli("run", config, "--quiet").code == 0
    first = pq.read_table(workspace.out / "data").column("patient_id").to_pylist()
    assert first[0] == first[5] and first[2] is None  # "P1" twice, in two files
    assert cli("run", config, "--quiet", "--overwrite").code == 0
    assert pq.read_table(workspace.out / "data").column("patient_id").to_pylist() == first


def test_recipient_mode_seals_one_data_key_per_file(workspace, cli) -> None:
    analyst, public = recipient(workspace, cli)
    stages = [
        {"pseudonymize": {"columns": ["patient_id"]}},
        {"drop": {"columns": ["name"]}},
        {"encrypt": {"columns": ["diagnosis"], "recipient": str(public)}},
    ]
    rows = pa.concat_tables([small_table()] * 50)
    source = workspace.root / "many.parquet"
    pq.write_table(rows, source)
    config = workspace.config(input=str(source), stages=stages, io={"batch_rows": 13, "rows_per_file": 150})
    assert cli("run", config, "--quiet").code == 0
    files = sorted((workspace.out / "data").iterdir())
    assert [pq.read_metadata(f).num_rows for f in files] == [150, 150, 100]
    sealed = [pq.read_schema(f).metadata[(SEALED_KEY_PREFIX + "diagnosis").encode()] for f in files]
    assert len(set(sealed)) == 3 and all(json.loads(s)["recipient"] == "analyst-1" for s in sealed)
    report = json.loads((workspace.out / "report.json").read_text())
    assert "analyst-1" in report["keys_used"] and report["stages"][2]["recipient"] == "analyst-1"
    result = decrypt_run(workspace.out, keyring=analyst, columns=["diagnosis"])
    assert pq.read_table(result.run_dir / "data").column("diagnosis").to_pylist() == rows.column("diagnosis").to_pylist()


def test_recipient_mode_with_row_removal_and_empty_input(workspace, cli) -> None:
    analyst, public = recipient(workspace, cli)
    stages = [{"drop": {"columns": ["patient_id", "name"]}}, {"encrypt": {"columns": ["diagnosis"], "recipient": str(public)}}]
    empty = workspace.root / "empty.parquet"
    pq.write_table(small_table().slice(0, 0), empty)
    assert cli("run", workspace.config(input=str(empty), stages=stages), "--quiet").code == 0
    out = decrypt_run(workspace.out, keyring=analyst, columns=["diagnosis"])
    assert pq.read_table(out.run_dir / "data").num_rows == 0


def test_output_column_encryption(workspace, cli) -> None:
    ring = Keyring.load(workspace.keyring)
    ring.add("encrypt", key_id="footer-k")
    ring.add("encrypt", key_id="income-k")
    ring.save()
    config = workspace.config(output_encryption={"columns": {"income": "income-k", "diagnosis": None}, "footer_key": "footer-k"})
    assert cli("run", config, "--quiet").code == 0
    part = workspace.out / "data" / "part-00000.parquet"
    assert is_encrypted_file(part)
    with pytest.raises(OSError):
        pq.read_table(part)  # no footer key, no data
    table = read_table(part, keyring=Keyring.load(workspace.keyring))
    assert table.column("income").to_pylist() == small_table().column("income").to_pylist()
    report = json.loads((workspace.out / "report.json").read_text())
    assert report["output"]["encryption"] == {
        "algorithm": "AES_GCM_V1", "footer": "encrypted", "footer_key": "footer-k",
        "columns": {"income": "income-k", "diagnosis": "income-k"},  # null: the primary 'encrypt' key, added last
    }
    assert {"footer-k", "income-k"} <= set(report["keys_used"])
    assert json.loads(table.schema.metadata[METADATA_KEY.encode()])["footer_key"] == "footer-k"


def test_output_encryption_errors_fail_before_writing(workspace, cli) -> None:
    config = workspace.config(output_encryption={"columns": {"name": None}})  # dropped by a stage
    result = cli("run", config)
    assert result.code == 2 and "output_encryption.columns" in result.err and "name" in result.err
    config = workspace.config(output_encryption={"columns": {"income": "ghost-key"}})
    result = cli("run", config)
    assert result.code == 2 and "'ghost-key'" in result.err
    assert not workspace.out.exists()


def test_rotation_old_data_decrypts_new_data_uses_the_new_key(workspace, cli) -> None:
    stages = [
        {"tokenize": {"columns": ["patient_id"]}},
        {"encrypt": {"columns": ["name"]}},
    ]
    config = workspace.config(stages=stages, output_encryption={"columns": {"income": None}})
    assert cli("run", config, "--quiet", "--output", workspace.root / "before").code == 0
    old_ids = json.loads((workspace.root / "before" / "report.json").read_text())["keys_used"]
    for purpose in ("tokenize", "encrypt"):
        assert cli("keys", "rotate", workspace.keyring, "--purpose", purpose).code == 0
    assert cli("run", config, "--quiet", "--output", workspace.root / "after").code == 0
    new_ids = json.loads((workspace.root / "after" / "report.json").read_text())["keys_used"]
    assert set(old_ids).isdisjoint(new_ids)
    for run in ("before", "after"):
        result = decrypt_run(workspace.root / run, keyring=workspace.keyring, columns=["patient_id", "name", "income"])
        table = pq.read_table(result.run_dir / "data")
        assert table.column("name").to_pylist() == small_table().column("name").to_pylist()
        assert table.column("patient_id").to_pylist() == small_table().column("patient_id").to_pylist()
        assert table.column("income").to_pylist() == small_table().column("income").to_pylist()


class _DropOddAges(GlobalStage):
    """Test double of a row-removing global stage."""

    name: ClassVar[str] = "k_anonymity"
    Params = KAnonymityParams

    @classmethod
    def from_config(cls, params: Any, *, context: Any) -> "_DropOddAges":
        return cls()

    def input_columns(self) -> list[str]:
        return ["age"]

    def observe(self, table: pa.Table) -> None:
        pass

    def decide(self) -> None:
        pass

    def transform(self, table: pa.Table) -> pa.Table:
        return table.filter(pc.equal(pc.bit_wise_and(table.column("age"), 1), 0))

    def report(self) -> dict[str, Any]:  # the fields report.json requires of a k_anonymity entry
        risk = {"prosecutor_max": 1.0, "prosecutor_avg": 1.0, "sample_uniques": 0.0}
        return {
            "k": 2, "achieved_k": 2, "quasi_identifiers": ["age"], "levels": {"age": 0}, "suppressed_rows": 0,
            "equivalence_classes": 1, "information_loss": {"metric": "loss", "value": 0.0},
            "risk_before": risk, "risk_after": risk, "search": {"nodes_total": 1, "nodes_checked": 1, "seconds": 0.0},
        }


def test_recipient_mode_with_rows_removed_after_encryption(workspace, cli, monkeypatch) -> None:
    monkeypatch.setitem(registry._STAGES, "k_anonymity", _DropOddAges)
    analyst, public = recipient(workspace, cli)
    rows = pa.concat_tables([small_table()] * 40)
    source = workspace.root / "many.parquet"
    pq.write_table(rows, source)
    stages = [
        {"drop": {"columns": ["patient_id", "name"]}},
        {"encrypt": {"columns": ["diagnosis"], "recipient": str(public)}},
        {"k_anonymity": {"k": 2, "quasi_identifiers": ["age"]}},
    ]
    config = workspace.config(input=str(source), stages=stages, io={"batch_rows": 7, "rows_per_file": 100})
    assert cli("run", config, "--quiet").code == 0
    files = sorted((workspace.out / "data").iterdir())
    assert all(pq.read_metadata(f).num_rows <= 100 for f in files) and len(files) >= 2
    kept = rows.filter(pc.equal(pc.bit_wise_and(rows.column("age"), 1), 0))
    result = decrypt_run(workspace.out, keyring=analyst, columns=["diagnosis"])
    assert pq.read_table(result.run_dir / "data").column("diagnosis").to_pylist() == kept.column("diagnosis").to_pylist()
