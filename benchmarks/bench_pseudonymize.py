"""Benchmark: privprep's Pseudonymize transform against a plain per-row HMAC loop.

Two data sets of --rows short, email-like strings are built once (seeded, outside all timings):

* ``10% distinct``: rows/10 distinct emails, each repeated 10 times, shuffled;
* ``all distinct``: every row a different email.

For each data set, in this one process and on the very same values:

* privprep:   ``Pseudonymize(columns=["v"], domain="bench", key=b"k"*32).transform(table)`` on a
  pyarrow Table with one string column (construction of the stage is inside the timing; it is
  microseconds);
* plain loop: ``[hmac.new(k, v.encode(), hashlib.sha256).hexdigest()[:32] for v in values]`` over a
  Python list of the same values (the list is built outside the timing).

Each is run once to warm up, then --repeats times; the median is reported. Before timing, the
privprep output is checked on a sample of rows against ``hmac`` under the derived domain key (so a
fast but wrong transform does not pass unnoticed).

    python benchmarks/bench_pseudonymize.py [--rows 1000000] [--repeats 5] [--seed 0]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import hmac
import platform
import statistics
import sys
import time
from typing import Callable

import numpy as np
import pyarrow as pa

from privprep.transforms import Pseudonymize
from privprep.transforms.pseudonymize import PREFIX, derive_domain_key

KEY = b"k" * 32
DOMAIN = "bench"
GOALS = {"10% distinct": 5.0, "all distinct": 2.5}

_FIRST = ["james", "mary", "robert", "patricia", "john", "jennifer", "michael", "linda", "david",
          "elizabeth", "william", "barbara", "richard", "susan", "joseph", "jessica", "thomas", "sarah",
          "charles", "karen", "christopher", "lisa", "daniel", "nancy", "matthew", "betty", "anthony",
          "margaret", "mark", "sandra", "lukas", "lea", "hugo", "chloe", "mateo", "lucia"]
_LAST = ["smith", "johnson", "williams", "brown", "jones", "garcia", "miller", "davis", "rodriguez",
         "martinez", "hernandez", "lopez", "gonzalez", "wilson", "anderson", "thomas", "taylor", "moore",
         "jackson", "martin", "lee", "perez", "thompson", "white", "harris", "sanchez", "clark",
         "ramirez", "lewis", "robinson", "mueller", "schmidt", "dubois", "moreau", "fernandez", "ruiz"]
_DOMAINS = ["gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "icloud.com", "aol.com",
            "protonmail.com", "example.org"]


def distinct_emails(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` different email-like strings ("first.last<unique number>@domain", ~25 chars)."""
    first = rng.integers(0, len(_FIRST), n)
    last = rng.integers(0, len(_LAST), n)
    dom = rng.integers(0, len(_DOMAINS), n)
    serial = rng.permutation(n)  # unique per row, so all n strings differ
    return [f"{_FIRST[f]}.{_LAST[l]}{s}@{_DOMAINS[d]}" for f, l, s, d in zip(first, last, serial, dom)]


def make_values(rows: int, distinct_share: float, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    n_distinct = max(1, round(rows * distinct_share))
    pool = distinct_emails(n_distinct, rng)
    if n_distinct == rows:
        return pool
    index = rng.permutation(np.arange(rows) % n_distinct)  # each distinct value (rows/n) times, shuffled
    return [pool[i] for i in index]


def time_it(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def check_privprep(values: list[str], out: pa.Table, samples: int = 1000) -> None:
    """Compare a seeded sample of privprep's pseudonyms with hmac under the derived domain key."""
    domain_key = derive_domain_key(KEY, DOMAIN)
    column = out.column("v")
    if len(column) != len(values):
        raise SystemExit(f"privprep returned {len(column)} rows for {len(values)}")
    rng = np.random.default_rng(12345)
    for i in rng.integers(0, len(values), min(samples, len(values))):
        want = PREFIX.decode() + hmac.new(domain_key, values[i].encode(), hashlib.sha256).hexdigest()[:32]
        got = column[int(i)].as_py()
        if got != want:
            raise SystemExit(f"privprep pseudonym of row {i} differs from hmac: {got!r} != {want!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="values per data set (default 1,000,000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats after one warm-up (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.rows < 10 or args.repeats < 1:
        parser.error("--rows must be >= 10 and --repeats >= 1")

    results = []
    for label, share in (("10% distinct", 0.10), ("all distinct", 1.0)):
        values = make_values(args.rows, share, args.seed)
        table = pa.table({"v": pa.array(values, pa.string())})
        n_distinct = len(set(values))

        def run_privprep(table: pa.Table = table) -> pa.Table:
            return Pseudonymize(columns=["v"], domain=DOMAIN, key=KEY).transform(table)

        def run_plain(values: list[str] = values) -> list[str]:
            k = KEY
            return [hmac.new(k, v.encode(), hashlib.sha256).hexdigest()[:32] for v in values]

        check_privprep(values, run_privprep())
        # alternate the order between the two data sets so neither side always runs first
        if label == "10% distinct":
            t_priv = time_it(run_privprep, args.repeats)
            t_plain = time_it(run_plain, args.repeats)
        else:
            t_plain = time_it(run_plain, args.repeats)
            t_priv = time_it(run_privprep, args.repeats)
        results.append((label, n_distinct, statistics.median(t_plain), statistics.median(t_priv), t_plain, t_priv))
        del values, table
        gc.collect()

    print()
    print(f"Pseudonymize vs plain hmac loop: {args.rows:,} rows, median of {args.repeats} (after 1 warm-up)")
    print(f"Goals: >= {GOALS['10% distinct']:g}x at 10% distinct, >= {GOALS['all distinct']:g}x all distinct")
    print(f"Python {platform.python_version()}, pyarrow {pa.__version__}, numpy {np.__version__}, "
          f"{platform.machine()}; shared machine, figures are noisy")
    header = (f"{'data':<13} {'distinct':>10} {'plain s':>8} {'plain rows/s':>13} "
              f"{'privprep s':>10} {'privprep rows/s':>15} {'speed-up':>8} {'goal':>5} {'met':>4}")
    print(header)
    print("-" * len(header))
    for label, n_distinct, plain, priv, t_plain, t_priv in results:
        ratio = plain / priv
        goal = GOALS[label]
        print(f"{label:<13} {n_distinct:>10,} {plain:>8.3f} {args.rows / plain:>13,.0f} "
              f"{priv:>10.3f} {args.rows / priv:>15,.0f} {ratio:>7.2f}x {goal:>4g}x {'yes' if ratio >= goal else 'NO':>4}")
    print()
    print("all timings (s):")
    for label, _, _, _, t_plain, t_priv in results:
        print(f"  {label:<13} plain    " + " ".join(f"{t:.3f}" for t in t_plain))
        print(f"  {label:<13} privprep " + " ".join(f"{t:.3f}" for t in t_priv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
