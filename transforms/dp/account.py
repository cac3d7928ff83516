"""What a release spends from: any object with ``spend(epsilon, delta, *, details)`` that records the
spend (and refuses it when over budget) before it returns.

In a pipeline run that is the persistent ledger of :mod:`privprep.pipeline.ledger`. For ETL code,
:class:`SpendLog` keeps the spends of one process in memory.

>>> log = SpendLog(epsilon=1.0)
>>> _ = log.spend(0.6, details={"what": "mean of income"})
>>> log.spent, log.remaining
(0.6, 0.4)
>>> log.spend(0.6)
Traceback (most recent call last):
...
privprep.schemas.errors.BudgetError: a spend of epsilon 0.6 would take the total to 1.2, over the budget 1; remaining epsilon 0.4
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from privprep.schemas.errors import BudgetError


class Account(Protocol):
    """Records a privacy spend durably, or raises :class:`BudgetError`, before any noise is drawn."""

    def spend(self, epsilon: float, delta: float = 0.0, *, details: dict[str, Any] | None = None) -> Any: ...


class SpendLog:
    """An in-memory account with basic composition (epsilons add up), capped at ``epsilon``."""

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
        return round(self.epsilon - self.spent, 12)

    def spend(self, epsilon: float, delta: float = 0.0, *, details: dict[str, Any] | None = None) -> dict[str, Any]:
        if not (epsilon > 0 and math.isfinite(epsilon)):
            raise ValueError("epsilon must be a finite number > 0")
        total = self.spent + epsilon
        if total > self.epsilon * (1 + 1e-9):
            raise BudgetError(
                f"a spend of epsilon {epsilon:g} would take the total to {total:g}, over the budget {self.epsilon:g}; "
                f"remaining epsilon {max(self.remaining, 0):g}"
            )
        entry = {"epsilon": float(epsilon), "delta": float(delta), "details": dict(details or {})}
        self.entries.append(entry)
        return entry


__all__ = ["Account", "SpendLog"]
