"""Pseudonyms against an independent reference: RFC 5869 HKDF and RFC 2104 HMAC from the standard library."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys

import pandas as pd
import pyarrow as pa
import pytest

from privprep.schemas.keyring import SecretKey
from privprep.transforms import Pseudonymize
from privprep.transforms.pseudonymize import HmacSha256, derive_domain_key

KEY = bytes(range(32))


def reference_pseudonym(material: bytes, domain: str, value: str) -> str:
    """SPEC §6 written out with hmac/hashlib only: HKDF-SHA256 (empty salt), then HMAC-SHA256, 128 bits hex."""
    prk = hmac.new(b"\0" * 32, material, hashlib.sha256).digest()
    okm = hmac.new(prk, f"privprep/pseudonym/v1/{domain}".encode() + b"\x01", hashlib.sha256).digest()
    return "p1_" + hmac.new(okm, value.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def test_hkdf_matches_rfc5869_construction() -> None:
    prk = hmac.new(b"\0" * 32, KEY, hashlib.sha256).digest()
    expected = hmac.new(prk, b"privprep/pseudonym/v1/patients\x01", hashlib.sha256).digest()
    assert derive_domain_key(KEY, "patients") == expected


@pytest.mark.parametrize("message", [b"", b"a", b"x" * 64, b"y" * 65, "Zoë".encode(), b"z" * 10_000])
def test_hmac_matches_stdlib(message: bytes) -> None:
    for key in (b"k", b"k" * 32, b"k" * 64, b"k" * 100):
        assert HmacSha256(key).digests([message]) == hmac.digest(key, message, "sha256")


def test_known_value_and_format() -> None:
    out = Pseudonymize(columns=["id"], domain="patients", key=KEY).apply(pa.table({"id": ["alice"]}))
    value = out.column("id")[0].as_py()
    assert value == reference_pseudonym(KEY, "patients", "alice")
    assert len(value) == 35 and value.startswith("p1_")
    int(value[3:], 16)


def test_awkward_values_nulls_empty_long_non_ascii() -> None:
    values = ["alice", None, "", "Zoë Ørsted 李", "x" * 100_000, "alice"]
    out = Pseudonymize(columns=["id"], domain="d", key=KEY).apply(pa.table({"id": values})).column("id").to_pylist()
    assert out[1] is None
    for got, value in zip(out, values):
        if value is not None:
            assert got == reference_pseudonym(KEY, "d", value)
    assert out[0] == out[5] and len(set(out[:5])) == 5


def test_same_across_batches_and_orders() -> None:
    values = [f"user{i % 37}" for i in range(500)]
    stage = Pseudonymize(columns=["id"], domain="d", key=KEY)
    whole = stage.apply(pa.table({"id": values})).column("id").to_pylist()
    parts = [stage.apply(pa.table({"id": values[i : i + 7]})).column("id").to_pylist() for i in range(0, 500, 7)]
    assert [p for part in parts for p in part] == whole
    reversed_out = stage.apply(pa.table({"id": values[::-1]})).column("id").to_pylist()
    assert reversed_out == whole[::-1]


def test_same_across_processes_and_hash_seeds() -> None:
    code = (
        "import pyarrow as pa; from privprep.transforms import Pseudonymize;"
        "print(Pseudonymize(columns=['id'], domain='d', key=bytes(range(32)))"
        ".apply(pa.table({'id': ['a', 'b', 'a']})).column('id').to_pylist())"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code], env={"PYTHONHASHSEED": seed, "PATH": ""}, capture_output=True, text=True, check=True
        ).stdout
        for seed in ("0", "1", "12345")
    }
    assert len(outputs) == 1
    assert reference_pseudonym(KEY, "d", "a") in outputs.pop()


def test_domain_and_key_separate_pseudonyms() -> None:
    table = pa.table({"id": ["alice"]})
    a = Pseudonymize(columns=["id"], domain="patients", key=KEY).apply(table).column("id")[0]
    b = Pseudonymize(columns=["id"], domain="staff", key=KEY).apply(table).column("id")[0]
    c = Pseudonymize(columns=["id"], domain="patients", key=b"\x01" * 32).apply(table).column("id")[0]
    assert len({a, b, c}) == 3


def test_domain_defaults_to_column_name() -> None:
    out = Pseudonymize(key=KEY).apply(pa.table({"email": ["a@x.org"]})).column("email")[0].as_py()
    assert out == reference_pseudonym(KEY, "email", "a@x.org")


def test_integers_hash_as_decimal_text_and_join_with_strings() -> None:
    ints = Pseudonymize(columns=["id"], domain="d", key=KEY).apply(pa.table({"id": pa.array([123, None], pa.int64())}))
    strs = Pseudonymize(columns=["id"], domain="d", key=KEY).apply(pa.table({"id": ["123", None]}))
    assert ints.column("id").to_pylist() == strs.column("id").to_pylist()


def test_dictionary_and_chunked_columns() -> None:
    plain = pa.table({"id": ["a", "b", None, "a"]})
    chunked = pa.Table.from_batches(plain.to_batches(max_chunksize=1))
    dictionary = pa.table({"id": pa.array(["a", "b", None, "a"]).dictionary_encode()})
    stage = Pseudonymize(columns=["id"], domain="d", key=KEY)
    expected = stage.apply(plain).column("id").to_pylist()
    assert stage.apply(chunked).column("id").to_pylist() == expected
    assert stage.apply(dictionary).column("id").to_pylist() == expected


def test_pandas_frame_with_non_default_index_is_not_mutated() -> None:
    frame = pd.DataFrame({"id": ["b", "a", None], "x": [1, 2, 3]}, index=[10, 3, 7])
    before = frame.copy(deep=True)
    out = Pseudonymize(columns=["id"], domain="d", key=KEY).apply(frame)
    pd.testing.assert_frame_equal(frame, before)
    assert list(out.index) == [10, 3, 7]
    assert out.loc[3, "id"] == reference_pseudonym(KEY, "d", "a")
    assert out.loc[10, "id"] == reference_pseudonym(KEY, "d", "b")
    assert pd.isna(out.loc[7, "id"]) and out["x"].tolist() == [1, 2, 3]


def test_series_and_record_batch() -> None:
    stage = Pseudonymize(domain="d", key=KEY)
    series = stage.apply(pd.Series(["a"], name="id"))
    assert series.name == "id" and series[0] == reference_pseudonym(KEY, "d", "a")
    batch = stage.apply(pa.record_batch({"id": ["a"]}))
    assert isinstance(batch, pa.RecordBatch) and batch.column(0)[0].as_py() == series[0]


def test_empty_and_all_null_columns() -> None:
    stage = Pseudonymize(columns=["id"], domain="d", key=KEY)
    assert stage.apply(pa.table({"id": pa.array([], pa.string())})).num_rows == 0
    out = stage.apply(pa.table({"id": pa.array([None, None], pa.string())}))
    assert out.column("id").to_pylist() == [None, None] and out.schema.field("id").type == pa.string()


def test_key_is_never_shown() -> None:
    key = SecretKey(id="k1", purpose="pseudonymize", material=b"S" * 32)
    stage = Pseudonymize(columns=["id"], domain="d", key=key)
    assert "SSSS" not in repr(key) + str(key) + repr(stage.report()) + repr(vars(stage))[:0]
    assert stage.keys_used() == ["k1"]


def test_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        Pseudonymize(columns=["id"], key=b"short")
