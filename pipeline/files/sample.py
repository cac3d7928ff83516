"""Seeded, reproducible synthetic ``patients`` table for demos, tests and benchmarks.

Faker is only used to build small pools (names, ZIP prefixes); every per-row choice is a
vectorized numpy draw and every string column is assembled with ``pyarrow.compute``, so a
million rows take a few seconds. Rows are produced in fixed blocks of ``_BLOCK`` rows, block
``k`` drawing from ``np.random.default_rng([seed, k])``: a row's content depends only on
``(seed, row index)``, so ``write_sample`` files concatenate to exactly ``generate_sample``.
"""

from __future__ import annotations

import functools
import os
import pathlib
import re
import unicodedata
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = ["SCHEMA", "generate_sample", "write_sample"]

SCHEMA = pa.schema([
    ("patient_id", pa.string()), ("name", pa.string()), ("email", pa.string()),
    ("phone", pa.string()), ("national_id", pa.string()), ("birth_date", pa.date32()),
    ("zip", pa.string()), ("sex", pa.string()), ("occupation", pa.string()),
    ("diagnosis", pa.string()), ("income", pa.int64()),
    ("image", pa.list_(pa.uint8(), 64)), ("label", pa.int64()),
])

_BLOCK = 1 << 16          # rows per internally seeded block
_ID_WIDTH = 8             # "P00000001"; longer ids (still unique) past 99,999,999 rows
_REF_DAY = 20089          # 2025-01-01 as days since epoch: fixed, so output never depends on today
_NULL_EMAIL, _NULL_PHONE = 0.01, 0.005
# locale, share of rows, first names per sex, last names
_LOCALES = [("en_US", 0.85, 800, 1600), ("de_DE", 0.05, 300, 600),
            ("fr_FR", 0.05, 300, 600), ("es_ES", 0.05, 300, 600)]
_DOMAINS = ["gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "icloud.com", "aol.com",
            "protonmail.com", "example.org"]
_DOMAIN_P = [0.38, 0.17, 0.12, 0.12, 0.08, 0.05, 0.04, 0.04]
# occupation, weight among working-age rows, median yearly income (USD)
_OCCUPATIONS = [
    ("Retail salesperson", 0.16, 32000), ("Office clerk", 0.13, 41000),
    ("Registered nurse", 0.10, 82000), ("Teacher", 0.10, 61000), ("Truck driver", 0.09, 52000),
    ("Software developer", 0.08, 120000), ("Cook", 0.08, 31000),
    ("Construction worker", 0.07, 47000), ("Accountant", 0.06, 78000),
    ("Electrician", 0.05, 60000), ("Mechanic", 0.04, 48000), ("Lawyer", 0.02, 135000),
    ("Physician", 0.02, 230000), ("Student", 0.0, 9000), ("Retired", 0.0, 30000),
]
_STUDENT, _RETIRED = len(_OCCUPATIONS) - 2, len(_OCCUPATIONS) - 1
_DIAGNOSES = [
    ("Hypertension", 0.18), ("Type 2 diabetes", 0.12), ("Hyperlipidemia", 0.11),
    ("Asthma", 0.09), ("Major depressive disorder", 0.08), ("Generalized anxiety disorder", 0.08),
    ("Osteoarthritis", 0.07), ("Hypothyroidism", 0.06), ("GERD", 0.06), ("Migraine", 0.06),
    ("COPD", 0.05), ("Chronic kidney disease", 0.04),
]


def _p(weights: list[float]) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return w / w.sum()


