"""DP statistics at the level of people, against independent derivations.

Data with known per-person counts: each of ``P`` people has ``R`` rows, all of one value ``v_i``, so
the bounded statistics are known exactly (``min(R, Linf)`` rows of ``v_i`` per person) and the noise is
all that varies between runs. The empirical standard deviation over many runs must match the stated
scale: two-sided geometric noise of sensitivity ``C`` has variance ``2a/(1-a)**2`` with
``a = exp(-epsilon/C)``; Laplace of scale ``b`` has standard deviation ``sqrt(2) b``.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pyarrow as pa
import pytest

from privprep.schemas.errors import ConfigError
from privprep.transforms.dp import DpStats, SpendLog
from privprep.transforms.dp.partitions import laplace_threshold, release_probability

COLUMNS = {"pid": {"role": "identifier"}, "income": {"role": "sensitive", "bounds": [0, 10]},
           "region": {"role": "quasi_identifier"}, "sex": {"role": "quasi_identifier", "categories": ["f", "m"]}}


def people_table(n_people: int = 400, rows_each: int = 5, seed: int = 0) -> tuple[pa.Table, np.ndarray]:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 11, n_people).astype(float)
    pid = np.repeat(np.arange(n_people), rows_each)
    table = pa.table({"pid": [f"p{i}" for i in pid], "income": np.repeat(values, rows_each)})
    order = rng.permutation(len(pid))  # a person's rows spread over the table
    return table.take(pa.array(order)), values


def stage(seed: int, **kw) -> DpStats:
    params = dict(epsilon=1.0, queries=[{"column": "income", "stat": "count"}], columns=COLUMNS, seed=seed,
                  privacy_unit="pid", max_contributions_per_partition=2)
    params.update(kw)
    return DpStats(**params)


def test_empirical_error_of_count_sum_mean_matches_the_stated_scale() -> None:
    table, values = people_table()
    queries = [{"column": "income", "stat": s, "epsilon": e} for s, e in (("count", 0.5), ("sum", 1.0), ("mean", 1.0))]
    observed = stage(0, epsilon=2.5, queries=queries)
    observed.observe(table)
    exact = {"count": 2 * len(values), "sum": 2 * values.sum(), "mean": values.mean()}
    runs = 400
    got: dict[str, list[float]] = {s: [] for s in exact}
    scales = {}
    for seed in range(runs):
        s = copy.deepcopy(observed)
        s.seed = seed
        for r in s.release(SpendLog()):
            got[r["stat"]].append(r["value"] - exact[r["stat"]])
            scales[r["stat"]] = r["noise_scale"]
    # independent derivations of the scales: C = 1 partition x 2 rows
    a = math.exp(-0.5 / 2)
    assert scales["count"] == pytest.approx(2 / 0.5)
    assert scales["sum"] == pytest.approx(2 * 10 / 1.0)
    expected_sd = {"count": math.sqrt(2 * a / (1 - a) ** 2), "sum": math.sqrt(2) * 20.0,
                   "mean": math.sqrt(2) * (2 * 5 / 0.5) / (2 * len(values))}  # centered sum noise over n
    for stat, sd in expected_sd.items():
        emp = float(np.std(got[stat]))
        assert abs(emp / sd - 1) < 4 / math.sqrt(2 * runs) + 0.05, (stat, emp, sd)  # sd's sampling error ~ 1/sqrt(2n)
        assert abs(np.mean(got[stat])) < 4 * sd / math.sqrt(runs) + (0.02 if stat == "mean" else 0), stat


def test_one_heavy_person_shifts_the_sum_without_bounding_and_not_with_it() -> None:
    base, _ = people_table(200, 1)
    heavy = pa.table({"pid": ["whale"] * 3000, "income": [10.0] * 3000})
    with_heavy = pa.concat_tables([base, heavy])
    results = {}
    for unit in (None, "pid"):
        out = []
        for data in (base, with_heavy):
            s = DpStats(epsilon=1.0, queries=[{"column": "income", "stat": "sum"}], columns=COLUMNS, seed=7,
                        privacy_unit=unit)
            s.observe(data)
            out.append(s.release(SpendLog())[0])
        results[unit] = out
    row_level, person_level = results[None], results["pid"]
    assert abs(row_level[1]["value"] - row_level[0]["value"]) > 100 * row_level[0]["error_95"]  # 30,000 vs ~30
    # the same seed draws the same noise: the difference is the whale's bounded contribution, at most 1 row x 10
    assert abs(person_level[1]["value"] - person_level[0]["value"]) <= 10 + 1e-9
    assert abs(person_level[1]["value"] - person_level[0]["value"]) < person_level[0]["error_95"]


def test_a_key_of_one_person_is_never_released_and_a_key_of_many_always() -> None:
    rows = [("solo", "p0")] + [("crowd", f"c{i}") for i in range(200)] + [("crowd", "c0")] * 50
    table = pa.table({"region": [r for r, _ in rows], "pid": [p for _, p in rows], "income": [1.0] * len(rows)})
    released = {"solo": 0, "crowd": 0}
    for seed in range(300):
        s = stage(seed, queries=[{"column": "income", "stat": "count", "group_by": ["region"]}],
                  selection={"epsilon": 0.5, "delta": 1e-6}, epsilon=1.5)
        s.observe(table)
        for r in s.release(SpendLog()):
            released[r["group"]] += 1
    assert released == {"solo": 0, "crowd": 300}


def test_release_probability_matches_the_analytic_formula() -> None:
    """200 keys of 7 people each (and L0 = 2: every person in 2 of their 3 keys): the fraction released
    is the Laplace tail above the threshold, computed here from its definition."""
    eps, delta, l0 = 1.0, 1e-3, 2
    rows = []
    for key in range(300):
        for person in range(7):  # person (key, person) also appears in two other keys of its own
            rows.append((f"k{key}", f"u{key}-{person}"))
    table = pa.table({"region": [k for k, _ in rows], "pid": [p for _, p in rows], "income": [1.0] * len(rows)})
    s = stage(11, queries=[{"column": "income", "stat": "count", "group_by": ["region"]}],
              selection={"epsilon": eps, "delta": delta}, epsilon=2.0, max_partitions_contributed=l0)
    s.observe(table)
    released = len(s.release(SpendLog()))
    b = l0 / eps
    tau = 1 + b * math.log(l0 / (2 * delta))
    p = 1 - 0.5 * math.exp(-(7 - tau) / b) if 7 >= tau else 0.5 * math.exp(-(tau - 7) / b)
    assert laplace_threshold(epsilon=eps, delta=delta, max_partitions=l0) == pytest.approx(tau)
    assert release_probability(7, epsilon=eps, delta=delta, max_partitions=l0) == pytest.approx(p)
    assert abs(released - 300 * p) < 4 * math.sqrt(300 * p * (1 - p)), (released, 300 * p)
    report = s.report()
    assert report["partition_selection"][0]["keys_released"] == released
    assert report["local_not_dp"]["keys"] == [{"group_by": ["region"], "keys_observed": 300, "keys_suppressed": 300 - released}]


def test_public_keys_cost_nothing_and_bound_partitions_per_person() -> None:
    """Every person has rows under both declared keys; L0 = 1 keeps one: the two counts add up to the
    people (x Linf), and the sensitivity is C = min(L0, 2 keys) x Linf."""
    n = 300
    table = pa.table({"pid": [f"p{i}" for i in range(n)] * 4, "sex": ["f"] * (2 * n) + ["m"] * (2 * n), "income": [1.0] * (4 * n)})
    s = stage(1, queries=[{"column": "income", "stat": "count", "group_by": ["sex"]}])
    s.observe(table)
    log = SpendLog()
    out = s.release(log)
    assert [r["group"] for r in out] == ["f", "m"] and all(r["noise_scale"] == 2.0 for r in out)
    assert abs(sum(r["value"] for r in out) - 2 * n) < 2 * out[0]["error_95"]
    assert log.entries[0]["delta"] == 0.0 and "partition_selection" not in log.entries[0]["details"]
    assert s.report()["local_not_dp"]["bounding"] == [{"query": 0, "rows_kept": 2 * n, "rows_dropped": 2 * n}]


def test_split_batches_and_merged_copies_release_the_same_values() -> None:
    table, _ = people_table(300, 6, seed=4)
    table = table.append_column("region", pa.array([f"r{i % 3}" for i in range(table.num_rows)]))
    kw = dict(queries=[{"column": "income", "stat": "sum", "group_by": ["region"]}, {"column": "income", "stat": "mean"}],
              selection={"epsilon": 0.5, "delta": 1e-6}, epsilon=2.0, max_partitions_contributed=2, memory_rows=1024)
    whole = stage(3, **kw)
    whole.observe(table)
    template = stage(3, **kw)
    parts = [copy.deepcopy(template) for _ in range(3)]
    for i, part in enumerate(parts):
        for batch in table.slice(i * 600, 600).to_batches(max_chunksize=97):
            part.observe(pa.Table.from_batches([batch]))
    parts[0].merge(parts[1])
    parts[0].merge(parts[2])
    a, b = whole.release(SpendLog()), parts[0].release(SpendLog())
    assert [(r.get("group"), r["value"]) for r in a] == [(r.get("group"), r["value"]) for r in b]
    assert whole.report()["local_not_dp"] == parts[0].report()["local_not_dp"]


def test_the_spend_records_the_selection_and_fails_closed() -> None:
    s = stage(0, queries=[{"column": "income", "stat": "count", "group_by": ["region"]}],
              selection={"epsilon": 0.25, "delta": 1e-7}, epsilon=1.0)
    s.observe(pa.table({"pid": ["a"], "income": [1.0], "region": ["zq-secret-key"]}))
    log = SpendLog()
    assert s.release(log) == []  # one person's key is suppressed: nothing of it appears
    (entry,) = log.entries
    assert (entry["epsilon"], entry["delta"]) == (1.0, 1e-7)
    assert entry["details"]["partition_selection"][0]["epsilon"] == 0.25
    assert entry["details"]["privacy_unit"] == "pid"
    assert "zq-secret-key" not in repr(s.report()["partition_selection"]) + repr(s.report()["local_not_dp"])
    with pytest.raises(ConfigError, match="selection"):
        stage(0, queries=[{"column": "income", "stat": "count", "group_by": ["region"]}])
    with pytest.raises(ConfigError, match="not declared"):
        stage(0, privacy_unit="patient")
    with pytest.raises(ConfigError, match="identifier"):
        stage(0, queries=[{"column": "income", "stat": "count", "group_by": ["pid"]}], selection={"epsilon": 0.1, "delta": 1e-6})
    with pytest.raises(ConfigError, match="max_contributions_per_partition"):
        stage(0, max_contributions_per_partition=0)
