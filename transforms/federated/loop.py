"""The whole federated algorithm as a plain Python loop: the reference that the Flower apps must match.

Per site ``i`` (before round 1): a schedule from its training rows, σ calibrated once for all rounds
(:func:`~.accounting.calibrate_noise`). Per round ``r``: every site runs :func:`~.local.local_round`
from the global weights with the seed :func:`~.settings.round_seed` ``(seed, i, r)`` and records its
steps in its account; the server takes the FedAvg mean weighted by training rows; every site
evaluates the new global weights on its held-out rows. Needs torch and opacus.

"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Sequence

from .accounting import LocalSchedule, SiteAccount, calibrate_noise
from .fedavg import Weights, fedavg
from .local import accuracy_of, initial_weights, local_round
from .settings import FederatedSettings, SiteData, round_seed


@dataclass
class LoopOutcome:
    """The global weights after the last round, the sites' accounts and the per-round history."""

    weights: Weights
    accounts: list[SiteAccount]
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        """Global accuracy after the last round: correct held-out rows over all held-out rows."""
        return float(self.history[-1]["accuracy"]) if self.history else float("nan")


def calibrated_account(site: SiteData, settings: FederatedSettings) -> tuple[SiteAccount, LocalSchedule]:
    """A site's schedule and its account with σ calibrated once for the whole training."""
    schedule = LocalSchedule(rows=len(site.train), batch_size=settings.batch_size, local_epochs=settings.local_epochs,
                             rounds=settings.rounds)
    sigma = calibrate_noise(settings.target_epsilon, site.delta, schedule, settings.accountant)
    return SiteAccount(noise_multiplier=sigma, sample_rate=schedule.sample_rate, delta=site.delta,
                       accountant=settings.accountant), schedule


def federated_loop(sites: Sequence[SiteData], settings: FederatedSettings, *, classes: int,
                   device: str | None = None) -> LoopOutcome:
    """Run ``settings.rounds`` rounds of FedAvg with local DP-SGD at every site of ``sites``."""
    if len(sites) < 1:
        raise ValueError("federated training needs at least one site")
    seed = settings.seed if settings.seed is not None else secrets.randbits(63)
    shape = tuple(int(v) for v in sites[0].train.images.shape[1:])
    weights = initial_weights(shape, classes, seed)  # type: ignore[arg-type]
    accounts, schedules = zip(*(calibrated_account(site, settings) for site in sites))
    outcome = LoopOutcome(weights=weights, accounts=list(accounts))
    for number in range(1, settings.rounds + 1):
        updates = []
        for index, (site, account, schedule) in enumerate(zip(sites, accounts, schedules)):
            update = local_round(weights, site.train, settings, classes=classes, noise_multiplier=account.noise_multiplier,
                                 steps=schedule.steps_per_round, seed=round_seed(seed, index, number), device=device)
            account.record_round(update.steps)
            updates.append(update)
        weights = fedavg([u.weights for u in updates], [u.num_examples for u in updates])
        accuracies = [accuracy_of(weights, site.holdout, classes=classes, device=device) for site in sites]
        held = [len(site.holdout) for site in sites]
        outcome.history.append({
            "round": number,
            "accuracy": sum(a * n for a, n in zip(accuracies, held)) / max(sum(held), 1),
            "site_accuracy": accuracies,
            "site_epsilon": [account.epsilon() for account in accounts],
        })
    outcome.weights = weights
    return outcome


__all__ = ["LoopOutcome", "SiteData", "calibrated_account", "federated_loop"]
