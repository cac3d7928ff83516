"""Benchmark: a whole ``privprep run`` against the plain pyarrow read + write floor.

For each row count in --rows:

* the input is generated once with ``privprep.pipeline.files.sample.write_sample(rows, dir, seed=0)``
  (files of 1M rows, zstd) and cached under ``benchmarks/_data/bench_run-input-<rows>/`` (delete it to
  regenerate); a keyring is made once with ``privprep keys new --out benchmarks/_data/bench_run.keyring``
  and a config ``benchmarks/_data/bench_run-<rows>.yaml`` with the stages
  pseudonymize [patient_id] + pseudonymize [email] + drop [name, national_id, phone];
* the floor: a subprocess that scans the same input with ``pyarrow.dataset`` in batches of 65,536
  rows and writes it with ``pyarrow.parquet.ParquetWriter`` (zstd, a new file every 1M rows, as
  privprep does), all columns, no transform;
* privprep: ``privprep run CONFIG --overwrite --quiet`` as a subprocess.

Both are whole processes (interpreter start and imports included), each run alone and reaped with
``os.wait4``, whose rusage gives that process's own peak RSS (ru_maxrss, KiB on Linux). One warm-up
run of each (page cache, bytecode), then --repeats timed runs alternating floor / privprep; the
table shows median wall time and the largest peak RSS seen. The output of every run is deleted right
after it is measured; the generated input stays cached.

    python benchmarks/bench_run.py [--rows 5000000 [20000000 ...]] [--repeats 3] [--warmup 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "_data"
PREFIX = "bench_run"          # every path this script makes under _data/ starts with it (shared folder)
BIN = Path(sys.executable).parent
PRIVPREP = BIN / "privprep"
BATCH_ROWS = 65_536          # privprep's default io.batch_rows
ROWS_PER_FILE = 1_000_000    # privprep's default io.rows_per_file
RATIO_GOAL = 1.5
RSS_GOAL_MB = 1024.0

COLUMNS = {
    "patient_id": "identifier", "name": "identifier", "email": "identifier", "phone": "identifier",
    "national_id": "identifier", "birth_date": "quasi_identifier", "zip": "quasi_identifier",
    "sex": "quasi_identifier", "occupation": "quasi_identifier", "diagnosis": "sensitive",
    "income": "sensitive", "image": "insensitive", "label": "insensitive",
}


# -- the floor, run as its own process: `python bench_run.py --_floor INPUT_DIR OUTPUT_DIR` -------------
def floor(input_dir: str, output_dir: str) -> int:
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    dataset = ds.dataset(input_dir, format="parquet")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    writer, in_file, files, rows = None, 0, 0, 0
    for batch in dataset.scanner(batch_size=BATCH_ROWS).to_batches():
        start = 0
        while start < batch.num_rows:
            if writer is None or in_file >= ROWS_PER_FILE:
                if writer is not None:
                    writer.close()
                writer = pq.ParquetWriter(out / f"part-{files:05d}.parquet", dataset.schema, compression="zstd")
                files, in_file = files + 1, 0
            take = min(batch.num_rows - start, ROWS_PER_FILE - in_file)
            writer.write_batch(batch.slice(start, take))
            in_file += take
            rows += take
            start += take
    if writer is not None:
        writer.close()
    print(json.dumps({"rows": rows, "files": files}))
    return 0


# -- measuring a subprocess -----------------------------------------------------------------------------
@dataclass
class Measured:
    wall: float
    maxrss_kib: int
    stdout: str


def measure(cmd: list[str]) -> Measured:
    """Run ``cmd`` alone; its wall time and its own peak RSS from ``os.wait4``."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"command failed (exit {proc.returncode}): {' '.join(cmd)}\n{stderr[-3000:]}")
    return Measured(wall=wall, maxrss_kib=usage.ru_maxrss, stdout=stdout)


