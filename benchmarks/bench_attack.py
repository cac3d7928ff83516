"""The linkage attack's join (``privprep attack`` / ``privprep sweep``): privprep's ``link`` beside a bare
pandas merge on the same generalized tables, checked for equal figures.

Generates N released rows with four quasi-identifiers already in their released (text) form and an
auxiliary table of the same rows (the sweep's case: the input as auxiliary, the row index as truth),
then times, median of --repeats:
  * pandas: class sizes by ``groupby(qis).size()``, ``merge`` onto the auxiliary rows, Σ 1/size;
  * privprep: ``link(released, auxiliary, qis, truth=...)`` (dense codes, one ``np.unique``, bincount).

    python benchmarks/bench_attack.py [--rows 100000 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd
import pyarrow as pa

from privprep.pipeline.risk.linkage import link

QIS = ["birth", "zip", "sex", "occupation"]


def tables(rows: int, seed: int = 0) -> tuple[pa.Table, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "birth": [f"{y}-{y + 4}" for y in rng.integers(190, 201, rows) * 10],
        "zip": [f"{z:03d}**" for z in rng.integers(0, 400, rows)],
        "sex": rng.choice(["F", "M"], rows),
        "occupation": rng.choice([f"group-{i}" for i in range(12)], rows),
        "row": np.arange(rows, dtype=np.int64),
    })
    return pa.Table.from_pandas(frame, preserve_index=False), frame


def with_pandas(frame: pd.DataFrame) -> float:
    sizes = frame.groupby(QIS).size().rename("size").reset_index()
    joined = frame[QIS].merge(sizes, on=QIS, how="left")
    return float((1.0 / joined["size"]).sum() / len(frame))


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
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"| rows | classes | pandas merge (s) | privprep link (s) | rows/s (link) | expected rate | equal |")
    print("|---|---|---|---|---|---|---|")
    for rows in args.rows:
        table, frame = tables(rows)
        pandas_s, expected = timed(lambda: with_pandas(frame), args.repeats)
        link_s, result = timed(lambda: link(table, table, QIS, truth="row"), args.repeats)
        ours = result["expected_reidentification_rate"]  # type: ignore[index]
        classes = frame.groupby(QIS).ngroups
        print(f"| {rows:,} | {classes:,} | {pandas_s:.3f} | {link_s:.3f} | {rows / link_s:,.0f} | {ours:.5f} | "
              f"{abs(ours - expected) < 1e-12} |")


if __name__ == "__main__":
    main()
