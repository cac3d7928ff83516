"""Benchmark: the k_anonymity stage alone with its counts spilled and searched in buckets (the default
``memory_tuples``) beside everything held in memory, on the sample generator's data.

The stage of ``sample_data/pipeline.yaml`` (k=5, 2 % suppression, l-diversity 2 on diagnosis, the
sample hierarchies) observes the five columns it needs in batches of 65,536 rows, then decides. Each
setting runs in a fresh process; peak RSS is that process's. Inputs are the cached
``benchmarks/_data/bench_run-input-<rows>/`` of ``bench_run.py`` (made if missing).

    python benchmarks/bench_kanon_memory.py [--rows 5000000 20000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_run import ensure_input  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"

CHILD = r"""
import glob, json, resource, sys, time
import pyarrow as pa, pyarrow.parquet as pq
from privprep.transforms import KAnonymity
folder, memory, sample = sys.argv[1], sys.argv[2], sys.argv[3]
stage = KAnonymity(
    k=5, suppression_limit=0.02, quasi_identifiers=["birth_date", "zip", "sex", "occupation"],
    hierarchies={"birth_date": {"date": ["month", "year", "5y", "10y"]}, "zip": {"mask": {"char": "*"}},
                 "sex": {"csv": sample + "/hierarchies/sex.csv"}, "occupation": {"csv": sample + "/hierarchies/occupation.csv"}},
    l_diversity={"diagnosis": 2}, memory_tuples=None if memory == "all" else int(memory))
started = time.perf_counter()
for path in sorted(glob.glob(folder + "/*.parquet")):
    for batch in pq.ParquetFile(path).iter_batches(65536, columns=["birth_date", "zip", "sex", "occupation", "diagnosis"]):
        stage.observe(pa.Table.from_batches([batch]))
observed = time.perf_counter()
stage.decide()
decided = time.perf_counter()
report = stage.report()
print(json.dumps({"observe": observed - started, "decide": decided - observed, "levels": report["levels"],
                  "tuples": report["search"]["distinct_tuples"], "checked": report["search"]["nodes_checked"],
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[5_000_000, 20_000_000])
    parser.add_argument("--memory-tuples", default="2097152", help="the bucketed setting's memory_tuples")
    args = parser.parse_args()
    results = []
    for rows in args.rows:
        folder = ensure_input(rows)
        for label, memory in (("buckets", args.memory_tuples), ("in memory", "all")):
            out = subprocess.run([sys.executable, "-c", CHILD, str(folder), memory, str(SAMPLE)],
                                 capture_output=True, text=True, check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            results.append((rows, label, result))
            print(f"  {rows:,} {label}: decide {result['decide']:.1f} s, {result['rss_mb']:.0f} MB", file=sys.stderr, flush=True)
    print()
    print(f"k_anonymity stage alone (observe + decide), memory_tuples={args.memory_tuples} vs all in memory; one process each")
    header = f"{'rows':>12} {'setting':>10} {'QI tuples':>11} {'checked':>8} {'observe s':>10} {'decide s':>9} {'peak RSS MB':>12} {'levels':>20}"
    print(header)
    print("-" * len(header))
    for rows, label, r in results:
        levels = ",".join(str(v) for v in r["levels"].values())
        print(f"{rows:>12,} {label:>10} {r['tuples']:>11,} {r['checked']:>8} {r['observe']:>10.1f} {r['decide']:>9.1f} "
              f"{r['rss_mb']:>12.0f} {levels:>20}")
    by_rows: dict[int, dict[str, dict]] = {}
    for rows, label, r in results:
        by_rows.setdefault(rows, {})[label] = r
    for rows, pair in by_rows.items():
        if len(pair) == 2:
            same = pair["buckets"]["levels"] == pair["in memory"]["levels"]
            print(f"{rows:,} rows: same levels {'yes' if same else 'NO'}; "
                  f"peak RSS {pair['in memory']['rss_mb'] / pair['buckets']['rss_mb']:.1f}x lower in buckets")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
