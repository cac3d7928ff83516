"""k, l-diversity and t-closeness on a large table: privprep beside pyCANON and a bare pandas groupby.

Generates (once, cached under benchmarks/_data/) a table of N rows (default 1,000,000) with six
quasi-identifiers and one categorical sensitive attribute, then times in one run:
  * pandas: ``df.groupby(qis).size().min()`` (k only), the floor for k;
  * privprep: the distinct-tuple engine (k alone; then k + distinct l + t-closeness);
  * pyCANON (if a Python with pycanon is given by --pycanon-python; it pins old numpy/pandas, so it
    lives in its own virtual environment): k_anonymity, l_diversity, t_closeness, each in a subprocess
    with a time limit. Results are compared for equality.

    python benchmarks/bench_measures.py [--rows 1000000] [--pycanon-python /path/to/venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from privprep.transforms.anonymity import measures
from privprep.transforms.anonymity.criteria import Criteria, Evaluator, sensitive_codes
from privprep.transforms.anonymity.tuples import TupleCounter
from privprep.transforms.hierarchies import Hierarchy

QIS = ["sex", "age", "race", "marital", "education", "occupation"]
SENSITIVE = "diagnosis"
DATA = Path(__file__).resolve().parent / "_data"

PYCANON_CODE = """
import json, sys, time
import pandas as pd
from pycanon import anonymity
df = pd.read_parquet(sys.argv[1]) if sys.argv[1].endswith('.parquet') else pd.read_csv(sys.argv[1])
qis, sa, what = json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
t0 = time.perf_counter()
if what == 'k':
    value = anonymity.k_anonymity(df, qis)
elif what == 'l':
    value = anonymity.l_diversity(df, qis, [sa])
else:
    value = anonymity.t_closeness(df, qis, [sa])
print(json.dumps({'seconds': time.perf_counter() - t0, 'value': float(value)}))
"""


def make_table(rows: int) -> Path:
    path = DATA / f"measures-{rows}.parquet"
    if path.exists() and path.with_suffix(".csv").exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "sex": rng.choice(["F", "M"], rows),
        "age": rng.integers(17, 91, rows),
        "race": rng.choice(["A", "B", "C", "D", "E"], rows, p=[0.7, 0.12, 0.1, 0.05, 0.03]),
        "marital": rng.choice([f"m{i}" for i in range(7)], rows),
        "education": rng.choice([f"e{i}" for i in range(16)], rows),
        "occupation": rng.choice([f"o{i}" for i in range(14)], rows),
        SENSITIVE: rng.choice([f"d{i}" for i in range(12)], rows),
    })
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    frame.to_csv(path.with_suffix(".csv"), index=False)  # for pyCANON's environment, which has no pyarrow
    return path


def privprep_measures(table: pa.Table, with_sensitive: bool) -> dict[str, float]:
    columns = QIS + ([SENSITIVE] if with_sensitive else [])
    counter = TupleCounter(columns)
    counter.observe(table)
    tuples = counter.result()
    flat = {q: Hierarchy(q, tuples.dictionaries[i], (pa.array(["*"] * len(tuples.dictionaries[i])),)) for i, q in enumerate(QIS)}
    classes, space = Evaluator(tuples, flat, Criteria()).classes(tuple(0 for _ in QIS))
    sizes = measures.class_sizes(classes, tuples.counts, space)
    out = {"k": float(sizes[sizes > 0].min())}
    if with_sensitive:
        codes, ordered = sensitive_codes(tuples, SENSITIVE)
        present = sizes > 0
        out["l"] = float(measures.distinct_l(classes, tuples.counts, codes, space)[present].min())
        out["t"] = float(measures.t_closeness(classes, tuples.counts, codes, space, ordered=ordered)[present].max())
    return out


def timed(fn, repeats: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pycanon-python", default=None, help="python of a virtual environment with pycanon installed")
    parser.add_argument("--pycanon-timeout", type=float, default=900)
    parser.add_argument("--pycanon-measures", default="k,l,t", help="which of k,l,t to time with pyCANON")
    args = parser.parse_args()
    path = make_table(args.rows)
    table = pq.read_table(path)
    frame = table.to_pandas()

    results = []
    pandas_s, pandas_k = timed(lambda: int(frame.groupby(QIS).size().min()), args.repeats)
    results.append(("pandas groupby().size() (k only)", pandas_s, {"k": pandas_k}))
    k_s, k_only = timed(lambda: privprep_measures(table, False), args.repeats)
    results.append(("privprep k", k_s, k_only))
    all_s, all_values = timed(lambda: privprep_measures(table, True), args.repeats)
    results.append(("privprep k + l + t", all_s, all_values))
    if args.pycanon_python:
        total, values = 0.0, {}
        for what in args.pycanon_measures.split(","):
            try:
                done = subprocess.run(
                    [args.pycanon_python, "-c", PYCANON_CODE, str(path.with_suffix(".csv")), json.dumps(QIS), SENSITIVE, what],
                    capture_output=True, text=True, timeout=args.pycanon_timeout, check=True,
                )
                answer = json.loads(done.stdout.strip().splitlines()[-1])
                results.append((f"pyCANON {what}", answer["seconds"], {what: answer["value"]}))
                total += answer["seconds"]
                values[what] = answer["value"]
            except subprocess.TimeoutExpired:
                results.append((f"pyCANON {what}", float("nan"), {what: f"> {args.pycanon_timeout:.0f} s"}))
                total = float("nan")
        results.append((f"pyCANON {' + '.join(values) or '-'}", total, values))

    print(f"\n{args.rows:,} rows, {len(QIS)} quasi-identifiers, sensitive '{SENSITIVE}'; goals: k within 2x of pandas, >= 10x pyCANON")
    print(f"{'what':<36} {'seconds':>9}  result")
    for name, seconds, value in results:
        print(f"{name:<36} {seconds:>9.3f}  {value}")
    print(f"\nprivprep k / pandas groupby: {k_s / pandas_s:.2f}x")
    if args.pycanon_python:
        canon = {name.split()[-1]: seconds for name, seconds, _ in results if name.startswith("pyCANON ") and "+" not in name}
        if "k" in canon and canon["k"] == canon["k"]:
            print(f"pyCANON k / privprep k: {canon['k'] / k_s:.1f}x")
        done = [m for m in ("k", "l", "t") if m in canon and canon[m] == canon[m]]
        if done:
            print(f"pyCANON {'+'.join(done)} / privprep k+l+t: {sum(canon[m] for m in done) / all_s:.1f}x")


if __name__ == "__main__":
    sys.exit(main())
