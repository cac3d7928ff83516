"""The encrypt stage against the documented layout, decrypted with the `cryptography` library directly
(an independent reference), plus round trips, types, nulls and tamper detection."""

from __future__ import annotations

import datetime as dt
import decimal

import pandas as pd
import pyarrow as pa
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from privprep.schemas.errors import DataError, KeyringError, PrivprepError
from privprep.schemas.keyring import SecretKey
from privprep.transforms import Encrypt, decrypt_column, registry
from privprep.transforms.protected import Protection

KEY = SecretKey(id="enc-2026", purpose="encrypt", material=bytes(range(32)))
OTHER = SecretKey(id="enc-other", purpose="encrypt", material=bytes(range(1, 33)))


def reference_decrypt(value: bytes, key: bytes, column: str) -> bytes:
    """docs/encryption.md written out: 0x01, L, key id, 12-byte nonce, ciphertext||tag; AD = header || column."""
    assert value[0] == 0x01
    length = value[1]
    head = value[: 2 + length]
    nonce = value[2 + length : 2 + length + 12]
    return AESGCM(key).decrypt(nonce, value[2 + length + 12 :], head + column.encode())


def encrypt(values: list, column: str = "c", kind: pa.DataType | None = None, key: SecretKey = KEY) -> pa.Table:
    return Encrypt(columns=[column], key=key).apply(pa.table({column: pa.array(values, kind)}))


def test_layout_matches_the_documentation_and_the_library() -> None:
    out = encrypt(["flu", "Zoë Ørsted 李", ""]).column("c").to_pylist()
    for value, plain in zip(out, ["flu", "Zoë Ørsted 李", ""]):
        assert value[:2] == bytes([0x01, len("enc-2026")]) and value[2:10] == b"enc-2026"
        assert len(value) == 2 + 8 + 12 + len(plain.encode()) + 16
        assert reference_decrypt(value, KEY.material, "c") == plain.encode()


def test_randomized_same_value_different_ciphertexts() -> None:
    out = encrypt(["flu"] * 50).column("c").to_pylist()
    assert len(set(out)) == 50
    assert len({v[10:22] for v in out}) == 50  # fresh nonces


@pytest.mark.parametrize(
    "values, kind",
    [
        (["a", None, "", "Zoë", "x" * 100_000], pa.string()),
        (["a", None], pa.large_string()),
        ([b"\x00\xff", None, b""], pa.binary()),
        ([1, None, -(2**63)], pa.int64()),
        ([0.1, None, 1e300, -3.5e-7], pa.float64()),
        ([True, False, None], pa.bool_()),
        ([dt.date(1970, 1, 1), None, dt.date(2031, 12, 31)], pa.date32()),
        ([dt.datetime(2020, 1, 2, 3, 4, 5, 678901), None], pa.timestamp("us")),
        ([dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)], pa.timestamp("us", "UTC")),
        ([decimal.Decimal("12.34"), None], pa.decimal128(6, 2)),
    ],
)
def test_round_trip_keeps_type_values_and_nulls(values: list, kind: pa.DataType) -> None:
    table = encrypt(values, kind=kind)
    field = table.schema.field("c")
    assert field.type == pa.binary()
    note = Protection.from_field(field)
    assert note is not None and note.original_type == kind and note.key_id == KEY.id
    back = decrypt_column(table.column("c"), column="c", keys=KEY, original_type=note.original_type)
    assert back.type == kind and back.to_pylist() == pa.array(values, kind).to_pylist()


def test_dictionary_column_round_trips() -> None:
    source = pa.array(["x", "y", None, "x"]).dictionary_encode()
    table = Encrypt(columns=["c"], key=KEY).apply(pa.table({"c": source}))
    back = decrypt_column(table.column("c"), column="c", keys=KEY, original_type=source.type)
    assert back.type == source.type and back.to_pylist() == source.to_pylist()


def test_pandas_series_and_input_not_mutated() -> None:
    series = pd.Series(["a", None, "b"], name="dx")
    before = series.copy()
    out = Encrypt(key=KEY).apply(series)
    pd.testing.assert_series_equal(series, before)
    assert pd.isna(out.iloc[1]) and isinstance(out.iloc[0], bytes)


