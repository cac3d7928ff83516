"""What fixes a federated DP training besides the data (one frozen settings object, shared by every site), a
site's examples, and the seed of each site's work in each round.

>>> s = FederatedSettings(rounds=5, local_epochs=2, target_epsilon=3.0)
>>> s.rounds, s.batch_size, s.accountant
(5, 64, 'prv')
>>> round_seed(7, 0, 1) == round_seed(7, 0, 1) != round_seed(7, 1, 1)
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from privprep.transforms.train.data import Examples

from .accounting import ACCOUNTANTS


@dataclass(frozen=True)
class FederatedSettings:
    """Rounds, local epochs per round, and each site's DP-SGD settings (its target ε is for the whole training)."""

    rounds: int
    local_epochs: int
    target_epsilon: float
    batch_size: int = 64
    learning_rate: float = 1.0
    max_grad_norm: float = 1.0
    momentum: float = 0.0
    accountant: str = "prv"
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.local_epochs < 1 or self.batch_size < 1:
            raise ValueError("rounds, local_epochs and batch_size must be >= 1")
        if not (self.target_epsilon > 0 and math.isfinite(self.target_epsilon)):
            raise ValueError("target_epsilon must be a finite number > 0")
        if not (self.learning_rate > 0 and self.max_grad_norm > 0 and 0 <= self.momentum < 1):
            raise ValueError("learning_rate and max_grad_norm must be > 0, momentum in [0, 1)")
        if self.accountant not in ACCOUNTANTS:
            raise ValueError(f"accountant must be one of {', '.join(ACCOUNTANTS)}")


@dataclass(frozen=True)
class SiteData:
    """One site's examples: training rows, held-out rows, and the δ of its guarantee."""

    name: str
    train: Examples
    holdout: Examples
    delta: float


def round_seed(seed: int, site: int, round_number: int) -> int:
    """A seed for one site's work in one round (round 0: the site's held-out split), derived from the run's seed."""
    return int(np.random.SeedSequence([int(seed) & (2**63 - 1), int(site), int(round_number)]).generate_state(2, np.uint64)[0] >> 1)


__all__ = ["FederatedSettings", "SiteData", "round_seed"]
