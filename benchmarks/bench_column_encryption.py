"""Benchmark: Parquet modular encryption (privprep's keyring KMS) against the same table in plaintext.

A 1,000,000-row, 5-column table (two strings, an int64, a float64, a date) is built once, seeded,
outside all timings. In this one process, into a temporary folder, with the same pyarrow writer
options (zstd, as privprep writes):

* plaintext write  ``pq.write_table(table, path)``;
* encrypted write  ``pq.write_table(table, path, encryption_properties=spec.properties())``, where
  ``spec`` is a :class:`privprep.pipeline.keys.column_encryption.ColumnEncryption` that encrypts all five
  columns under two keyring keys and the footer under a third (AES_GCM_V1, double wrapping, encrypted
  footer); making the properties (data keys, wrapping through the KMS client) is inside the timing;
* plaintext read   ``privprep.pipeline.keys.column_encryption.read_table(path, keyring=None)`` (the same
  reading path, ``pq.ParquetFile(path).read()``, without keys);
* encrypted read   ``privprep.pipeline.keys.column_encryption.read_table(path, keyring=ring)``: key checks,
  decryption properties, unwrapping through the KMS client, the read.

The four run in turn (write-plain, write-encrypted, read-plain, read-encrypted), once to warm up and
then --repeats times; the median is reported. The encrypted read is checked to equal the table.

    python benchmarks/bench_column_encryption.py [--rows 1000000] [--repeats 5] [--seed 0]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from privprep.pipeline.keys.column_encryption import ColumnEncryption, read_table
from privprep.pipeline.keys.keyring import Keyring

GOAL = 1.25


def make_table(rows: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    ids = rng.permutation(rows)
    return pa.table({
        "patient_id": pa.array([f"P{i:08d}" for i in ids]),
        "email": pa.array([f"user.{i:07d}@example.org" for i in rng.integers(0, rows, rows)]),
        "income": pa.array(rng.integers(0, 500_000, rows), pa.int64()),
        "score": pa.array(rng.normal(0, 1, rows)),
        "visit": pa.array(np.datetime64("2020-01-01") + rng.integers(0, 2_000, rows).astype("timedelta64[D]")),
    })


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.rows < 1 or args.repeats < 1:
        parser.error("--rows and --repeats must be >= 1")

    table = make_table(args.rows, args.seed)
    with tempfile.TemporaryDirectory(prefix="privprep-bench-") as folder:
        root = Path(folder)
        ring = Keyring.create(root / "bench.keyring", purpose="encrypt", key_id="footer-key")
        ring.add("encrypt", key_id="id-key")
        ring.add("encrypt", key_id="data-key")
        ring.save()
        spec = ColumnEncryption.build(
            ring,
            columns={"patient_id": "id-key", "email": "id-key", "income": "data-key", "score": "data-key", "visit": "data-key"},
            footer_key="footer-key",
        )
        plain_path, secret_path = root / "plain.parquet", root / "encrypted.parquet"
        steps = {
            "write plaintext": lambda: pq.write_table(table, plain_path, compression="zstd"),
            "write encrypted": lambda: pq.write_table(table, secret_path, compression="zstd", encryption_properties=spec.properties()),
            "read plaintext": lambda: read_table(plain_path, keyring=None),
            "read encrypted": lambda: read_table(secret_path, keyring=ring),
        }
        for step in steps.values():  # warm-up
            step()
        if not read_table(secret_path, keyring=ring).equals(table):
            raise SystemExit("the encrypted file does not read back as the table")
        times: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(args.repeats):
            for name, step in steps.items():
                gc.collect()
                t0 = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - t0)
        sizes = {"plaintext": plain_path.stat().st_size, "encrypted": secret_path.stat().st_size}

    median = {name: statistics.median(values) for name, values in times.items()}
    print()
    print(f"Parquet column encryption vs plaintext: {args.rows:,} rows x 5 columns, zstd, "
          f"median of {args.repeats} (after 1 warm-up)")
    print(f"Goal: encrypted <= {GOAL:g}x plaintext on write and on read. Python {platform.python_version()}, "
          f"pyarrow {pa.__version__}, {platform.machine()}, {os.cpu_count()} CPUs, shared machine: figures are noisy")
    head = (f"{'operation':<9} {'plaintext s':>11} {'encrypted s':>11} {'ratio':>6} {'goal':>5} {'met':>4}"
            f" {'ratio of fastest':>17}")
    print(head)
    print("-" * len(head))
    for op in ("write", "read"):
        plain, secret = median[f"{op} plaintext"], median[f"{op} encrypted"]
        ratio = secret / plain
        fastest = min(times[f"{op} encrypted"]) / min(times[f"{op} plaintext"])
        print(f"{op:<9} {plain:>11.3f} {secret:>11.3f} {ratio:>5.2f}x {GOAL:>4g}x {'yes' if ratio <= GOAL else 'NO':>4}"
              f" {fastest:>16.2f}x")
    print(f"file size: plaintext {sizes['plaintext'] / 1e6:.1f} MB, encrypted {sizes['encrypted'] / 1e6:.1f} MB")
    print()
    print("all timings (s):")
    for name, values in times.items():
        print(f"  {name:<16} " + " ".join(f"{t:.3f}" for t in values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