def test_many_rows_cross_chunk_boundaries() -> None:
    values = [f"v{i}" if i % 7 else None for i in range(140_001)]
    table = encrypt(values)
    assert decrypt_column(table.column("c"), column="c", keys=KEY, original_type=pa.string()).to_pylist() == values


def test_every_single_flipped_byte_is_rejected() -> None:
    value = encrypt(["diagnosis: flu"]).column("c")[0].as_py()
    for position in range(len(value)):
        for flip in (0x01, 0x80, 0xFF):
            altered = bytearray(value)
            altered[position] ^= flip
            with pytest.raises(PrivprepError) as caught:
                decrypt_column(pa.array([bytes(altered)]), column="c", keys=[KEY, OTHER], original_type=pa.string())
            assert "flu" not in str(caught.value)


def test_truncated_and_extended_values_are_rejected() -> None:
    value = encrypt(["flu"]).column("c")[0].as_py()
    for altered in (value[:-1], value + b"\x00", value[:5], b"", b"\x01"):
        with pytest.raises(DataError):
            decrypt_column(pa.array([altered]), column="c", keys=KEY)


def test_ciphertext_copied_into_another_column_fails() -> None:
    table = Encrypt(columns=["a", "b"], key=KEY).apply(pa.table({"a": ["flu"], "b": ["cold"]}))
    assert decrypt_column(table.column("a"), column="a", keys=KEY, original_type=pa.string()).to_pylist() == ["flu"]
    with pytest.raises(DataError, match=r"column 'b': 1 value\(s\) fail authentication under key 'enc-2026', first at row 0"):
        decrypt_column(table.column("a"), column="b", keys=KEY)


def test_failed_rows_are_counted_and_the_first_named() -> None:
    values = encrypt(["a", "b", "c", "d"]).column("c").to_pylist()
    values[2] = values[2][:-1] + bytes([values[2][-1] ^ 1])
    values[3] = values[3][:-1] + bytes([values[3][-1] ^ 1])
    with pytest.raises(DataError, match=r"2 value\(s\) fail authentication .* first at row 12"):
        decrypt_column(pa.array(values), column="c", keys=KEY, row_offset=10)


def test_missing_and_wrong_keys_name_the_key_id() -> None:
    ciphertexts = encrypt(["flu"]).column("c")
    with pytest.raises(KeyringError, match="column 'c' needs encrypt key 'enc-2026'"):
        decrypt_column(ciphertexts, column="c", keys=OTHER)
    impostor = SecretKey(id="enc-2026", purpose="encrypt", material=bytes(32))
    with pytest.raises(DataError, match="under key 'enc-2026'"):
        decrypt_column(ciphertexts, column="c", keys=impostor)


def test_values_under_two_keys_in_one_column_decrypt() -> None:
    first = encrypt(["a", None], key=KEY).column("c").to_pylist()
    second = encrypt(["b"], key=OTHER).column("c").to_pylist()
    mixed = pa.array([second[0], first[0], None, first[1]], pa.binary())
    back = decrypt_column(mixed, column="c", keys=[KEY, OTHER], original_type=pa.string())
    assert back.to_pylist() == ["b", "a", None, None]


def test_stage_contract_schema_report_and_registry() -> None:
    stage = Encrypt(columns=["c"], key=KEY)
    assert registry.get("encrypt") is Encrypt
    schema = stage.output_schema(pa.schema([("c", pa.int32()), ("d", pa.string())]))
    assert schema.field("c").type == pa.binary() and schema.field("d").type == pa.string()
    assert stage.keys_used() == ["enc-2026"]
    assert stage.report()["key"] == "enc-2026" and "material" not in str(stage.report())
    with pytest.raises(DataError, match="type time64"):
        stage.output_schema(pa.schema([("c", pa.time64("us"))]))
    with pytest.raises(ValueError):
        Encrypt(columns=["c"])
    with pytest.raises(ValueError):
        Encrypt(columns=["c"], key=b"short")