# -- inputs, keyring, config ----------------------------------------------------------------------------
def ensure_input(rows: int) -> Path:
    target = DATA / f"{PREFIX}-input-{rows}"
    if (target / "_COMPLETE").is_file():
        return target
    from privprep.pipeline.files.sample import write_sample

    DATA.mkdir(parents=True, exist_ok=True)
    tmp = DATA / f".{PREFIX}-input-{rows}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)
    print(f"generating {rows:,} rows into {target} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    paths = write_sample(rows, tmp, seed=0)
    (tmp / "_COMPLETE").write_text(json.dumps({"rows": rows, "seed": 0, "files": [p.name for p in paths]}) + "\n")
    os.replace(tmp, target)
    print(f"  generated in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return target


def ensure_keyring() -> Path:
    path = DATA / f"{PREFIX}.keyring"
    if not path.is_file():
        DATA.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(PRIVPREP), "keys", "new", "--out", str(path)], check=True, capture_output=True)
    return path


def write_config(rows: int, input_dir: Path, keyring: Path) -> tuple[Path, Path]:
    output = DATA / f"{PREFIX}-out-{rows}" / "privprep"
    config = DATA / f"{PREFIX}-{rows}.yaml"
    lines = [
        "# written by benchmarks/bench_run.py",
        "version: 1",
        f"input: {json.dumps(str(input_dir))}",
        f"output: {json.dumps(str(output))}",
        f"keyring: {json.dumps(str(keyring))}",
        "columns:",
        *(f"  {name}: {{role: {role}}}" for name, role in COLUMNS.items()),
        "stages:",
        "  - pseudonymize: {columns: [patient_id], domain: patients}",
        "  - pseudonymize: {columns: [email], domain: email}",
        "  - drop: {columns: [name, national_id, phone]}",
    ]
    config.write_text("\n".join(lines) + "\n")
    return config, output


