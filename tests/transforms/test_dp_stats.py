"""The dp_stats release stage: accuracy against independently derived noise scales, streaming,
clipping, bounds only from the config, the spend recorded before any noise, and config errors.

Reference values come from the mechanisms' textbook distributions, not from the code under test:
Laplace(b) has mean absolute value b; two-sided geometric noise with a = exp(-epsilon) has mean
absolute value 2a / (1 - a**2).
"""

from __future__ import annotations

import copy
import doctest
import importlib
import json
import math
import warnings

import numpy as np
import pyarrow as pa
import pytest
from diffprivlib.utils import PrivacyLeakWarning

from privprep.schemas.errors import BudgetError, ConfigError
from privprep.transforms import registry
from privprep.transforms.dp import DpStats, SpendLog
from privprep.transforms.dp.mechanisms import NoiseSource, leak_warnings_are_errors

SEEDS = range(200)
COLUMNS = {
    "income": {"role": "sensitive", "bounds": [0, 100]},
    "label": {"role": "insensitive", "categories": ["a", "b", "c", "d", "e"]},
    "sex": {"role": "quasi_identifier", "categories": ["F", "M"]},
    "diagnosis": {"role": "sensitive"},
}


def data(n: int = 2000, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    income = rng.beta(2, 5, n) * 100  # mean 28.6: off the middle of the bounds, as real data are
    return pa.table({
        "income": income,
        "label": np.array(list("abcde"))[np.arange(n) % 5],
        "sex": np.where(np.arange(n) % 4 == 0, "F", "M"),
        "diagnosis": ["flu"] * n,
    })


def stage(queries: list[dict], epsilon: float = 0.5, seed: int | None = 0, **kw) -> DpStats:
    return DpStats(epsilon=epsilon, queries=queries, columns=kw.pop("columns", COLUMNS), seed=seed, **kw)


def released(queries: list[dict], table: pa.Table, *, epsilon: float = 0.5, seeds=SEEDS) -> list[list[dict]]:
    """The releases of one observed stage under many seeds (the stage is copied before each release)."""
    base = stage(queries, epsilon=epsilon)
    base.observe(table)
    out = []
    for seed in seeds:
        s = copy.deepcopy(base)
        s.seed = seed
        out.append(s.release(SpendLog()))
    return out


def geometric_mae(epsilon: float) -> float:
    a = math.exp(-epsilon)
    return 2 * a / (1 - a * a)


# -- accuracy over many seeds ----------------------------------------------------------------------


def test_mean_error_is_within_1_5x_of_the_laplace_scale() -> None:
    table = data()
    truth = float(np.mean(table.column("income").to_numpy()))
    runs = released([{"column": "income", "stat": "mean"}], table)
    errors = np.array([abs(r[0]["value"] - truth) for r in runs])
    scale = (100 - 0) / (table.num_rows * 0.5)  # (U - L) / (n * epsilon)
    assert 0.5 * scale < errors.mean() < 1.5 * scale, errors.mean() / scale
    coverage = np.mean([abs(r[0]["value"] - truth) <= r[0]["error_95"] for r in runs])
    assert coverage >= 0.93


def test_histogram_bins_are_within_1_5x_of_the_geometric_expected_noise() -> None:
    table = data()
    runs = released([{"column": "label", "stat": "histogram"}], table)
    truth = {c: table.num_rows // 5 for c in "abcde"}
    errors = np.array([abs(e["value"] - truth[e["bin"]]) for r in runs for e in r])
    expected = geometric_mae(0.5)
    assert 0.67 * expected < errors.mean() < 1.5 * expected, errors.mean() / expected
    assert {e["mechanism"] for r in runs for e in r} == {"GeometricTruncated"}


def test_sum_and_count_noise_match_their_scales() -> None:
    table = data()
    runs = released([{"column": "income", "stat": "sum", "epsilon": 0.25}, {"column": "income", "stat": "count"}], table)
    truth = float(np.sum(table.column("income").to_numpy()))
    sum_mae = np.mean([abs(r[0]["value"] - truth) for r in runs])
    assert 0.67 * 100 / 0.25 < sum_mae < 1.5 * 100 / 0.25  # Laplace scale max(|L|, |U|) / epsilon
    count_mae = np.mean([abs(r[1]["value"] - table.num_rows) for r in runs])
    assert 0.67 * geometric_mae(0.25) < count_mae < 1.5 * geometric_mae(0.25)
    assert runs[0][0]["noise_scale"] == pytest.approx(400.0) and runs[0][1]["noise_scale"] == pytest.approx(4.0)


@pytest.mark.parametrize("stat", ["var", "std"])
def test_var_and_std_are_covered_by_their_error_bound(stat: str) -> None:
    table = data(5000)
    x = table.column("income").to_numpy()
    truth = float(np.var(x) if stat == "var" else np.std(x))
    runs = released([{"column": "income", "stat": stat}], table, epsilon=1.0, seeds=range(60))
    coverage = np.mean([abs(r[0]["value"] - truth) <= r[0]["error_95"] for r in runs])
    assert coverage >= 0.9
    assert np.median([abs(r[0]["value"] - truth) for r in runs]) < 0.05 * truth


def test_quantiles_from_a_dp_histogram_are_covered_by_their_error_bound() -> None:
    table = data(5000)
    x = table.column("income").to_numpy()
    runs = released([{"column": "income", "stat": "quantile", "quantiles": [0.25, 0.5, 0.9], "bins": 200}],
                    table, epsilon=1.0, seeds=range(40))
    for position, p in enumerate([0.25, 0.5, 0.9]):
        truth = float(np.quantile(x, p))
        entries = [r[position] for r in runs]
        assert {e["quantile"] for e in entries} == {p}
        assert np.mean([abs(e["value"] - truth) <= e["error_95"] for e in entries]) >= 0.9
        assert np.median([abs(e["value"] - truth) for e in entries]) < 1.0  # a bin is 0.5 wide


def test_grouped_counts_use_the_declared_categories() -> None:
    runs = released([{"column": "income", "stat": "count", "by": "sex"}], data(), seeds=range(1))
    assert [(e["by"], e["group"]) for e in runs[0]] == [("sex", "F"), ("sex", "M")]
    assert abs(runs[0][0]["value"] - 500) < 20 and abs(runs[0][1]["value"] - 1500) < 20


def test_numeric_histogram_matches_numpy_bins() -> None:
    table = data()
    entries = released([{"column": "income", "stat": "histogram", "bins": 4, "epsilon": 0.5}], table, seeds=[3])[0]
    exact, edges = np.histogram(table.column("income").to_numpy(), bins=4, range=(0, 100))
    assert [e["bin"] for e in entries] == [[float(a), float(b)] for a, b in zip(edges[:-1], edges[1:])]
    assert all(abs(e["value"] - c) <= 3 * e["error_95"] for e, c in zip(entries, exact))


# -- streaming, clipping, seeds --------------------------------------------------------------------


def test_many_batches_release_what_one_batch_releases() -> None:
    table = data(3000)
    queries = [{"column": "income", "stat": s} for s in ("mean", "var", "sum")] + [
        {"column": "income", "stat": "quantile", "quantiles": [0.5]}, {"column": "label", "stat": "histogram", "by": "sex"}]
    whole, parts = stage(queries, seed=11), stage(queries, seed=11)
    whole.observe(table)
    for batch in table.to_batches(max_chunksize=257):
        parts.observe(pa.Table.from_batches([batch]))
    a, b = whole.release(SpendLog()), parts.release(SpendLog())
    assert [e["value"] for e in a] == pytest.approx([e["value"] for e in b], rel=1e-9)
    assert parts.rows_observed == 3000


def test_values_outside_the_bounds_are_clipped_and_counted_only_locally() -> None:
    table = pa.table({"income": [-5.0, 50.0, 1e9, None, float("nan"), 100.0] * 200})
    s = stage([{"column": "income", "stat": "mean"}], epsilon=5.0, columns={"income": COLUMNS["income"]})
    s.observe(table)
    value = s.release(SpendLog())[0]["value"]
    assert abs(value - (0 + 50 + 100 + 100) / 4) < 2  # clipped to [0, 100]; null and NaN are missing
    local = s.report()["local_not_dp"]
    assert local["differentially_private"] is False and "NOT differentially private" in local["note"]
    assert local["clipped"] == [{"column": "income", "bounds": [0.0, 100.0], "below": 200, "above": 200}]
    assert local["missing"] == {"income": 400}


def test_the_same_seed_gives_the_same_values_and_no_seed_uses_secure_noise() -> None:
    queries = [{"column": "income", "stat": "mean"}]
    runs = released(queries, data(), seeds=[5, 5, 6])
    assert runs[0][0]["value"] == runs[1][0]["value"] != runs[2][0]["value"]
    assert NoiseSource(seed=None)._random_state is None  # diffprivlib then draws from secrets.SystemRandom
    assert stage(queries).report()["seeded"] is True


# -- the spend and the release ---------------------------------------------------------------------


def test_the_spend_is_recorded_before_any_noise_and_a_refusal_draws_none(monkeypatch) -> None:
    s = stage([{"column": "income", "stat": "mean"}], epsilon=0.6)
    s.observe(data())
    log = SpendLog(epsilon=1.0)
    log.spend(0.6)
    drawn = []
    monkeypatch.setattr(NoiseSource, "laplace", lambda *a, **k: drawn.append(1))
    with pytest.raises(BudgetError, match="remaining epsilon 0.4"):
        s.release(log)
    assert drawn == [] and s.releases_ is None and len(log.entries) == 1


def test_a_release_that_fails_after_the_spend_still_counts(monkeypatch) -> None:
    s = stage([{"column": "income", "stat": "sum"}], epsilon=0.3)
    s.observe(data())
    log = SpendLog(epsilon=1.0)

    def broken(*args, **kwargs):
        raise RuntimeError("noise failed")

    monkeypatch.setattr(NoiseSource, "laplace", broken)
    with pytest.raises(RuntimeError):
        s.release(log)
    assert log.spent == 0.3 and log.entries[0]["details"]["queries"] == [{"column": "income", "stat": "sum", "epsilon": 0.3}]


def test_a_stage_releases_once() -> None:
    s = stage([{"column": "income", "stat": "count"}])
    s.observe(data(10))
    s.release(SpendLog())
    with pytest.raises(RuntimeError, match="released already"):
        s.release(SpendLog())


def test_epsilon_split_is_even_unless_queries_carry_their_own() -> None:
    even = stage([{"column": "income", "stat": "mean"}, {"column": "label", "stat": "histogram"}], epsilon=1.0)
    mixed = stage([{"column": "income", "stat": "mean", "epsilon": 0.5}, {"column": "income", "stat": "count"},
                   {"column": "income", "stat": "sum"}], epsilon=1.0)
    assert even.epsilons == [0.5, 0.5] and even.report()["epsilon_split"]["method"] == "even"
    assert mixed.epsilons == [0.5, 0.25, 0.25]
    assert mixed.report()["epsilon_split"]["method"] == "own epsilons, the rest split evenly"
    mixed.observe(data(10))
    assert mixed.report()["epsilon_split"]["queries"][0]["parts"] == {"count": 0.25, "sum": 0.25}


def test_report_entries_have_the_spec_keys_and_no_cell_values() -> None:
    table = pa.table({"label": ["a", "SECRET-VALUE", "b"] * 10, "income": [1.0, 2.0, 3.0] * 10})
    s = stage([{"column": "label", "stat": "histogram"}, {"column": "income", "stat": "quantile", "quantiles": [0.5]}],
              columns={"label": COLUMNS["label"], "income": COLUMNS["income"]})
    s.observe(table)
    releases = s.release(SpendLog())
    for entry in releases:
        assert {"column", "stat", "value", "epsilon", "mechanism", "bounds", "noise_scale", "error_95"} <= set(entry)
    blob = json.dumps({"releases": releases, **s.report()})
    assert "SECRET-VALUE" not in blob
    assert s.report()["local_not_dp"]["outside_categories"] == {"label": 10}


def test_leak_warnings_are_errors_inside_the_stage() -> None:
    from diffprivlib.tools import mean

    with leak_warnings_are_errors(), pytest.raises(PrivacyLeakWarning):
        mean(np.arange(10.0), epsilon=1.0)  # no bounds: diffprivlib would read them from the data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mean(np.arange(10.0), epsilon=1.0)  # outside the block the library's own behaviour is untouched


# -- config errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("queries", "epsilon", "columns", "message"),
    [
        ([{"column": "diagnosis", "stat": "mean"}], 1.0, None, "queries[0]: stat 'mean' on 'diagnosis' needs declared bounds"),
        ([{"column": "income", "stat": "mean"}], 0.0, None, "epsilon: Input should be greater than 0"),
        ([{"column": "income", "stat": "mean"}], -1.0, None, "epsilon: Input should be greater than 0"),
        ([{"column": "income", "stat": "mean", "epsilon": 0}], 1.0, None, "queries[0].epsilon"),
        ([{"column": "income", "stat": "median"}], 1.0, None, "queries[0].stat"),
        ([{"column": "income", "stat": "histogram"}], 1.0, None, "needs 'bins'"),
        ([{"column": "label", "stat": "histogram", "bins": 3}], 1.0, None, "'bins' and 'range' do not apply"),
        ([{"column": "income", "stat": "count", "by": "income"}], 1.0, None, "needs declared categories"),
        ([{"column": "income", "stat": "quantile"}], 1.0, None, "needs 'quantiles'"),
        ([{"column": "income", "stat": "mean", "epsilon": 2}], 1.0, None, "more than the stage's epsilon"),
        ([{"column": "income", "stat": "mean", "epsilon": 0.4}], 1.0, None, "make them equal"),
        ([{"column": "ghost", "stat": "count"}], 1.0, None, "not declared: ghost"),
    ],
)
def test_config_errors_are_one_line_and_name_the_path(queries, epsilon, columns, message) -> None:
    with pytest.raises(ConfigError) as info:
        DpStats(epsilon=epsilon, queries=queries, columns=columns or COLUMNS, path="stages[3].dp_stats")
    assert message in str(info.value) and "stages[3].dp_stats" in str(info.value) and "\n" not in str(info.value)


def test_a_numeric_stat_on_a_non_numeric_column_is_a_config_error() -> None:
    columns = {"diagnosis": {"role": "sensitive", "bounds": [0, 1]}}
    s = DpStats(epsilon=1.0, queries=[{"column": "diagnosis", "stat": "mean"}], columns=columns, path="stages[3].dp_stats")
    with pytest.raises(ConfigError, match=r"stages\[3\].dp_stats.queries\[0\]: stat 'mean' needs a numeric column, but 'diagnosis' is string"):
        s.output_schema(pa.schema([("diagnosis", pa.string())]))


def test_categories_that_do_not_fit_the_column_type_are_a_config_error() -> None:
    s = stage([{"column": "label", "stat": "histogram"}], columns={"label": {"role": "insensitive", "categories": ["x", "y"]}})
    with pytest.raises(ConfigError, match="columns.label.categories"):
        s.observe(pa.table({"label": pa.array([1, 2], pa.int64())}))


def test_registered_and_submodule_examples_run() -> None:
    assert registry.get("dp_stats") is DpStats
    for name in ("account", "columns", "mechanisms", "queries", "stage"):
        result = doctest.testmod(importlib.import_module(f"privprep.transforms.dp.{name}"), optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, name


def test_partial_observations_merge_to_exactly_the_single_pass_release() -> None:
    """Copies observe batches of other partitions; merged in a tree they release bit-identical values
    for the same seed (float sums are kept per batch and added with math.fsum)."""
    queries = [{"column": "income", "stat": s} for s in ("count", "sum", "mean", "var", "std")]
    queries += [{"column": "income", "stat": "sum", "by": "label"}, {"column": "label", "stat": "histogram"},
                {"column": "income", "stat": "quantile", "quantiles": [0.5]}]
    table = data(5000, seed=3)
    batches = [table.slice(i, 250) for i in range(0, 5000, 250)]
    whole = stage(queries, seed=9)
    fresh = copy.deepcopy(whole)
    for batch in batches:
        whole.observe(batch)
    copies = []
    for group in (batches[:3], batches[3:4], batches[4:13], batches[13:]):
        part = copy.deepcopy(fresh)
        for batch in group:
            part.observe(batch)
        copies.append(part)
    copies[2].merge(copies[3])
    copies[0].merge(copies[1])
    copies[0].merge(copies[2])
    fresh.merge(copies[0])
    a, b = whole.release(SpendLog()), fresh.release(SpendLog())
    assert [r["value"] for r in a] == [r["value"] for r in b]
    assert fresh.report()["local_not_dp"] == whole.report()["local_not_dp"]
    assert fresh.rows_observed == 5000


def test_exact_sums_do_not_depend_on_the_order_of_partials() -> None:
    from privprep.transforms.dp.queries import PartialSums

    values = np.random.default_rng(1).normal(0, 1e6, 400)
    forward, backward = PartialSums(), PartialSums()
    for v in values:
        forward.add(np.array([v]))
    for v in values[::-1]:
        backward.add(np.array([v]))
    assert forward.value(1)[0] == backward.value(1)[0] == math.fsum(values)


def test_a_histogram_of_a_text_column_suggests_categories_not_bins() -> None:
    """Issue 23: a histogram on a text column asked for 'bins'; it needs declared categories."""
    columns = {"diagnosis": {"role": "sensitive", "bounds": [0, 10]}}
    s = DpStats(epsilon=1.0, queries=[{"column": "diagnosis", "stat": "histogram", "bins": 5}], columns=columns, path="stages[3].dp_stats")
    with pytest.raises(ConfigError) as info:
        s.output_schema(pa.schema([("diagnosis", pa.string())]))
    assert str(info.value) == ("stages[3].dp_stats.queries[0]: 'diagnosis' is string in the input, so its histogram counts declared "
                               "categories: add categories: [...] to columns.diagnosis ('bins' and bounds apply to numeric columns only)")
