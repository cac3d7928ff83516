"""The federated math without Flower: FedAvg's weighted mean, a site's schedule, noise calibrated once for all
rounds, cumulative accounting against Opacus' RDP analysis computed directly, the site split, and a
reproducible local DP-SGD round. Expected values are worked out by hand or come from Opacus' analysis."""

from __future__ import annotations

import math

import numpy as np
import pytest

from privprep.pipeline.federated.split import assign_sites
from privprep.schemas.errors import DataError
from privprep.transforms.federated import fedavg
from privprep.transforms.federated.accounting import RDP_ORDERS, LocalSchedule, SiteAccount, calibrate_noise, epsilon_of, sample_rate
from privprep.transforms.federated.settings import FederatedSettings, round_seed

# -- FedAvg ------------------------------------------------------------------------------------------------------


def test_fedavg_is_the_mean_weighted_by_examples_worked_by_hand() -> None:
    a = {"w": np.array([[1.0, 2.0], [3.0, 4.0]], np.float32), "b": np.array([1.0], np.float32)}
    b = {"w": np.array([[5.0, 6.0], [7.0, 8.0]], np.float32), "b": np.array([-1.0], np.float32)}
    c = {"w": np.zeros((2, 2), np.float32), "b": np.array([0.0], np.float32)}
    out = fedavg([a, b, c], [100, 300, 100])  # weights 1/5, 3/5, 1/5
    assert np.allclose(out["w"], [[3.2, 4.0], [4.8, 5.6]])       # 0.2·a + 0.6·b + 0.2·c
    assert np.allclose(out["b"], [0.2 - 0.6])
    assert out["w"].dtype == np.float32 and list(out) == ["w", "b"]


def test_fedavg_of_equal_weights_is_the_plain_mean_and_matches_flowers_fedavg_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    updates = [{"w": rng.normal(size=50).astype(np.float32), "b": rng.normal(size=3).astype(np.float32)} for _ in range(4)]
    mean = np.mean([u["w"].astype(np.float64) for u in updates], axis=0)
    assert np.allclose(fedavg(updates, [1, 1, 1, 1])["w"], mean, rtol=0, atol=1e-6)
    flwr = pytest.importorskip("flwr")
    from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict
    from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

    counts = [120, 80, 200, 40]
    records = [RecordDict({"arrays": ArrayRecord({k: Array(v) for k, v in u.items()}),
                           "metrics": MetricRecord({"num-examples": n})}) for u, n in zip(updates, counts)]
    theirs = aggregate_arrayrecords(records, "num-examples")
    ours = fedavg(updates, counts)
    assert flwr is not None and all(np.array_equal(theirs[k].numpy(), ours[k]) for k in ours)


@pytest.mark.parametrize(("updates", "weights"), [
    ([{"w": np.ones(2)}], [1, 2]),
    ([{"w": np.ones(2)}, {"v": np.ones(2)}], [1, 1]),
    ([{"w": np.ones(2)}, {"w": np.ones(3)}], [1, 1]),
    ([{"w": np.ones(2)}, {"w": np.ones(2)}], [0, 0]),
    ([{"w": np.ones(2)}, {"w": np.ones(2)}], [1, -1]),
])
def test_fedavg_rejects_mismatched_updates_and_bad_weights(updates, weights) -> None:
    with pytest.raises(ValueError):
        fedavg(updates, weights)


# -- schedule, calibration, cumulative accounting -------------------------------------------------------------------


def test_a_sites_schedule_matches_opacus_poisson_loader() -> None:
    s = LocalSchedule(rows=480, batch_size=64, local_epochs=4, rounds=5)
    assert s.sample_rate == 1 / 8 == sample_rate(480, 64)          # ceil(480 / 64) = 8 batches per epoch
    assert (s.steps_per_round, s.total_steps) == (32, 160)
    assert sample_rate(513, 64) == 1 / 9 and sample_rate(10, 64) == 1.0


def _rdp_epsilon_directly(sigma: float, q: float, steps: int, delta: float) -> float:
    """Opacus' RDP analysis called directly (not through an accountant object): the reference."""
    from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

    rdp = compute_rdp(q=q, noise_multiplier=sigma, steps=steps, orders=RDP_ORDERS)
    eps, _ = get_privacy_spent(orders=RDP_ORDERS, rdp=rdp, delta=delta)
    return float(eps)


def test_cumulative_epsilon_equals_rdp_over_rounds_times_steps_and_exceeds_a_fresh_per_round_figure() -> None:
    pytest.importorskip("opacus")
    sigma, q, steps, rounds, delta = 1.1, 1 / 8, 32, 5, 1e-5
    account = SiteAccount(noise_multiplier=sigma, sample_rate=q, delta=delta, accountant="rdp")
    by_round = []
    for _ in range(rounds):
        account.record_round(steps)
        by_round.append(account.epsilon())
    for number, eps in enumerate(by_round, start=1):
        assert eps == pytest.approx(_rdp_epsilon_directly(sigma, q, number * steps, delta), rel=1e-9)
    assert all(a < b for a, b in zip(by_round, by_round[1:]))      # cumulative: it grows every round
    fresh = epsilon_of([(sigma, q, steps)], delta, "rdp")          # what a per-round accountant would report
    assert fresh == pytest.approx(by_round[0]) and fresh < by_round[-1] / 1.5
    assert account.steps == rounds * steps


