"""What fixes a federated DP training besides the data (one frozen settings object, shared by every site), a
site's examples, and the seed of each site's work in each round.

:class:`FederatedSettings` is the ``train`` stage's :class:`~privprep.transforms.train.settings.DpSgdSettings`
with rounds and local epochs added: one DP-SGD settings model, one set of defaults and rules.

>>> s = FederatedSettings(rounds=5, local_epochs=2, target_epsilon=3.0, batch_size=64)
>>> s.rounds, s.batch_size, s.accountant
(5, 64, 'prv')
>>> FederatedSettings(rounds=0, local_epochs=1, target_epsilon=3.0).validate()
Traceback (most recent call last):
...
ValueError: rounds and local_epochs must be >= 1
>>> round_seed(7, 0, 1) == round_seed(7, 0, 1) != round_seed(7, 1, 1)
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from privprep.transforms.train.data import Examples
from privprep.transforms.train.settings import DpSgdSettings


@dataclass(frozen=True, kw_only=True)
class FederatedSettings(DpSgdSettings):
    """Rounds, local epochs per round, and each site's DP-SGD settings (its target ε is for the whole training)."""

    rounds: int
    local_epochs: int

    def validate(self) -> "FederatedSettings":
        """The rules of :meth:`DpSgdSettings.validate`, and rounds and local epochs of at least 1; return self."""
        if not (isinstance(self.rounds, int) and isinstance(self.local_epochs, int) and min(self.rounds, self.local_epochs) >= 1):
            raise ValueError("rounds and local_epochs must be >= 1")
        super().validate()
        if self.model != "cnn":
            raise ValueError("federated training trains model cnn only")
        return self


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
