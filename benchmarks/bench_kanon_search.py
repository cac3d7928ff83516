"""Optimal k-anonymity search on the Adult data (9 quasi-identifiers, ARX's hierarchies).

Prints, per (k, suppression limit): the chosen levels, nodes checked of the lattice, and the median
search time (the lattice search only, after the distinct tuples are counted), plus the whole stage
(observe + decide) once. ARX's Flash (Java) checks 115 of 4,320 nodes in 28 ms on 8 QIs, k=5, 0%.

    python benchmarks/bench_kanon_search.py [--repeats 5] [--data tests/data/adult]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv

from privprep.transforms import KAnonymity
from privprep.transforms.anonymity.criteria import Criteria, Evaluator
from privprep.transforms.anonymity.loss import nu_entropy_terms
from privprep.transforms.anonymity.search import search

QIS = ["sex", "age", "race", "marital-status", "education", "native-country", "workclass", "occupation", "salary-class"]
SETTINGS = [(5, 0.04), (100, 0.04), (5, 0.0), (100, 0.0), (2, 0.0), (10, 0.01)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "data" / "adult",
                        help="a folder with adult.csv (or adult.csv.gz) and ARX's hierarchies (default: the copy tests/data ships)")
    parser.add_argument("--qis", type=int, default=9, help="use the first N quasi-identifiers (8 = ARX's benchmark setting)")
    args = parser.parse_args()
    qis = QIS[: args.qis]
    source = args.data / "adult.csv" if (args.data / "adult.csv").is_file() else args.data / "adult.csv.gz"
    table = pacsv.read_csv(source, parse_options=pacsv.ParseOptions(delimiter=";")).select(qis)
    hierarchies = {q: {"csv": str(args.data / f"adult_hierarchy_{q}.csv")} for q in qis}

    rows = []
    for k, limit in SETTINGS:
        stage = KAnonymity(k=k, quasi_identifiers=qis, hierarchies=hierarchies, suppression_limit=limit)
        t0 = time.perf_counter()
        stage.observe(table)
        tuples = stage._counter.result()
        stage.decide()
        whole = time.perf_counter() - t0
        built = stage.hierarchies_
        level_loss = []
        for i, q in enumerate(qis):
            counts = np.bincount(tuples.codes[:, i], weights=tuples.counts, minlength=len(tuples.dictionaries[i]))
            level_loss.append(nu_entropy_terms(counts, built[q].level_codes()))
        times, checks = [], 0
        for _ in range(args.repeats):
            evaluator = Evaluator(tuples, built, Criteria(k=k, suppression_limit=limit))
            t0 = time.perf_counter()
            result = search(evaluator, level_loss=level_loss, metric="nu_entropy")
            times.append(time.perf_counter() - t0)
            checks = result.nodes_checked
        levels = "".join(str(stage.levels_[q]) for q in qis)
        rows.append((k, limit, levels, checks, result.nodes_total, statistics.median(times) * 1000, min(times) * 1000, whole * 1000))

    print(f"\nAdult, {len(qis)} QIs, {table.num_rows:,} rows, {len(tuples.counts):,} distinct tuples; goal: k=5/4% search < 500 ms")
    print(f"{'k':>5} {'supp':>6} {'levels':>10} {'checked':>8} {'of':>7} {'search ms (median)':>19} {'min':>7} {'stage ms':>9}")
    for k, limit, levels, checks, total, median, best, whole in rows:
        print(f"{k:>5} {limit:>6.0%} {levels:>10} {checks:>8} {total:>7} {median:>19.1f} {best:>7.1f} {whole:>9.1f}")


if __name__ == "__main__":
    main()