def test_calibration_once_for_all_rounds_reaches_the_target_and_not_more() -> None:
    pytest.importorskip("opacus")
    schedule = LocalSchedule(rows=480, batch_size=64, local_epochs=4, rounds=5)
    for target in (3.0,):
        sigma = calibrate_noise(target, 1e-4, schedule, "rdp")
        total = _rdp_epsilon_directly(sigma, schedule.sample_rate, schedule.total_steps, 1e-4)
        assert target - 0.05 <= total <= target
        # noise calibrated for one round only would overspend over five rounds
        one_round = calibrate_noise(target, 1e-4, LocalSchedule(rows=480, batch_size=64, local_epochs=4, rounds=1), "rdp")
        assert one_round < sigma and _rdp_epsilon_directly(one_round, 1 / 8, 160, 1e-4) > 1.5 * target


def test_the_account_survives_a_round_trip_through_flat_state() -> None:
    account = SiteAccount(noise_multiplier=0.9, sample_rate=0.25, delta=1e-4, accountant="rdp")
    account.record_round(12)
    account.record_round(12)
    state = account.to_state()
    assert all(isinstance(v, (int, float, str, list)) for v in state.values())
    assert SiteAccount.from_state(state) == account


def test_settings_and_seeds() -> None:
    with pytest.raises(ValueError):  # settings keep values as given; validate() applies the config's rules once
        FederatedSettings(rounds=0, local_epochs=1, target_epsilon=1.0).validate()
    with pytest.raises(ValueError):
        FederatedSettings(rounds=1, local_epochs=1, target_epsilon=math.inf).validate()
    seeds = {round_seed(0, site, number) for site in range(3) for number in range(6)}
    assert len(seeds) == 18 and all(0 <= s < 2**63 for s in seeds)


# -- the site split ----------------------------------------------------------------------------------------------------


def test_iid_split_is_disjoint_covering_balanced_and_seeded() -> None:
    site = assign_sites(1001, sites=3, seed=5)
    assert sorted(np.bincount(site).tolist()) == [333, 334, 334]
    assert np.array_equal(site, assign_sites(1001, sites=3, seed=5))
    assert not np.array_equal(site, assign_sites(1001, sites=3, seed=6))


def test_label_skew_gives_sites_different_label_mixes() -> None:
    labels = np.repeat(np.arange(10), 100)
    site = assign_sites(1000, sites=3, partition="label-skew", labels=labels, alpha=0.3, seed=0)
    mixes = np.array([np.bincount(labels[site == s], minlength=10) / max((site == s).sum(), 1) for s in range(3)])
    assert np.bincount(site, minlength=3).min() >= 2
    assert np.abs(mixes - 0.1).max() > 0.15          # far from the uniform 10% per label that IID gives
    iid = assign_sites(1000, sites=3, labels=labels, seed=0)
    iid_mixes = np.array([np.bincount(labels[iid == s], minlength=10) / (iid == s).sum() for s in range(3)])
    assert np.abs(iid_mixes - 0.1).max() < 0.06


def test_split_refuses_too_few_rows() -> None:
    with pytest.raises(DataError, match="cannot be split into 4 sites"):
        assign_sites(7, sites=4, seed=0)


# -- a local DP-SGD round ------------------------------------------------------------------------------------------


def _digits(rows: int, seed: int = 0):
    from sklearn.datasets import load_digits

    from privprep.transforms.train.data import Examples

    data = load_digits()
    pick = np.random.default_rng(seed).permutation(len(data.target))[:rows]
    return Examples((data.data[pick] / 8 - 1).astype(np.float32).reshape(-1, 1, 8, 8), data.target[pick].astype(np.int64))


def test_a_local_round_is_reproducible_takes_its_steps_and_moves_the_weights(torch) -> None:
    from privprep.transforms.federated.local import initial_weights, local_round

    train = _digits(200)
    settings = FederatedSettings(rounds=2, local_epochs=1, target_epsilon=3.0, batch_size=50)
    start = initial_weights((1, 8, 8), 10, seed=0)
    one = local_round(start, train, settings, classes=10, noise_multiplier=1.0, steps=4, seed=11)
    two = local_round(start, train, settings, classes=10, noise_multiplier=1.0, steps=4, seed=11)
    other = local_round(start, train, settings, classes=10, noise_multiplier=1.0, steps=4, seed=12)
    assert one.steps == 4 and one.num_examples == 200
    assert all(np.array_equal(one.weights[k], two.weights[k]) for k in start)
    assert any(not np.array_equal(one.weights[k], other.weights[k]) for k in start)
    assert any(not np.allclose(one.weights[k], start[k]) for k in start)


def test_the_plain_loop_learns_and_spends_its_target_cumulatively(torch) -> None:
    from privprep.transforms.federated.loop import federated_loop
    from privprep.transforms.federated.settings import SiteData

    data = _digits(450)
    sites = [SiteData(f"site-{i}", data.take(np.arange(i * 150, i * 150 + 120)), data.take(np.arange(i * 150 + 120, (i + 1) * 150)),
                      1e-3) for i in range(3)]
    settings = FederatedSettings(rounds=3, local_epochs=1, target_epsilon=8.0, batch_size=40, accountant="rdp", seed=0)
    out = federated_loop(sites, settings, classes=10)
    assert [h["round"] for h in out.history] == [1, 2, 3]
    assert out.accuracy > 0.2                                       # chance is 0.1
    for account in out.accounts:
        assert account.steps == 3 * 1 * 3                           # rounds × local epochs × ceil(120 / 40)
        assert 8.0 - 0.05 <= account.epsilon() <= 8.0
    eps = [h["site_epsilon"][0] for h in out.history]
    assert eps[0] < eps[1] < eps[2]


@pytest.mark.parametrize("name", ["privprep.transforms.federated.fedavg", "privprep.transforms.federated.accounting",
                                  "privprep.transforms.federated.settings", "privprep.pipeline.federated.split"])
def test_docstring_examples_of_the_federated_modules(name: str) -> None:
    import doctest
    import importlib

    if name.endswith("accounting"):
        pytest.importorskip("opacus")
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
