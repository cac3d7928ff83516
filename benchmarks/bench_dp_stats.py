"""Benchmark: the ``dp_stats`` stage against the same exact statistics computed with pyarrow.compute.

For each row count in --rows, an input is generated once (numpy, seed 0) and cached under
``benchmarks/_data/dp-<rows>/data.parquet`` (zstd, row groups of 1M rows): ``income`` (float64,
log-normal, about 2% of values above the declared bound 500,000 and 1% null) and ``label`` (string,
10 categories, 0.5% null). Five statistics over them:

* count, mean, std and the median of ``income`` (bounds [0, 500000]; quantile over 1,000 bins);
* the histogram of ``label`` over its 10 declared categories.

Timed, in one process, each repeat alternating (median wall time shown):

* **exact**: ``pyarrow.parquet.read_table`` of the two columns, then ``pc.count``, ``pc.mean``,
  ``pc.stddev``, ``pc.quantile`` (exact, sorts) and ``pc.value_counts``: the non-private floor;
* **dp_stats**: the stage as privprep's pass 1 runs it: ``InputSource.batches`` (pyarrow.dataset,
  65,536-row batches, the two columns), ``observe`` per batch, one ``release`` (noise) at the end;
* **quantile only**: the same two ways with just the median (privprep's cost of a DP quantile at
  this size), and diffprivlib's own ``tools.quantile`` on 10^6 of the values for reference
  (``--diffprivlib`` only; it sorts and runs an exponential mechanism, ~2 s per call).

    python benchmarks/bench_dp_stats.py [--rows 1000000 10000000] [--repeats 3] [--diffprivlib]

The machine this was written on has 2 cores shared with other jobs: expect +-20% between runs.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from privprep.pipeline.files.io import InputSource
from privprep.transforms.dp import DpStats, SpendLog

HERE = Path(__file__).resolve().parent
DATA = HERE / "_data"
BATCH_ROWS = 65_536
CATEGORIES = [f"c{i}" for i in range(10)]
COLUMNS = {
    "income": {"role": "sensitive", "bounds": [0, 500_000]},
    "label": {"role": "insensitive", "categories": CATEGORIES},
}
FIVE = [
    {"column": "income", "stat": "count"},
    {"column": "income", "stat": "mean"},
    {"column": "income", "stat": "std"},
    {"column": "income", "stat": "quantile", "quantiles": [0.5]},
    {"column": "label", "stat": "histogram"},
]
MEDIAN = [{"column": "income", "stat": "quantile", "quantiles": [0.5]}]


def input_file(rows: int) -> Path:
    """The cached input of ``rows`` rows (generated on first use)."""
    path = DATA / f"dp-{rows}" / "data.parquet"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    schema = pa.schema([("income", pa.float64()), ("label", pa.string())])
    temp = path.with_suffix(".tmp")
    with pq.ParquetWriter(temp, schema, compression="zstd") as writer:
        for start in range(0, rows, 1_000_000):
            n = min(1_000_000, rows - start)
            income = rng.lognormal(mean=11.0, sigma=0.9, size=n)
            labels = np.array(CATEGORIES)[rng.integers(0, 10, n)]
            writer.write_table(pa.table({
                "income": pa.array(income, mask=rng.random(n) < 0.01),
                "label": pa.array(labels, mask=rng.random(n) < 0.005),
            }), row_group_size=1_000_000)
    temp.rename(path)
    return path


def exact(path: Path, only_median: bool) -> None:
    table = pq.read_table(path, columns=["income"] if only_median else ["income", "label"])
    income = table.column("income")
    pc.quantile(income, q=[0.5])
    if not only_median:
        pc.count(income), pc.mean(income), pc.stddev(income), pc.value_counts(table.column("label"))


def private(path: Path, queries: list[dict]) -> None:
    stage = DpStats(epsilon=1.0, queries=queries, columns=COLUMNS)
    source = InputSource.open(str(path))
    for table in source.batches(stage.input_columns(), batch_rows=BATCH_ROWS):
        stage.observe(table)
    stage.release(SpendLog())


def diffprivlib_quantile(path: Path) -> None:
    from diffprivlib.tools import quantile

    values = pq.read_table(path, columns=["income"]).column("income").slice(0, 1_000_000).drop_null().to_numpy()
    quantile(values, 0.5, epsilon=1.0, bounds=(0, 500_000))


def timed(fn: Callable[[], None]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--diffprivlib", action="store_true", help="also time diffprivlib.tools.quantile on 10^6 values")
    args = parser.parse_args()
    print(f"python {platform.python_version()}, pyarrow {pa.__version__}, numpy {np.__version__}, "
          f"{platform.machine()}, batches of {BATCH_ROWS:,} rows, median of {args.repeats}")
    print(f"| rows | what | exact pyarrow.compute s | dp_stats s | ratio |")
    print("|---|---|---|---|---|")
    for rows in args.rows:
        path = input_file(rows)
        cases = {
            "5 statistics": (lambda: exact(path, False), lambda: private(path, FIVE)),
            "median only": (lambda: exact(path, True), lambda: private(path, MEDIAN)),
        }
        for name, (floor, dp) in cases.items():
            floor(), dp()  # warm-up: page cache, imports
            a, b = [], []
            for _ in range(args.repeats):
                a.append(timed(floor))
                b.append(timed(dp))
            fa, fb = statistics.median(a), statistics.median(b)
            print(f"| {rows:,} | {name} | {fa:.3f} | {fb:.3f} | {fb / fa:.2f}x |", flush=True)
        if args.diffprivlib:
            seconds = statistics.median(timed(lambda: diffprivlib_quantile(path)) for _ in range(args.repeats))
            print(f"| 1,000,000 of {rows:,} | diffprivlib.tools.quantile (read + call) | - | {seconds:.3f} | - |", flush=True)


if __name__ == "__main__":
    main()