def _ascii_token(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.replace("ß", "ss")).encode("ascii", "ignore")
    return re.sub(r"[^a-z]", "", text.decode().lower()) or "user"


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """(images as uint8 (1797, 64), labels as int64) from scikit-learn's bundled digits."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data.astype(np.uint8), d.target.astype(np.int64)


@functools.lru_cache(maxsize=8)
def _pools(seed: int) -> dict[str, object]:
    """Faker-built pools (about 6,000 Faker calls, ~0.3 s), cached per seed."""
    from faker import Faker

    states = np.random.SeedSequence([seed, 0xFA4E]).generate_state(len(_LOCALES) + 1)
    first: list[str] = []            # per locale: female block then male block
    last: list[str] = []
    first_off, last_off, n_first, n_last = [], [], [], []
    for (loc, _, nf, nl), state in zip(_LOCALES, states):
        fake = Faker(loc)
        fake.seed_instance(int(state))
        first_off.append(len(first))
        first += [fake.first_name_female() for _ in range(nf)]
        first += [fake.first_name_male() for _ in range(nf)]
        last_off.append(len(last))
        last += [fake.last_name() for _ in range(nl)]
        n_first.append(nf)
        n_last.append(nl)
    # ~300 ZIPs: 20 real-looking 3-digit prefixes x 15 suffixes, skewed "population" weights
    fake = Faker("en_US")
    fake.seed_instance(int(states[-1]))
    prefixes: dict[str, None] = {}    # insertion-ordered dedup (never iterate a set)
    while len(prefixes) < 20:
        prefixes[fake.zipcode()[:3]] = None
    rng = np.random.default_rng([seed, 0x21F])
    zips = [f"{p}{s:02d}" for p in prefixes for s in sorted(rng.choice(100, 15, replace=False))]
    return {
        "first": pa.array(first), "last": pa.array(last),
        "first_ascii": pa.array([_ascii_token(x) for x in first]),
        "last_ascii": pa.array([_ascii_token(x) for x in last]),
        "first_off": np.array(first_off), "last_off": np.array(last_off),
        "n_first": np.array(n_first), "n_last": np.array(n_last),
        "zips": pa.array(zips), "zip_p": _p(list(rng.lognormal(0.0, 1.0, len(zips)))),
    }


def _digits_str(values: np.ndarray, width: int) -> pa.Array:
    return pc.utf8_lpad(pc.cast(pa.array(values), pa.string()), width, "0")


def _join(*parts: pa.Array | str, sep: str = "") -> pa.Array:
    return pc.binary_join_element_wise(*parts, sep)


def _nanp3(rng: np.random.Generator, n: int, second: int) -> np.ndarray:
    """NANP-style 3-digit code: first digit 2-9, second < ``second``, never N11."""
    code = 100 * rng.integers(2, 10, n) + 10 * rng.integers(0, second, n) + rng.integers(0, 10, n)
    return code - 10 * (code % 100 == 11)


def _block(seed: int, k: int) -> pa.Table:
    """Block ``k``: rows ``k*_BLOCK .. (k+1)*_BLOCK - 1``, always generated in full."""
    n, pools = _BLOCK, _pools(seed)
    rng = np.random.default_rng([seed, k])
    ids = np.arange(k * n + 1, (k + 1) * n + 1)
    # names: locale, then sex-specific first name and a last name from that locale's pools
    loc = rng.choice(len(_LOCALES), n, p=_p([x[1] for x in _LOCALES]))
    female = rng.random(n) < 0.5
    fi = (pools["first_off"][loc] + np.where(female, 0, pools["n_first"][loc])
          + (rng.random(n) * pools["n_first"][loc]).astype(np.int64))
    li = pools["last_off"][loc] + (rng.random(n) * pools["n_last"][loc]).astype(np.int64)
    name = _join(pools["first"].take(fi), pools["last"].take(li), sep=" ")
    email = _join(pools["first_ascii"].take(fi), ".", pools["last_ascii"].take(li),
                  _digits_str(rng.integers(1, 100, n), 1), "@",
                  pa.array(_DOMAINS).take(rng.choice(len(_DOMAINS), n, p=_p(_DOMAIN_P))))
    phone = _join(_digits_str(_nanp3(rng, n, 9), 3), _digits_str(_nanp3(rng, n, 10), 3),
                  _digits_str(rng.integers(0, 10000, n), 4), sep="-")
    area = rng.integers(1, 899, n)              # SSN area 001-899 without 666
    ssn = _join(_digits_str(area + (area >= 666), 3), _digits_str(rng.integers(1, 100, n), 2),
                _digits_str(rng.integers(1, 10000, n), 4), sep="-")
    # adult ages 18-90: flat to 60, then thinning out towards 90
    ages = np.arange(18, 91)
    age = rng.choice(ages, n, p=_p(list(np.where(ages <= 60, 1.0, 1.0 - 0.9 * (ages - 60) / 30))))
    birth = (_REF_DAY - np.ceil(age * 365.2425) - rng.integers(0, 365, n)).astype(np.int32)
    occ = rng.choice(len(_OCCUPATIONS), n, p=_p([x[1] for x in _OCCUPATIONS]))
    occ = np.where((age <= 24) & (rng.random(n) < 0.5), _STUDENT, occ)
    occ = np.where((age >= 65) & (rng.random(n) < 0.8), _RETIRED, occ)
    median = np.array([x[2] for x in _OCCUPATIONS], dtype=float)[occ]
    income = np.clip(np.round(median * rng.lognormal(0.0, 0.45, n), -2), 0, 500_000)
    images, labels = _digits()
    pick = rng.integers(0, len(labels), n)
    cols = [
        _join("P", _digits_str(ids, _ID_WIDTH)), name,
        pc.if_else(pa.array(rng.random(n) < _NULL_EMAIL), pa.scalar(None, pa.string()), email),
        pc.if_else(pa.array(rng.random(n) < _NULL_PHONE), pa.scalar(None, pa.string()), phone),
        ssn, pa.array(birth, pa.int32()).cast(pa.date32()),
        pools["zips"].take(rng.choice(len(pools["zips"]), n, p=pools["zip_p"])),
        pa.array(np.where(female, "F", "M")),
        pa.array([x[0] for x in _OCCUPATIONS]).take(occ),
        pa.array([x[0] for x in _DIAGNOSES]).take(rng.choice(len(_DIAGNOSES), n, p=_p([x[1] for x in _DIAGNOSES]))),
        pa.array(income.astype(np.int64)),
        pa.FixedSizeListArray.from_arrays(pa.array(images[pick].ravel()), 64), pa.array(labels[pick]),
    ]
    return pa.Table.from_arrays(cols, schema=SCHEMA)


def _check(rows: int, seed: int) -> None:
    if rows < 0 or seed < 0:
        raise ValueError(f"rows and seed must be >= 0, got rows={rows}, seed={seed}")


def _iter_rows(rows: int, seed: int) -> Iterator[pa.Table]:
    """Blocks covering rows [0, rows), the last one sliced; one block in memory at a time."""
    for k in range(-(-rows // _BLOCK)):
        yield _block(seed, k).slice(0, min(_BLOCK, rows - k * _BLOCK))


def generate_sample(rows: int, *, seed: int = 0) -> pa.Table:
    """Return a synthetic patients table of ``rows`` rows (same ``(rows, seed)`` -> same table).

    Rows do not depend on ``rows``: ``generate_sample(10)`` is the first 10 rows of
    ``generate_sample(1000)``.

    >>> t = generate_sample(5, seed=1)
    >>> t.num_rows, t.column_names[:3], t["patient_id"][0].as_py()
    (5, ['patient_id', 'name', 'email'], 'P00000001')
    >>> t.equals(generate_sample(5, seed=1))
    True
    >>> generate_sample(0).schema == SCHEMA
    True
    """
    _check(rows, seed)
    tables = list(_iter_rows(rows, seed))
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table()


def write_sample(rows: int, out_dir: str | os.PathLike[str], *, seed: int = 0,
                 rows_per_file: int = 1_000_000,
                 progress: Callable[[int], None] | None = None) -> list[pathlib.Path]:
    """Write the sample as Parquet (zstd) under ``out_dir`` (created if missing); return the paths.

    ``out_dir/patients.parquet`` when ``rows <= rows_per_file``, else ``patients-00000.parquet``,
    ``patients-00001.parquet``, ... of ``rows_per_file`` rows each, streamed block by block
    (memory stays bounded). Each file is written under a temporary name, then ``os.replace``-d.
    ``progress(rows_written_so_far)`` is called after each file. The files concatenate to
    ``generate_sample(rows, seed=seed)``.

    >>> import tempfile, pyarrow.parquet as pq
    >>> with tempfile.TemporaryDirectory() as d:
    ...     paths = write_sample(2500, d, seed=3, rows_per_file=1000)
    ...     [p.name for p in paths], sum(pq.read_metadata(p).num_rows for p in paths)
    (['patients-00000.parquet', 'patients-00001.parquet', 'patients-00002.parquet'], 2500)
    """
    _check(rows, seed)
    if rows_per_file < 1:
        raise ValueError(f"rows_per_file must be >= 1, got {rows_per_file}")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_files = max(1, -(-rows // rows_per_file))
    names = (["patients.parquet"] if n_files == 1
             else [f"patients-{i:05d}.parquet" for i in range(n_files)])
    blocks, pending = _iter_rows(rows, seed), None    # pending: unwritten rows of current block
    paths, written = [], 0
    for i, name in enumerate(names):
        final, tmp = out / name, out / f".{name}.{os.getpid()}.tmp"
        want = min(rows_per_file, rows - written) if n_files > 1 else rows
        try:
            with pq.ParquetWriter(tmp, SCHEMA, compression="zstd") as writer:
                if want == 0:
                    writer.write_table(SCHEMA.empty_table())
                while want > 0:
                    if pending is None or pending.num_rows == 0:
                        pending = next(blocks)
                    part, pending = pending.slice(0, want), pending.slice(want)
                    writer.write_table(part)
                    want -= part.num_rows
                    written += part.num_rows
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        paths.append(final)
        if progress is not None:
            progress(written)
    return paths
