"""A site's privacy accounting across rounds: one schedule, noise calibrated once, a cumulative ε.

A site that trains ``rounds`` rounds of ``local_epochs`` epochs each, with Poisson sampling at rate
``q = 1 / ceil(rows / batch_size)`` (what Opacus' Poisson loader uses), takes
``steps_per_round = local_epochs · ceil(rows / batch_size)`` noisy steps per round and
``total_steps = rounds · steps_per_round`` in all. Its noise multiplier σ is calibrated **once**, for
``total_steps``, so the whole training reaches at most the target ε; each round then appends
``(σ, q, steps)`` to the site's history, and the ε it reports is the accountant's ε of that whole
history: cumulative, never a fresh per-round figure (which understates the total: the ε of one
round's steps alone is what Flower's Opacus example logs).

Needs opacus (the ``train`` extra).

>>> schedule = LocalSchedule(rows=480, batch_size=64, local_epochs=2, rounds=5)
>>> schedule.sample_rate, schedule.steps_per_round, schedule.total_steps
(0.125, 16, 80)
>>> account = SiteAccount(noise_multiplier=1.1, sample_rate=0.125, delta=1e-4, accountant="rdp")
>>> for _ in range(5):
...     account.record_round(16)
>>> account.steps, round(account.epsilon(), 2) == round(epsilon_of([(1.1, 0.125, 80)], 1e-4, "rdp"), 2)
(80, True)
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from privprep.schemas.stages import ACCOUNTANTS

#: Rényi orders for RDP ε: Opacus' defaults (1.1 … 63) and larger ones, which small noise needs (as ``train``).
RDP_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [64, 80, 96, 128, 192, 256, 384, 512, 1024]
EPSILON_TOLERANCE = 0.01

History = list[tuple[float, float, int]]


def sample_rate(rows: int, batch_size: int) -> float:
    """Poisson sampling rate of a site with ``rows`` training rows: ``1 / ceil(rows / batch_size)``."""
    if rows < 1 or batch_size < 1:
        raise ValueError("rows and batch_size must be >= 1")
    return 1.0 / math.ceil(rows / batch_size)


@dataclass(frozen=True)
class LocalSchedule:
    """How much one site trains: its training rows, batch size, local epochs per round and rounds."""

    rows: int
    batch_size: int
    local_epochs: int
    rounds: int

    def __post_init__(self) -> None:
        if min(self.rows, self.batch_size, self.local_epochs, self.rounds) < 1:
            raise ValueError("rows, batch_size, local_epochs and rounds must be >= 1")

    @property
    def sample_rate(self) -> float:
        return sample_rate(self.rows, self.batch_size)

    @property
    def steps_per_round(self) -> int:
        return self.local_epochs * math.ceil(self.rows / self.batch_size)

    @property
    def total_steps(self) -> int:
        return self.rounds * self.steps_per_round


def _compressed(history: Sequence[tuple[float, float, int]]) -> History:
    """Consecutive entries with the same (σ, q) merged: the same mechanism, composed over more steps."""
    merged: History = []
    for sigma, rate, steps in history:
        if merged and merged[-1][0] == sigma and merged[-1][1] == rate:
            merged[-1] = (sigma, rate, merged[-1][2] + int(steps))
        else:
            merged.append((float(sigma), float(rate), int(steps)))
    return merged


def epsilon_of(history: Sequence[tuple[float, float, int]], delta: float, accountant: str = "prv") -> float:
    """ε at ``delta`` of a DP-SGD history ``[(noise_multiplier, sample_rate, steps), ...]`` (Opacus' accountants;
    RDP over :data:`RDP_ORDERS`, PRV's upper bound)."""
    from opacus.accountants import create_accountant

    if accountant not in ACCOUNTANTS:
        raise ValueError(f"accountant must be one of {', '.join(ACCOUNTANTS)}")
    steps = _compressed(history)
    if not steps:
        return 0.0
    engine = create_accountant(mechanism=accountant)
    engine.history = steps
    extra: dict[str, Any] = {"alphas": RDP_ORDERS} if accountant == "rdp" else {}
    with warnings.catch_warnings(), np.errstate(divide="ignore"):  # PRV takes log(1 - q), -inf at q = 1
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        return float(engine.get_epsilon(delta, **extra))


def calibrate_noise(target_epsilon: float, delta: float, schedule: LocalSchedule, accountant: str = "prv") -> float:
    """The noise multiplier σ at which the whole ``schedule`` reaches at most ``target_epsilon`` (Opacus' binary
    search, tolerance 0.01 below the target). Deterministic, so sites with the same schedule share one search."""
    if not (target_epsilon > 0 and math.isfinite(target_epsilon)) or not 0 < delta < 1:
        raise ValueError("target_epsilon must be a finite number > 0 and delta in (0, 1)")
    return _calibrate(float(target_epsilon), float(delta), schedule.sample_rate, schedule.total_steps, accountant)


@functools.lru_cache(maxsize=64)
def _calibrate(target_epsilon: float, delta: float, rate: float, steps: int, accountant: str) -> float:
    from opacus.accountants.utils import get_noise_multiplier

    extra: dict[str, Any] = {"alphas": RDP_ORDERS} if accountant == "rdp" else {}
    with warnings.catch_warnings(), np.errstate(divide="ignore"):
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        return float(get_noise_multiplier(
            target_epsilon=target_epsilon, target_delta=delta, sample_rate=rate, steps=steps, accountant=accountant,
            epsilon_tolerance=EPSILON_TOLERANCE, **extra,
        ))


@dataclass
class SiteAccount:
    """One site's privacy state across rounds: its σ, q, δ and the history of steps it took."""

    noise_multiplier: float
    sample_rate: float
    delta: float
    accountant: str = "prv"
    history: History = field(default_factory=list)

    @property
    def steps(self) -> int:
        return sum(steps for _, _, steps in self.history)

    def record_round(self, steps: int) -> None:
        """Add the ``steps`` noisy steps of one round to the history."""
        self.history.append((self.noise_multiplier, self.sample_rate, int(steps)))

    def epsilon(self, accountant: str | None = None) -> float:
        """The cumulative ε of every round so far."""
        return epsilon_of(self.history, self.delta, accountant or self.accountant)

    def epsilon_after(self, steps: int, accountant: str | None = None) -> float:
        """The ε the history would reach after ``steps`` more steps (e.g. the whole schedule, before it runs)."""
        return epsilon_of([*self.history, (self.noise_multiplier, self.sample_rate, int(steps))], self.delta,
                          accountant or self.accountant)

    def to_state(self) -> dict[str, Any]:
        """Flat values (numbers and lists of numbers) to keep between rounds, e.g. in a Flower ``ConfigRecord``."""
        return {
            "noise-multiplier": self.noise_multiplier, "sample-rate": self.sample_rate, "delta": self.delta,
            "accountant": self.accountant, "history-sigma": [h[0] for h in self.history],
            "history-rate": [h[1] for h in self.history], "history-steps": [h[2] for h in self.history],
        }

    @classmethod
    def from_state(cls, state: Any) -> "SiteAccount":
        history = list(zip((float(v) for v in state["history-sigma"]), (float(v) for v in state["history-rate"]),
                           (int(v) for v in state["history-steps"])))
        return cls(noise_multiplier=float(state["noise-multiplier"]), sample_rate=float(state["sample-rate"]),
                   delta=float(state["delta"]), accountant=str(state["accountant"]), history=history)


__all__ = [
    "ACCOUNTANTS", "EPSILON_TOLERANCE", "LocalSchedule", "RDP_ORDERS", "SiteAccount", "calibrate_noise", "epsilon_of",
    "sample_rate",
]
