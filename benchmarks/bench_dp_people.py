"""Benchmark: DP statistics at the level of people (``budget.privacy_unit``).

Two tables:

1. **Error vs theory.** ``--people`` people with ``--rows-each`` rows each, every row of a person
   holding the same value (uniform integers 0..10, bounds [0, 10]), so the bounded statistics are
   known exactly; ``Linf = 2`` rows per person, ``L0 = 1``. The observed stage is copied and
   released ``--runs`` times with different noise seeds; the empirical standard deviation of the
   error is set against the one the stated scale implies: two-sided geometric noise of sensitivity
   ``C`` (``sqrt(2a)/(1-a)``, ``a = exp(-eps/C)``) for count, ``sqrt(2) x noise_scale`` (Laplace) for
   sum and mean (the mean's stated scale is first-order: the noise of the centred sum over n).
2. **Run time** of a ``dp_stats`` observe + release over ``--big-rows`` rows of ``--big-people``
   people (65,536-row batches of a shuffled in-memory table; count, sum, mean grouped by a public
   5-category column): row-level (no privacy unit) vs bounded (``privacy_unit``, L0 = 2, Linf = 3),
   and bounded with a private ``group_by`` (key selection) over 50 undeclared keys. Median of
   ``--repeats`` runs.

    python benchmarks/bench_dp_people.py [--runs 500] [--big-rows 1000000] [--big-people 100000] [--repeats 3]

The machine this was written on has 2 cores shared with other jobs: expect +-20% between runs.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time

import numpy as np
import pyarrow as pa

from privprep.transforms.dp import DpStats, SpendLog

COLUMNS = {"pid": {"role": "identifier"}, "x": {"role": "sensitive", "bounds": [0, 10]},
           "region": {"role": "quasi_identifier", "categories": ["a", "b", "c", "d", "e"]},
           "city": {"role": "quasi_identifier"}}


def error_table(people: int, rows_each: int, runs: int) -> None:
    rng = np.random.default_rng(0)
    values = rng.integers(0, 11, people).astype(float)
    order = rng.permutation(people * rows_each)
    table = pa.table({"pid": np.repeat(np.arange(people), rows_each)[order], "x": np.repeat(values, rows_each)[order]})
    queries = [{"column": "x", "stat": "count", "epsilon": 0.5}, {"column": "x", "stat": "sum", "epsilon": 1.0},
               {"column": "x", "stat": "mean", "epsilon": 1.0}]
    stage = DpStats(epsilon=2.5, queries=queries, columns=COLUMNS, privacy_unit="pid", max_contributions_per_partition=2, seed=0)
    stage.observe(table)
    exact = {"count": 2 * people, "sum": 2 * values.sum(), "mean": values.mean()}
    errors: dict[str, list[float]] = {s: [] for s in exact}
    stated: dict[str, float] = {}
    t0 = time.perf_counter()
    for seed in range(runs):
        copy_ = copy.deepcopy(stage)
        copy_.seed = seed
        for r in copy_.release(SpendLog()):
            errors[r["stat"]].append(r["value"] - exact[r["stat"]])
            if r["stat"] == "count":
                a = math.exp(-r["epsilon"] / 2)
                stated["count"] = math.sqrt(2 * a) / (1 - a)
            else:
                stated[r["stat"]] = math.sqrt(2) * r["noise_scale"]
    seconds = time.perf_counter() - t0
    print(f"\n{people:,} people x {rows_each} rows, Linf = 2, L0 = 1; {runs} releases ({seconds:.1f} s)\n")
    print("| stat | epsilon | stated sd | empirical sd | ratio | mean error |")
    print("|---|---|---|---|---|---|")
    for stat, eps in (("count", 0.5), ("sum", 1.0), ("mean", 1.0)):
        emp = float(np.std(errors[stat]))
        print(f"| {stat} | {eps} | {stated[stat]:.4g} | {emp:.4g} | {emp / stated[stat]:.3f} | {np.mean(errors[stat]):+.3g} |")


def big_table(rows: int, people: int) -> pa.Table:
    rng = np.random.default_rng(1)
    return pa.table({
        "pid": rng.integers(0, people, rows),
        "x": rng.uniform(0, 10, rows),
        "region": pa.array(np.array(["a", "b", "c", "d", "e"])[rng.integers(0, 5, rows)]),
        "city": pa.array(np.array([f"city-{i}" for i in range(50)])[rng.integers(0, 50, rows)]),
    })


def timed(table: pa.Table, **kw) -> tuple[float, int]:
    stage = DpStats(columns=COLUMNS, seed=1, **kw)
    t0 = time.perf_counter()
    for batch in table.to_batches(max_chunksize=65_536):
        stage.observe(pa.Table.from_batches([batch]))
    out = stage.release(SpendLog())
    return time.perf_counter() - t0, len(out)


def time_table(rows: int, people: int, repeats: int) -> None:
    table = big_table(rows, people)
    grouped = [{"column": "x", "stat": s, "group_by": ["region"]} for s in ("count", "sum", "mean")]
    cases = [
        ("row level (no privacy unit)", dict(epsilon=1.0, queries=[{"column": "x", "stat": s, "by": "region"} for s in ("count", "sum", "mean")])),
        ("people: bounded, L0 2, Linf 3", dict(epsilon=1.0, queries=grouped, privacy_unit="pid",
                                               max_partitions_contributed=2, max_contributions_per_partition=3)),
        ("people + private keys (50 cities)", dict(epsilon=1.5, queries=grouped + [{"column": "x", "stat": "sum", "group_by": ["city"]}],
                                                   privacy_unit="pid", selection={"epsilon": 0.5, "delta": 1e-6},
                                                   max_partitions_contributed=2, max_contributions_per_partition=3)),
    ]
    print(f"\n{rows:,} rows, {people:,} people, 65,536-row batches; median of {repeats}\n")
    print("| what | seconds | rows/s | values released |")
    print("|---|---|---|---|")
    for name, kw in cases:
        results = [timed(table, **kw) for _ in range(repeats)]
        seconds = statistics.median(s for s, _ in results)
        print(f"| {name} | {seconds:.2f} | {rows / seconds / 1e6:.2f} M | {results[0][1]} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=2000)
    parser.add_argument("--rows-each", type=int, default=5)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--big-rows", type=int, default=1_000_000)
    parser.add_argument("--big-people", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    error_table(args.people, args.rows_each, args.runs)
    time_table(args.big_rows, args.big_people, args.repeats)


if __name__ == "__main__":
    main()
