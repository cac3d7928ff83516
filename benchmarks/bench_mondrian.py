"""Full-domain optimum vs Mondrian vs MDAV microaggregation on the Adult data (9 quasi-identifiers,
ARX's hierarchies), for k in {2, 5, 10, 50, 100}.

Per k and algorithm: GCP (mean normalized certainty penalty over the 9 quasi-identifiers, 1 per
suppressed row), discernibility, C_AVG, released classes, the smallest class over all 9
quasi-identifiers, suppressed rows and seconds for the whole stage (observe + decide + transform).
Microaggregation replaces only the numeric quasi-identifier (age) and leaves the 8 categorical ones as
they are, so its classes over all 9 are not k-anonymous: it is shown for its information loss only.

Then Mondrian on larger synthetic inputs (zip with a mask hierarchy, age, income; ``--mondrian-rows``)
and MDAV's cost alone on synthetic distinct 2-column tuples (``--mdav-sizes``): seconds grow as m²/k.

    python benchmarks/bench_mondrian.py [--data ../shared/data/adult] [--ks 2,5,10,50,100]
        [--mondrian-rows 50000,200000] [--mdav-sizes 5000,20000,50000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from privprep.transforms import KAnonymity, Microaggregate
from privprep.transforms.microaggregate import mdav
from privprep.transforms.mondrian import MondrianKAnonymity

QIS = ["sex", "age", "race", "marital-status", "education", "native-country", "workclass", "occupation", "salary-class"]


def timed(stage, table):  # noqa: ANN001, ANN201
    t0 = time.perf_counter()
    stage.observe(table)
    stage.decide()
    out = stage.transform(table)
    return out, time.perf_counter() - t0


def synthetic_table(rows: int, seed: int = 1) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({
        "zip": [f"{z:05d}" for z in rng.integers(10000, 10600, rows)],
        "age": rng.integers(18, 90, rows),
        "income": rng.integers(0, 40, rows) * 1000,
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "adult")
    parser.add_argument("--ks", default="2,5,10,50,100")
    parser.add_argument("--mondrian-rows", default="50000,200000")
    parser.add_argument("--mdav-sizes", default="5000,20000,50000")
    args = parser.parse_args()
    table = pacsv.read_csv(args.data / "adult.csv", parse_options=pacsv.ParseOptions(delimiter=";")).select(QIS)
    hierarchies = {q: {"csv": str(args.data / f"adult_hierarchy_{q}.csv")} for q in QIS}
    n = table.num_rows
    print(f"Adult: {n:,} rows, {len(QIS)} quasi-identifiers; GCP over all 9 (0 = input, 1 = all suppressed)\n")
    header = f"{'k':>4} {'algorithm':<22} {'GCP':>7} {'discernibility':>15} {'C_AVG':>7} {'classes':>8} {'min class':>9} {'suppressed':>10} {'seconds':>8}"
    print(header)
    print("-" * len(header))
    ratios = []
    for k in (int(x) for x in args.ks.split(",")):
        rows = []
        for label, stage in (
            ("full-domain, 0%", KAnonymity(k=k, quasi_identifiers=QIS, hierarchies=hierarchies, suppression_limit=0.0)),
            ("full-domain, 4%", KAnonymity(k=k, quasi_identifiers=QIS, hierarchies=hierarchies, suppression_limit=0.04)),
            ("mondrian", MondrianKAnonymity(k=k, quasi_identifiers=QIS, hierarchies=hierarchies)),
        ):
            _, seconds = timed(stage, table)
            r = stage.report()
            m = r["measures"]
            rows.append((label, m["gcp"], m["discernibility"], m["c_avg"], r["equivalence_classes"], r["achieved_k"], r["suppressed_rows"], seconds))
        stage = Microaggregate(columns=["age"], k=k)
        out, seconds = timed(stage, table)
        sizes = out.to_pandas().groupby(QIS).size().to_numpy()
        gcp = stage.report()["measures"]["ncp"]["age"] / len(QIS)
        rows.append(("mdav (age only)", gcp, float((sizes.astype(float) ** 2).sum()), sizes.mean() / k, len(sizes), int(sizes.min()), 0, seconds))
        for label, gcp, disc, cavg, classes, smallest, suppressed, seconds in rows:
            print(f"{k:>4} {label:<22} {gcp:>7.4f} {disc:>15,.0f} {cavg:>7.2f} {classes:>8,} {smallest:>9,} {suppressed:>10,} {seconds:>8.3f}")
        best_full = min(rows[0][1], rows[1][1])
        ratios.append((k, best_full, rows[2][1]))
    print()
    for k, full, mondrian in ratios:
        print(f"k={k:<3}  Mondrian GCP {mondrian:.4f} vs full-domain optimum {full:.4f}: {full / mondrian:.1f}x less information lost "
              f"({100 * (1 - mondrian / full):.0f}% lower GCP)")
    print(f"\n{'rows':>9} {'distinct tuples':>15} {'k':>4} {'partitions':>10} {'seconds':>8}   (Mondrian, synthetic)")
    for rows in (int(x) for x in args.mondrian_rows.split(",") if x):
        synthetic = synthetic_table(rows)
        for k in (5, 50):
            stage = MondrianKAnonymity(k=k, quasi_identifiers=["zip", "age", "income"], hierarchies={"zip": {"mask": {}}})
            _, seconds = timed(stage, synthetic)
            search = stage.report()["search"]
            print(f"{rows:>9,} {search['distinct_tuples']:>15,} {k:>4} {search['partitions']:>10,} {seconds:>8.2f}")
    print(f"\n{'distinct tuples':>15} {'k':>4} {'groups':>7} {'seconds':>8} {'m²/k':>14}   (MDAV alone)")
    for m in (int(x) for x in args.mdav_sizes.split(",") if x):
        points = np.random.default_rng(0).normal(size=(m, 2))
        for k in (5, 50):
            t0 = time.perf_counter()
            groups = int(mdav(points, np.ones(m), k).max()) + 1
            print(f"{m:>15,} {k:>4} {groups:>7,} {time.perf_counter() - t0:>8.2f} {m * m / k:>14,.0f}")


if __name__ == "__main__":
    main()
