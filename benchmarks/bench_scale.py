"""Benchmark: the sample pipeline's stages at 5, 10 and 20 M rows, streaming engine beside Dask.

Stages (those of ``sample_data/pipeline.yaml`` without training): pseudonymize [patient_id],
pseudonymize [email], mask [phone], tokenize [national_id], drop [name], k_anonymity (k=5, 2%,
l-diversity 2, the sample hierarchies), encrypt [diagnosis], dp_stats (count, mean, quantiles,
histogram). The input is the sample generator's (``write_sample(rows, seed=0)``, files of 1 M rows,
zstd; cached under ``benchmarks/_data/bench_run-input-<rows>/``, shared with ``bench_run.py``).

For each row count, in the same run and alternating: ``privprep run CONFIG`` (streaming engine) and
``privprep run CONFIG --engine dask`` (a local cluster of 2 single-threaded worker processes, started
and stopped by the command). Whole processes; wall time and peak RSS from ``os.wait4`` (for Dask
that is the largest process of the tree: client, scheduler or a worker).

With ``--no-kanon-rss`` the streaming engine also runs without the ``k_anonymity`` stage, to show what
that stage adds: its distinct quasi-identifier tuples grow with the rows (the sample's day-exact birth
dates and full ZIP codes are nearly unique), but past ``memory_tuples`` they go to disk, so it adds
little and the same at every size.

    python benchmarks/bench_scale.py [--rows 5000000 10000000 20000000] [--repeats 1] [--workers 2] [--no-kanon-rss]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_run import DATA, PRIVPREP, clean, ensure_input, ensure_keyring, measure  # noqa: E402

PREFIX = "bench_scale"
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
RSS_GOAL_MB = 1024.0
SPEED_GOAL = 1.5


class Missing:
    wall = float("nan")
    maxrss_kib = 0


def write_config(rows: int, input_dir: Path, keyring: Path, engine: str, *, k_anonymity: bool = True) -> tuple[Path, Path, Path]:
    import yaml

    document = yaml.safe_load((SAMPLE / "pipeline.yaml").read_text())
    output = DATA / f"{PREFIX}-out-{rows}" / engine
    ledger = DATA / f"{PREFIX}-out-{rows}" / f"{engine}-ledger.json"
    document.update(input=str(input_dir), output=str(output), keyring=str(keyring))
    document["budget"] = {"epsilon": 1000.0, "delta": 1e-5, "ledger": str(ledger)}
    document["stages"] = [s for s in document["stages"] if "train" not in s and (k_anonymity or "k_anonymity" not in s)]
    for stage in document["stages"]:
        if "k_anonymity" in stage:
            for spec in stage["k_anonymity"]["hierarchies"].values():
                if "csv" in spec:
                    spec["csv"] = str(SAMPLE / spec["csv"])
    config = DATA / f"{PREFIX}-{rows}-{engine}.yaml"
    config.write_text("# written by benchmarks/bench_scale.py\n" + yaml.safe_dump(document, sort_keys=False))
    return config, output, ledger


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[5_000_000, 10_000_000, 20_000_000])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--engines", nargs="+", default=["streaming", "dask"], choices=["streaming", "dask"])
    parser.add_argument("--no-kanon-rss", action="store_true",
                        help="also run the streaming engine without the k_anonymity stage (its peak RSS column)")
    args = parser.parse_args()
    keyring = ensure_keyring()
    os.environ["PRIVPREP_DASK_WORKERS"] = str(args.workers)  # the local cluster `privprep run --engine dask` starts
    rows_done: list[dict] = []
    for rows in args.rows:
        input_dir = ensure_input(rows)
        runs: dict[str, list] = {"streaming": [], "dask": []}
        reports: dict[str, dict] = {}
        for i in range(args.repeats):
            order = ("streaming", "dask") if i % 2 == 0 else ("dask", "streaming")
            for engine in (e for e in order if e in args.engines):
                config, output, ledger = write_config(rows, input_dir, keyring, engine)
                clean(output)
                ledger.unlink(missing_ok=True)
                cmd = [str(PRIVPREP), "run", str(config), "--overwrite", "--quiet"]
                if engine == "dask":
                    cmd += ["--engine", "dask"]
                m = measure(cmd)
                reports[engine] = json.loads((output / "report.json").read_text())
                runs[engine].append(m)
                clean(output)
                print(f"  {rows:,} {engine:9} {m.wall:8.2f} s {m.maxrss_kib / 1024:7.0f} MB", file=sys.stderr, flush=True)
        nok_rss = None
        if args.no_kanon_rss:
            config, output, ledger = write_config(rows, input_dir, keyring, "streaming-nok", k_anonymity=False)
            clean(output)
            ledger.unlink(missing_ok=True)
            m = measure([str(PRIVPREP), "run", str(config), "--overwrite", "--quiet"])
            clean(output)
            nok_rss = m.maxrss_kib / 1024
            print(f"  {rows:,} streaming without k_anonymity {m.wall:8.2f} s {nok_rss:7.0f} MB", file=sys.stderr, flush=True)
        for engine in ("streaming", "dask"):  # an engine left out: its columns show the other's figures as n/a
            if not runs[engine]:
                runs[engine] = [Missing()]
                reports[engine] = reports.get("streaming") or reports["dask"]
        a, b = reports["streaming"], reports["dask"]
        same = (a["output"]["rows"] == b["output"]["rows"]
                and a["stages"][5]["levels"] == b["stages"][5]["levels"])
        rows_done.append({
            "rows": rows, "out": a["output"]["rows"], "same": same,
            "s_wall": statistics.median(m.wall for m in runs["streaming"]),
            "s_rss": max(m.maxrss_kib for m in runs["streaming"]) / 1024,
            "d_wall": statistics.median(m.wall for m in runs["dask"]),
            "d_rss": max(m.maxrss_kib for m in runs["dask"]) / 1024,
            "partitions": b["engine"].get("partitions"),
            "nok_rss": nok_rss,
            "tuples": a["stages"][5]["search"]["distinct_tuples"],
            "timings": {engine: (reports[engine]["timings"], reports[engine]["stages"][5]["seconds"])
                        for engine in ("streaming", "dask") if not isinstance(runs[engine][0], Missing)},
        })
        shutil.rmtree(DATA / f"{PREFIX}-out-{rows}", ignore_errors=True)

    print()
    print(f"sample pipeline stages (no training), streaming vs Dask ({args.workers} worker processes x 1 thread), "
          f"median wall of {args.repeats} run(s), whole processes; {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"Goals: streaming peak RSS < {RSS_GOAL_MB / 1024:g} GB and flat; Dask >= {SPEED_GOAL}x faster at 20 M rows")
    header = (f"{'rows':>12} {'rows out':>12} {'QI tuples':>11} {'streaming s':>11} {'RSS MB':>7} {'RSS goal':>8} "
              f"{'RSS no k-anon':>13} {'dask s':>8} {'max proc RSS MB':>15} {'partitions':>10} {'speed-up':>8} {'same':>5}")
    print(header)
    print("-" * len(header))
    for r in rows_done:
        speed = r["s_wall"] / r["d_wall"]
        nok = f"{r['nok_rss']:.0f}" if r["nok_rss"] is not None else "-"
        partitions = r["partitions"] if r["partitions"] is not None else "-"
        print(f"{r['rows']:>12,} {r['out']:>12,} {r['tuples']:>11,} {r['s_wall']:>11.1f} {r['s_rss']:>7.0f} "
              f"{'yes' if r['s_rss'] < RSS_GOAL_MB else 'NO':>8} {nok:>13} {r['d_wall']:>8.1f} {r['d_rss']:>15.0f} "
              f"{partitions:>10} {speed:>7.2f}x {'yes' if r['same'] else 'NO':>5}")
    print()
    print("in-process seconds from report.json (observe = pass 1; k-anon = its observe share + decide + apply; "
          "write = pass 2: read, stages, Parquet)")
    print(f"{'rows':>12} {'engine':>10} {'observe':>8} {'k-anon':>8} {'write':>8} {'total':>8}")
    for r in rows_done:
        for engine, (t, kanon) in r["timings"].items():
            print(f"{r['rows']:>12,} {engine:>10} {t.get('observe_seconds', 0):>8.1f} {kanon:>8.1f} "
                  f"{t.get('write_seconds', 0):>8.1f} {t['total_seconds']:>8.1f}")
    if len(rows_done) > 1:
        lo, hi = rows_done[0], rows_done[-1]
        print(f"streaming peak RSS {lo['rows']:,} -> {hi['rows']:,} rows: {lo['s_rss']:.0f} -> {hi['s_rss']:.0f} MB "
              f"({hi['s_rss'] / lo['s_rss']:.2f}x for {hi['rows'] / lo['rows']:.1f}x the rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