def clean(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    for stray in path.parent.glob(f".{path.name}.privprep-*"):  # temp dirs of an interrupted run
        shutil.rmtree(stray, ignore_errors=True)


# -- one row count --------------------------------------------------------------------------------------
@dataclass
class Result:
    rows: int
    floor: list[Measured] = field(default_factory=list)
    privprep: list[Measured] = field(default_factory=list)
    reports: list[dict] = field(default_factory=list)


def bench(rows: int, repeats: int, warmup: int) -> Result:
    input_dir = ensure_input(rows)
    config, output = write_config(rows, input_dir, ensure_keyring())
    floor_out = DATA / f"{PREFIX}-out-{rows}" / "floor"
    floor_cmd = [sys.executable, str(Path(__file__).resolve()), "--_floor", str(input_dir), str(floor_out)]
    run_cmd = [str(PRIVPREP), "run", str(config), "--overwrite", "--quiet"]
    result = Result(rows)

    def run_floor(keep: bool) -> None:
        clean(floor_out)
        m = measure(floor_cmd)
        got = json.loads(m.stdout.strip().splitlines()[-1])["rows"]
        clean(floor_out)
        if got != rows:
            raise SystemExit(f"floor wrote {got:,} rows, expected {rows:,}")
        if keep:
            result.floor.append(m)
        print(f"  {rows:,} floor    {m.wall:7.2f} s  {m.maxrss_kib / 1024:7.0f} MB{'' if keep else '  (warm-up)'}",
              file=sys.stderr, flush=True)

    def run_privprep(keep: bool) -> None:
        clean(output)
        m = measure(run_cmd)
        report = json.loads((output / "report.json").read_text())
        clean(output)
        if report["output"]["rows"] != rows or report["input"]["rows"] != rows:
            raise SystemExit(f"privprep read {report['input']['rows']:,} / wrote {report['output']['rows']:,} rows, "
                             f"expected {rows:,}")
        if keep:
            result.privprep.append(m)
            result.reports.append(report)
        print(f"  {rows:,} privprep {m.wall:7.2f} s  {m.maxrss_kib / 1024:7.0f} MB{'' if keep else '  (warm-up)'}",
              file=sys.stderr, flush=True)

    for _ in range(warmup):
        run_floor(False)
        run_privprep(False)
    for i in range(repeats):
        first, second = (run_floor, run_privprep) if i % 2 == 0 else (run_privprep, run_floor)
        first(True)
        second(True)
    shutil.rmtree(DATA / f"{PREFIX}-out-{rows}", ignore_errors=True)
    return result


def print_tables(results: list[Result], repeats: int, warmup: int) -> None:
    mb = 1024.0
    print()
    print(f"privprep run vs plain pyarrow read+write: median wall of {repeats} runs after {warmup} warm-up; "
          "peak RSS = max over the timed runs")
    print(f"Goals: privprep/floor <= {RATIO_GOAL:g}x; privprep peak RSS < {RSS_GOAL_MB / mb:g} GB, flat as rows grow")
    print(f"stages: pseudonymize [patient_id], pseudonymize [email], drop [name, national_id, phone]; "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}; shared machine, figures are noisy")
    header = (f"{'rows':>12} {'floor s':>8} {'privprep s':>10} {'ratio':>6} {'goal':>5} "
              f"{'floor RSS MB':>12} {'privprep RSS MB':>15} {'RSS goal':>8} {'floor rows/s':>13} {'privprep rows/s':>15}")
    print(header)
    print("-" * len(header))
    for r in results:
        f = statistics.median(m.wall for m in r.floor)
        p = statistics.median(m.wall for m in r.privprep)
        f_rss = max(m.maxrss_kib for m in r.floor) / mb
        p_rss = max(m.maxrss_kib for m in r.privprep) / mb
        ratio = p / f
        print(f"{r.rows:>12,} {f:>8.2f} {p:>10.2f} {ratio:>5.2f}x {'yes' if ratio <= RATIO_GOAL else 'NO':>5} "
              f"{f_rss:>12.0f} {p_rss:>15.0f} {'yes' if p_rss < RSS_GOAL_MB else 'NO':>8} "
              f"{r.rows / f:>13,.0f} {r.rows / p:>15,.0f}")
    if len(results) > 1:
        lo, hi = results[0], results[-1]
        lo_rss = max(m.maxrss_kib for m in lo.privprep) / mb
        hi_rss = max(m.maxrss_kib for m in hi.privprep) / mb
        print(f"privprep peak RSS {lo.rows:,} -> {hi.rows:,} rows: {lo_rss:.0f} -> {hi_rss:.0f} MB "
              f"({hi_rss / lo_rss:.2f}x for {hi.rows / lo.rows:.1f}x the rows)")
    print()
    print("privprep in-process timings from report.json (median over the timed runs, s):")
    names = [f"{i}:{s['name']}" for i, s in enumerate(results[0].reports[0]["stages"])]
    header = f"{'rows':>12} {'total':>8} {'write pass':>10} " + " ".join(f"{n:>16}" for n in names) + f" {'startup+exit':>12}"
    print(header)
    print("-" * len(header))
    for r in results:
        total = statistics.median(rep["timings"]["total_seconds"] for rep in r.reports)
        write = statistics.median(rep["timings"]["write_seconds"] for rep in r.reports)
        stages = [statistics.median(rep["stages"][i]["seconds"] for rep in r.reports) for i in range(len(names))]
        outside = statistics.median(m.wall - rep["timings"]["total_seconds"] for m, rep in zip(r.privprep, r.reports))
        print(f"{r.rows:>12,} {total:>8.2f} {write:>10.2f} " + " ".join(f"{s:>16.2f}" for s in stages) + f" {outside:>12.2f}")
    print("(write pass = read + stages + Parquet write; startup+exit = process wall minus report total: "
          "interpreter, imports, config, keyring, plan)")
    print()
    print("all wall times (s):")
    for r in results:
        print(f"  {r.rows:>12,} floor    " + " ".join(f"{m.wall:.2f}" for m in r.floor))
        print(f"  {r.rows:>12,} privprep " + " ".join(f"{m.wall:.2f}" for m in r.privprep))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--_floor"]:
        return floor(argv[1], argv[2])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[5_000_000],
                        help="row counts to benchmark, e.g. --rows 5000000 20000000 (default 5,000,000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each after the warm-up (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs of each (default 1)")
    args = parser.parse_args(argv)
    if min(args.rows) < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("--rows must be >= 1, --repeats >= 1, --warmup >= 0")
    if not PRIVPREP.is_file():
        parser.error(f"{PRIVPREP} not found; run this with the virtualenv's python")
    results = [bench(rows, args.repeats, args.warmup) for rows in args.rows]
    print_tables(results, args.repeats, args.warmup)
    return 0


if __name__ == "__main__":
    sys.exit(main())
