"""Tests for privprep.pipeline.files.sample (synthetic patients table)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from privprep.pipeline.files.sample import generate_sample, write_sample

EXPECTED = [
    ("patient_id", pa.string()), ("name", pa.string()), ("email", pa.string()),
    ("phone", pa.string()), ("national_id", pa.string()), ("birth_date", pa.date32()),
    ("zip", pa.string()), ("sex", pa.string()), ("occupation", pa.string()),
    ("diagnosis", pa.string()), ("income", pa.int64()),
    ("image", pa.list_(pa.uint8(), 64)), ("label", pa.int64()),
]


@pytest.fixture(scope="module")
def big() -> pa.Table:
    return generate_sample(100_000, seed=11)


def _digest(table: pa.Table) -> str:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table.combine_chunks())
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def test_schema_and_row_count() -> None:
    t = generate_sample(500, seed=1)
    assert t.num_rows == 500
    assert [(f.name, f.type) for f in t.schema] == EXPECTED


def test_zero_rows_has_same_schema() -> None:
    t = generate_sample(0)
    assert t.num_rows == 0
    assert t.schema == generate_sample(3).schema


def test_negative_rows_rejected() -> None:
    with pytest.raises(ValueError):
        generate_sample(-1)


def test_deterministic_for_a_seed() -> None:
    assert generate_sample(2000, seed=7).equals(generate_sample(2000, seed=7))


def test_different_seeds_differ() -> None:
    a, b = generate_sample(1000, seed=1), generate_sample(1000, seed=2)
    for col in ("name", "national_id", "birth_date", "income"):
        assert not a[col].equals(b[col]), col
    assert a["patient_id"].equals(b["patient_id"])  # ids are positional


def test_rows_do_not_depend_on_requested_count() -> None:
    # crosses the internal 65,536-row block boundary
    long = generate_sample(70_000, seed=5)
    assert generate_sample(100, seed=5).equals(long.slice(0, 100))
    assert generate_sample(66_000, seed=5).equals(long.slice(0, 66_000))


@pytest.mark.slow
def test_independent_of_pythonhashseed() -> None:
    code = (
        "import sys, hashlib, pyarrow as pa\n"
        "from privprep.pipeline.files.sample import generate_sample\n"
        "t = generate_sample(300, seed=4).combine_chunks()\n"
        "sink = pa.BufferOutputStream()\n"
        "w = pa.ipc.new_stream(sink, t.schema); w.write_table(t); w.close()\n"
        "print(hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest())\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    digests = {
        subprocess.run([sys.executable, "-c", code], env=dict(env, PYTHONHASHSEED=h),
                       check=True, capture_output=True, text=True).stdout.strip()
        for h in ("1", "2")
    }
    assert digests == {_digest(generate_sample(300, seed=4))}


def test_ids_unique_and_formatted(big: pa.Table) -> None:
    ids = big["patient_id"]
    assert pc.count_distinct(ids).as_py() == big.num_rows
    assert pc.all(pc.match_substring_regex(ids, r"^P\d{8}$")).as_py()


def test_labels_match_images(big: pa.Table) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    ref = digits.data.astype(np.uint8)
    images = big["image"].combine_chunks().flatten().to_numpy().reshape(-1, 64)
    labels = big["label"].to_numpy()
    assert images.dtype == np.uint8 and images.max() <= 16
    assert set(np.unique(labels)) == set(range(10))
    for i in [0, 1, 2, 777, 65_535, 65_536, big.num_rows - 1]:
        matches = np.flatnonzero((ref == images[i]).all(axis=1))
        assert matches.size and labels[i] in set(digits.target[matches]), i


def test_null_shares(big: pa.Table) -> None:
    assert 0.007 < big["email"].null_count / big.num_rows < 0.013
    assert 0.003 < big["phone"].null_count / big.num_rows < 0.007
    for col in big.column_names:
        if col not in ("email", "phone"):
            assert big[col].null_count == 0, col


def test_string_formats(big: pa.Table) -> None:
    def all_match(col: str, pattern: str) -> bool:
        return pc.all(pc.match_substring_regex(big[col].drop_null(), pattern)).as_py()

    assert all_match("email", r"^[a-z]+\.[a-z]+\d{1,2}@[a-z]+\.[a-z]+$")
    assert all_match("phone", r"^[2-9]\d\d-[2-9]\d\d-\d{4}$")
    assert all_match("national_id", r"^\d{3}-\d{2}-\d{4}$")
    assert all_match("zip", r"^\d{5}$")
    assert not pc.any(pc.starts_with(big["national_id"], "666-")).as_py()
    non_ascii = 1 - pc.mean(pc.cast(pc.string_is_ascii(big["name"]), pa.int8())).as_py()
    assert 0.01 < non_ascii < 0.2


def test_distributions(big: pa.Table) -> None:
    zips = big["zip"]
    assert 200 <= pc.count_distinct(zips).as_py() <= 400
    assert pc.count_distinct(pc.utf8_slice_codeunits(zips, 0, 3)).as_py() <= 30
    assert 0.45 < pc.mean(pc.cast(pc.equal(big["sex"], "F"), pa.int8())).as_py() < 0.55
    assert pc.unique(big["sex"]).to_pylist() in (["F", "M"], ["M", "F"])
    assert 10 <= pc.count_distinct(big["occupation"]).as_py() <= 20
    assert 10 <= pc.count_distinct(big["diagnosis"]).as_py() <= 15
    income = big["income"].to_numpy()
    assert income.min() >= 0 and income.max() <= 500_000
    assert 25_000 < np.median(income) < 80_000
    days = big["birth_date"].cast(pa.int32()).to_numpy()
    ages = (20089 - days) / 365.2425  # relative to 2025-01-01
    assert ages.min() >= 18 and ages.max() < 91
    assert 35 < ages.mean() < 60


def test_write_single_file(tmp_path) -> None:
    out = tmp_path / "new" / "dir"
    calls: list[int] = []
    paths = write_sample(1500, out, seed=3, progress=calls.append)
    assert [p.name for p in paths] == ["patients.parquet"]
    assert pq.read_table(paths[0]).equals(generate_sample(1500, seed=3))
    assert calls == [1500]
    assert sorted(p.name for p in out.iterdir()) == ["patients.parquet"]


def test_write_split_files(tmp_path) -> None:
    calls: list[int] = []
    paths = write_sample(70_000, tmp_path, seed=9, rows_per_file=30_000, progress=calls.append)
    assert [p.name for p in paths] == [f"patients-{i:05d}.parquet" for i in range(3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in paths]  # no temp files
    parts = [pq.read_table(p) for p in paths]
    assert [t.num_rows for t in parts] == [30_000, 30_000, 10_000]
    assert calls == [30_000, 60_000, 70_000]
    whole = pa.concat_tables(parts)
    assert pc.count_distinct(whole["patient_id"]).as_py() == 70_000
    assert whole.equals(generate_sample(70_000, seed=9))


def test_write_zero_rows(tmp_path) -> None:
    paths = write_sample(0, tmp_path)
    t = pq.read_table(paths[0])
    assert t.num_rows == 0 and t.schema == generate_sample(0).schema
