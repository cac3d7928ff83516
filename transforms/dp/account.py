"""What a release spends from: a :class:`~privprep.transforms.privacy_account.PrivacyAccount` (``check``,
``spend``, ``remaining``) that records the spend (and refuses it when over budget) before it returns.

In a pipeline run that is the persistent ledger of :mod:`privprep.pipeline.budget.ledger`. For ETL code,
:class:`SpendLog` keeps the spends of one process in memory.

>>> log = SpendLog(epsilon=1.0)
>>> _ = log.spend(0.6, details={"what": "mean of income"})
>>> log.spent, log.remaining
(0.6, 0.4)
>>> log.spend(0.6)
Traceback (most recent call last):
...
privprep.schemas.errors.BudgetError: a spend of epsilon 0.6 would take the total to 1.2, over the budget 1; remaining epsilon 0.4
>>> log.check([PlannedSpend("train", "train", 0.5)])
Traceback (most recent call last):
...
privprep.schemas.errors.BudgetError: budget exceeded: training would spend epsilon 0.5, but only 0.4 remains
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from privprep.schemas.errors import BudgetError

from ..privacy_account import PlannedSpend, PrivacyAccount, Remaining

Account = PrivacyAccount  # the name this protocol had before it was shared with training and the ledger

_TOLERANCE = 1e-9


class SpendLog:
    """An in-memory :class:`PrivacyAccount` with basic composition (epsilons add up), capped at ``epsilon``.

    It does not know a δ for the whole budget (``delta`` is None)."""

    delta = None

    def __init__(self, *, epsilon: float = math.inf) -> None:
        if not epsilon > 0:
            raise ValueError("epsilon must be > 0")
        self.epsilon = epsilon
        self.entries: list[dict[str, Any]] = []

    @property
    def spent(self) -> float:
        return round(math.fsum(e["epsilon"] for e in self.entries), 12)

    @property
    def remaining(self) -> float:
        return Remaining(round(self.epsilon - self.spent, 12))

    def check(self, spends: Sequence[PlannedSpend]) -> None:
        """Raise :class:`BudgetError` when ``spends`` would take the total over the budget; records nothing."""
        asked = math.fsum(s.epsilon for s in spends)
        remaining = self.remaining
        if asked > remaining * (1 + _TOLERANCE):
            what = "training" if spends and all(s.kind == "train" for s in spends) else "this run"
            raise BudgetError(f"budget exceeded: {what} would spend epsilon {asked:g}, but only {max(remaining, 0):g} remains")

    def spend(self, epsilon: float, delta: float = 0.0, *, details: dict[str, Any] | None = None) -> dict[str, Any]:
        if not (epsilon > 0 and math.isfinite(epsilon)):
            raise ValueError("epsilon must be a finite number > 0")
        total = self.spent + epsilon
        if total > self.epsilon * (1 + _TOLERANCE):
            raise BudgetError(
                f"a spend of epsilon {epsilon:g} would take the total to {total:g}, over the budget {self.epsilon:g}; "
                f"remaining epsilon {max(self.remaining, 0):g}"
            )
        entry = {"epsilon": float(epsilon), "delta": float(delta), "details": dict(details or {})}
        self.entries.append(entry)
        return entry


__all__ = ["Account", "PlannedSpend", "PrivacyAccount", "SpendLog"]
