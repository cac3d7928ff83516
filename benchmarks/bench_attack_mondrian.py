"""The linkage attack on a Mondrian run (``privprep attack`` / ``privprep sweep`` with ``algorithm:
mondrian``): raw auxiliary values matched against the released boxes (:mod:`privprep.pipeline.risk.linkage_boxes`).

Generates N rows with two numeric quasi-identifiers (age, income: released as ``[lo, hi]``) and two
categorical ones (zip with a mask hierarchy, sex), anonymizes them with Mondrian at k (not timed),
then times, median of --repeats, the attack with the input as the auxiliary table and the row index as
truth (the sweep's case): building the column matchers and ``link_boxes``. The expected rate is
checked against pandas (Σ 1/|class of the record's own row| / N: each record lies in its own box).

    python benchmarks/bench_attack_mondrian.py [--rows 100000 1000000] [--k 100 500] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from privprep.pipeline.risk.linkage_boxes import HierarchyColumn, IntervalColumn, link_boxes
from privprep.transforms import MondrianKAnonymity
from privprep.transforms.hierarchies import build_hierarchy

QIS = ["age", "income", "zip", "sex"]
HIERARCHIES = {"zip": {"mask": {"levels": 5}}, "sex": {"map": {"F": ["*"], "M": ["*"]}}}


def table(rows: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({
        "age": rng.integers(18, 90, rows),
        "income": rng.integers(0, 200, rows) * 1000,
        "zip": pa.array([f"{z:05d}" for z in rng.integers(10000, 10400, rows)]),
        "sex": pa.array(rng.choice(["F", "M"], rows)),
    })


def columns(raw: pa.Table) -> dict:
    out = {q: IntervalColumn(raw.column(q), q) for q in ("age", "income")}
    for q in ("zip", "sex"):
        encoded = pc.dictionary_encode(raw.column(q).combine_chunks(), null_encoding="encode")
        h = build_hierarchy(HIERARCHIES[q], q, encoded.dictionary)
        out[q] = HierarchyColumn(np.asarray(encoded.indices.to_numpy(zero_copy_only=False)), [h.level(i) for i in range(h.height + 1)])
    return out


def timed(fn, repeats: int) -> tuple[float, object]:
    seconds, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--k", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("| rows | k | classes | attack (s) | rows/s | expected rate | pandas | equal |")
    print("|---|---|---|---|---|---|---|---|")
    for rows, k in zip(args.rows, args.k):
        raw = table(rows)
        stage = MondrianKAnonymity(k=k, quasi_identifiers=QIS, hierarchies=HIERARCHIES)
        stage.observe(raw)
        stage.decide()
        released = stage.transform(raw).append_column("row", pa.array(np.arange(rows)))
        truth = pa.array(np.arange(rows))
        seconds, result = timed(lambda: link_boxes(released, columns(raw), QIS, truth="row", auxiliary_truth=truth), args.repeats)
        frame = released.select(QIS).to_pandas()
        sizes = frame.groupby(QIS, dropna=False)["age"].transform("size")
        reference = float((1.0 / sizes).sum() / rows)
        ours = result["expected_reidentification_rate"]  # type: ignore[index]
        classes = frame.groupby(QIS, dropna=False).ngroups
        print(f"| {rows:,} | {k} | {classes:,} | {seconds:.3f} | {rows / seconds:,.0f} | {ours:.5f} | {reference:.5f} | "
              f"{abs(ours - reference) < 1e-12 and result['linked_uniquely'] == 0} |")  # type: ignore[index]


if __name__ == "__main__":
    main()
