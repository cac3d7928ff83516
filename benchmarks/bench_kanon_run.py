"""The k_anonymity stage over a large Parquet input: wall time and peak RSS of ``privprep run``.

Generates the sample table (``privprep.pipeline.files.sample``) once per row count under
``benchmarks/_data/input-<rows>/`` and runs a pipeline that drops the direct identifiers and
k-anonymizes birth_date, zip, sex and occupation with the sample hierarchies (k=5, 2% suppression,
distinct 2-diversity of diagnosis). Each run is its own process, reaped with ``os.wait4`` for its
peak RSS. Goal: peak RSS under 1 GB at 10,000,000 rows.

    python benchmarks/bench_kanon_run.py [--rows 10000000] [--k 5] [--limit 0.02]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "_data"
SAMPLE = HERE.parent / "sample_data"
BIN = Path(sys.executable).parent

CONFIG = """version: 1
input: {input}
output: {output}
columns:
  patient_id: {{role: identifier}}
  name: {{role: identifier}}
  email: {{role: identifier}}
  phone: {{role: identifier}}
  national_id: {{role: identifier}}
  birth_date: {{role: quasi_identifier}}
  zip: {{role: quasi_identifier}}
  sex: {{role: quasi_identifier}}
  occupation: {{role: quasi_identifier}}
  diagnosis: {{role: sensitive}}
  income: {{role: sensitive}}
  image: {{role: insensitive}}
  label: {{role: insensitive}}
stages:
  - drop: {{columns: [patient_id, name, email, phone, national_id]}}
  - k_anonymity:
      k: {k}
      suppression_limit: {limit}
      hierarchies:
        birth_date: {{date: [month, year, 5y, 10y]}}
        zip: {{mask: {{}}}}
        sex: {{csv: {sample}/hierarchies/sex.csv}}
        occupation: {{csv: {sample}/hierarchies/occupation.csv}}
      l_diversity: {{diagnosis: 2}}
"""


def ensure_input(rows: int) -> Path:
    folder = DATA / f"input-{rows}"
    if not folder.is_dir() or not any(folder.glob("*.parquet")):
        from privprep.pipeline.files.sample import write_sample

        t0 = time.perf_counter()
        write_sample(rows, folder, seed=0)
        print(f"generated {rows:,} rows in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return folder


def run(cmd: list[str]) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - t0
    stderr = process.stderr.read().decode() if process.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"privprep failed ({code}): {stderr.strip()}")
    return wall, usage.ru_maxrss / 1024, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000_000])
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--limit", type=float, default=0.02)
    args = parser.parse_args()
    rows_out = []
    for rows in args.rows:
        folder = ensure_input(rows)
        out = DATA / f"kanon-out-{rows}"
        config = DATA / f"kanon-{rows}.yaml"
        config.write_text(CONFIG.format(input=folder, output=out, k=args.k, limit=args.limit, sample=SAMPLE))
        shutil.rmtree(out, ignore_errors=True)
        wall, rss, _ = run([str(BIN / "privprep"), "run", str(config), "--overwrite", "--quiet"])
        report = json.loads((out / "report.json").read_text())
        entry = next(s for s in report["stages"] if s["name"] == "k_anonymity")
        rows_out.append((rows, wall, rss, entry))
        shutil.rmtree(out, ignore_errors=True)
    print(f"\nk_anonymity (k={args.k}, suppression {args.limit:.0%}, 2-diversity) over the sample table; goal: peak RSS < 1024 MB")
    print(f"{'rows':>12} {'wall s':>8} {'peak RSS MB':>12} {'distinct tuples':>16} {'checked':>8} {'of':>5} {'search s':>9} {'suppressed':>11}  levels")
    for rows, wall, rss, e in rows_out:
        s = e["search"]
        print(f"{rows:>12,} {wall:>8.1f} {rss:>12.0f} {s['distinct_tuples']:>16,} {s['nodes_checked']:>8} {s['nodes_total']:>5} "
              f"{s['seconds']:>9.2f} {e['suppressed_rows']:>11,}  {e['levels']}")


if __name__ == "__main__":
    main()
