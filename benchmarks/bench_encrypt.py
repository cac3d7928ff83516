"""Benchmark: privprep's Encrypt and Tokenize transforms beside bare `cryptography` loops.

One column of --rows short, email-like strings (~25 bytes) is built once, outside all timings. In this
one process, on the very same values and with the same key:

* encrypt  ``Encrypt(columns=["v"], key=k).transform(table)``: canonical bytes, one ``os.urandom``
  for all nonces, ``AESGCM.encrypt`` per value, the output binary column assembled in C++;
* bare GCM ``[aesgcm.encrypt(os.urandom(12), v, ad) for v in values]`` over a Python list of the values
  as bytes (built outside the timing): the hand-written script privprep must beat (goal: privprep's
  time <= 1.0x this loop's, i.e. rows/s ratio >= 1.0x);
* bare GCM, nonces pre-made ``[aesgcm.encrypt(n, v, ad) for n, v in zip(nonces, values)]`` with the
  list of nonces built outside the timing: the library's per-call cost alone, for reference;
* tokenize ``Tokenize(columns=["v"], domain="bench", key=k).transform(table)``, on all-distinct values
  and on values with 10% distinct (each distinct value is encrypted once);
* bare SIV ``[aessiv.encrypt(v, [head, domain]) for v in values]`` over every row.

The two sides of each pair run alternately (A B A B ...), once to warm up and then --repeats times; the
median is reported. Before timing, privprep's output is checked against the bare library on a sample.
The machine is shared (2 cores, other jobs): the ratio of the medians is the figure to read.

    python benchmarks/bench_encrypt.py [--rows 1000000] [--repeats 5] [--seed 0]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from typing import Callable

import cryptography
import numpy as np
import pyarrow as pa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV

from privprep.schemas.keyring import SecretKey
from privprep.transforms.encrypt import Encrypt
from privprep.transforms.tokenize import Tokenize
from privprep.transforms.ciphertext import FORMAT_ENCRYPT, FORMAT_TOKEN, header

ENCRYPT_KEY = SecretKey(id="encrypt-20260101-a1b2c3", purpose="encrypt", material=bytes(range(32)))
TOKEN_KEY = SecretKey(id="tokenize-20260101-a1b2c3", purpose="tokenize", material=bytes(range(64)))
GOAL = 0.8


def emails(rows: int, distinct_share: float, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    n_distinct = max(1, round(rows * distinct_share))
    pool = [f"user.{i:07d}@example.org" for i in rng.permutation(n_distinct)]
    if n_distinct == rows:
        return pool
    return [pool[i] for i in rng.permutation(np.arange(rows) % n_distinct)]


def alternate(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[list[float], list[float]]:
    """Time a and b alternately after one warm-up each; returns both lists of seconds."""
    a(), b()
    times_a, times_b = [], []
    for _ in range(repeats):
        for fn, times in ((a, times_a), (b, times_b)):
            gc.collect()
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return times_a, times_b


def check_encrypt(values: list[str], out: pa.Table) -> None:
    head = header(FORMAT_ENCRYPT, ENCRYPT_KEY.id)
    aead = AESGCM(ENCRYPT_KEY.material)
    column = out.column("v")
    for i in np.random.default_rng(1).integers(0, len(values), 500):
        value = column[int(i)].as_py()
        plain = aead.decrypt(value[len(head) : len(head) + 12], value[len(head) + 12 :], head + b"v")
        if plain != values[i].encode():
            raise SystemExit(f"privprep ciphertext of row {i} does not decrypt with the bare library")


def check_tokenize(values: list[str], out: pa.Table, domain: str) -> None:
    head = header(FORMAT_TOKEN, TOKEN_KEY.id)
    siv = AESSIV(TOKEN_KEY.material)
    column = out.column("v")
    for i in np.random.default_rng(2).integers(0, len(values), 500):
        if column[int(i)].as_py() != head + siv.encrypt(values[i].encode(), [head, domain.encode()]):
            raise SystemExit(f"privprep token of row {i} differs from the bare library's")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.rows < 10 or args.repeats < 1:
        parser.error("--rows must be >= 10 and --repeats >= 1")

    results = []
    values = emails(args.rows, 1.0, args.seed)
    table = pa.table({"v": pa.array(values, pa.string())})
    as_bytes = [v.encode() for v in values]

    # encrypt vs bare AES-GCM
    stage = Encrypt(columns=["v"], key=ENCRYPT_KEY)
    aead = AESGCM(ENCRYPT_KEY.material)
    associated = header(FORMAT_ENCRYPT, ENCRYPT_KEY.id) + b"v"
    nonces = [os.urandom(12) for _ in range(args.rows)]
    check_encrypt(values, stage.transform(table))

    def bare_gcm() -> list[bytes]:
        encrypt, urandom = aead.encrypt, os.urandom
        return [encrypt(urandom(12), v, associated) for v in as_bytes]

    def bare_gcm_premade() -> list[bytes]:
        encrypt = aead.encrypt
        return [encrypt(n, v, associated) for n, v in zip(nonces, as_bytes)]

    t_priv, t_bare = alternate(lambda: stage.transform(table), bare_gcm, args.repeats)
    results.append(("encrypt", "all distinct", "GCM+urandom", t_bare, t_priv, 1.0))
    t_priv, t_bare = alternate(lambda: stage.transform(table), bare_gcm_premade, args.repeats)
    results.append(("encrypt", "all distinct", "GCM, nonces made", t_bare, t_priv, GOAL))
    del nonces

    # tokenize vs bare AES-SIV, two data sets
    siv = AESSIV(TOKEN_KEY.material)
    siv_ad = [header(FORMAT_TOKEN, TOKEN_KEY.id), b"bench"]
    for label, share in (("all distinct", 1.0), ("10% distinct", 0.1)):
        if share != 1.0:
            values = emails(args.rows, share, args.seed)
            table = pa.table({"v": pa.array(values, pa.string())})
            as_bytes = [v.encode() for v in values]
        tokenizer = Tokenize(columns=["v"], domain="bench", key=TOKEN_KEY)
        check_tokenize(values, tokenizer.transform(table), "bench")

        def bare_siv(as_bytes: list[bytes] = as_bytes) -> list[bytes]:
            encrypt = siv.encrypt
            return [encrypt(v, siv_ad) for v in as_bytes]

        t_priv, t_bare = alternate(lambda t=table: tokenizer.transform(t), bare_siv, args.repeats)
        results.append(("tokenize", label, "AESSIV.encrypt", t_bare, t_priv, GOAL))

    print()
    print(f"encrypt / tokenize vs bare cryptography loops: {args.rows:,} rows of ~25-byte strings, "
          f"median of {args.repeats} alternating runs (after 1 warm-up)")
    print(f"Goals: encrypt >= 1.0x the rows/s of the bare loop with os.urandom nonces; else >= {GOAL:g}x. Python {platform.python_version()}, "
          f"cryptography {cryptography.__version__}, pyarrow {pa.__version__}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs, shared machine: figures are noisy, read the ratio")
    head = (f"{'stage':<9} {'data':<13} {'bare loop':<17} {'bare rows/s':>12} {'privprep rows/s':>16} "
            f"{'ratio':>6} {'goal':>5} {'met':>4}")
    print(head)
    print("-" * len(head))
    for stage_name, label, bare_name, t_bare, t_priv, goal in results:
        bare, priv = statistics.median(t_bare), statistics.median(t_priv)
        ratio = bare / priv
        print(f"{stage_name:<9} {label:<13} {bare_name:<17} {args.rows / bare:>12,.0f} {args.rows / priv:>16,.0f} "
              f"{ratio:>5.2f}x {goal:>4g}x {'yes' if ratio >= goal else 'NO':>4}")
    print()
    print("all timings (s):")
    for stage_name, label, bare_name, t_bare, t_priv, _ in results:
        print(f"  {stage_name:<9} {label:<13} bare ({bare_name}) " + " ".join(f"{t:.3f}" for t in t_bare))
        print(f"  {stage_name:<9} {label:<13} privprep " + " ".join(f"{t:.3f}" for t in t_priv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
