"""Benchmark: ``privprep run`` with a local input and output versus s3:// on a local S3 server.

The input is generated once with ``privprep.pipeline.files.sample.write_sample(rows, dir, seed=0)`` and cached
under ``benchmarks/_data/bench_s3-input-<rows>/``; the stages are bench_run.py's (two pseudonymize, one
drop). A moto S3 server is started in this process on 127.0.0.1 (a free port, loopback only) and the
input is uploaded to a bucket on it once. Then, for each case (input -> output: local -> local,
s3 -> local, local -> s3, s3 -> s3), one warm-up and --repeats timed runs of
``privprep run CONFIG --overwrite --quiet`` as a subprocess, the cases interleaved; the table gives median wall time,
throughput and the largest peak RSS (``os.wait4``) of the privprep process.

The server is moto (Python, in memory, one process): its request handling bounds the s3:// figures, so
they are a floor for what a real store gives, not a measure of one.

    python benchmarks/bench_s3.py [--rows 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_run import COLUMNS, DATA, PRIVPREP, clean, measure  # noqa: E402

PREFIX = "bench_s3"
CASES = (("local", "local"), ("s3", "local"), ("local", "s3"), ("s3", "s3"))


def ensure_input(rows: int) -> Path:
    target = DATA / f"{PREFIX}-input-{rows}"
    if (target / "_COMPLETE").is_file():
        return target
    from privprep.pipeline.files.sample import write_sample

    tmp = DATA / f".{PREFIX}-input-{rows}.tmp-{os.getpid()}"
    print(f"generating {rows:,} rows into {target} ...", file=sys.stderr, flush=True)
    write_sample(rows, tmp, seed=0)
    (tmp / "_COMPLETE").write_text("ok\n")
    os.replace(tmp, target)
    return target


def start_server() -> tuple[object, str]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request log lines
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def upload(local: Path, bucket: str, endpoint: str) -> str:
    import pyarrow.fs as pafs

    fs = pafs.S3FileSystem(endpoint_override=endpoint.split("://", 1)[1], scheme="http", region="us-east-1",
                           allow_bucket_creation=True)
    fs.create_dir(bucket)
    for file in sorted(local.glob("*.parquet")):
        pafs.copy_files(str(file), f"{bucket}/input/{file.name}", destination_filesystem=fs)
    return f"s3://{bucket}/input/"


def write_config(name: str, input: str, output: str, keyring: Path) -> Path:
    lines = [
        "# written by benchmarks/bench_s3.py",
        "version: 1",
        f"input: {input!r}",
        f"output: {output!r}",
        f"keyring: {str(keyring)!r}",
        "columns:",
        *(f"  {col}: {{role: {role}}}" for col, role in COLUMNS.items()),
        "stages:",
        "  - pseudonymize: {columns: [patient_id], domain: patients}",
        "  - pseudonymize: {columns: [email], domain: email}",
        "  - drop: {columns: [name, national_id, phone]}",
    ]
    path = DATA / f"{PREFIX}-{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    DATA.mkdir(parents=True, exist_ok=True)
    local_in = ensure_input(args.rows)
    keyring = DATA / f"{PREFIX}.keyring"
    if not keyring.is_file():
        measure([str(PRIVPREP), "keys", "new", "--out", str(keyring)])
    server, endpoint = start_server()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_ENDPOINT_URL=endpoint,
                      AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    try:
        s3_in = upload(local_in, "bench", endpoint)
        commands: dict[str, tuple[list[str], str]] = {}
        for source, sink in CASES:
            name = f"{source}-{sink}"
            output = f"s3://bench/out-{name}" if sink == "s3" else str(DATA / f"{PREFIX}-out-{name}")
            config = write_config(name, s3_in if source == "s3" else str(local_in), output, keyring)
            commands[name] = ([str(PRIVPREP), "run", str(config), "--overwrite", "--quiet"], output)
        for cmd, _ in commands.values():
            measure(cmd)  # warm-up
        timed: dict[str, list[Any]] = {name: [] for name in commands}
        for _ in range(args.repeats):  # interleaved, so a burst of load elsewhere falls on every case alike
            for name, (cmd, _) in commands.items():
                timed[name].append(measure(cmd))
        rows = []
        for name, runs in timed.items():
            wall = statistics.median(m.wall for m in runs)
            rows.append((name, wall, args.rows / wall, max(m.maxrss_kib for m in runs) / 1024))
        for _, output in commands.values():
            if not output.startswith("s3://"):
                clean(Path(output))
    finally:
        server.stop()  # type: ignore[attr-defined]
    print(f"privprep run, {args.rows:,} rows (bench_run.py stages), median of {args.repeats}, "
          f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs; "
          "s3 = moto server on 127.0.0.1")
    print(f"| {'input -> output':<16} | {'wall s':>7} | {'rows/s':>10} | {'vs local':>8} | {'peak RSS MiB':>12} |")
    print(f"|{'-' * 18}|{'-' * 9}|{'-' * 12}|{'-' * 10}|{'-' * 14}|")
    base = rows[0][1]
    for name, wall, rate, rss in rows:
        print(f"| {name.replace('-', ' -> '):<16} | {wall:>7.2f} | {rate:>10,.0f} | {wall / base:>7.2f}x | {rss:>12.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
