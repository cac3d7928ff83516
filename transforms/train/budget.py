"""What training spends from: the run's ledger scope, a :class:`~privprep.pipeline.ledger.Ledger`, or an
in-memory :class:`~privprep.transforms.dp.SpendLog` for ETL code.

The stage checks the target (ε, δ) against the account *before* training (nothing is computed when it
does not fit) and records the ε the accountant reports for the finished run *after* training, before
the model is written. A spend is never recorded for a run that failed, because nothing of it is released.

>>> from privprep.transforms.dp import SpendLog
>>> log = SpendLog(epsilon=1.0)
>>> check_budget(log, epsilon=0.5, delta=1e-5)        # fits: nothing happens, nothing is spent
>>> check_budget(log, epsilon=2.0, delta=1e-5)
Traceback (most recent call last):
...
privprep.schemas.errors.BudgetError: budget exceeded: training would spend epsilon 2, but only 1 remains
>>> budget_delta(log) is None
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from privprep.schemas.errors import BudgetError

_TOLERANCE = 1e-9


class TrainingAccount(Protocol):
    """Records a spend durably (or raises :class:`BudgetError`)."""

    def spend(self, epsilon: float, delta: float = 0.0, *, details: dict[str, Any] | None = None) -> Any: ...


@dataclass(frozen=True)
class PlannedTraining:
    """A spend to check, shaped like the ledger's ``PlannedSpend`` (stage, kind, epsilon, delta)."""

    stage: str
    kind: str
    epsilon: float
    delta: float


def _ledger_of(account: Any) -> Any | None:
    """The persistent ledger behind ``account``: a run's ``LedgerScope`` holds one, a ``Ledger`` is one."""
    ledger = getattr(account, "ledger", account)
    return ledger if callable(getattr(ledger, "check", None)) else None


def check_budget(account: Any, *, epsilon: float, delta: float, stage: str = "train") -> None:
    """Raise :class:`BudgetError` when spending (``epsilon``, ``delta``) would exceed ``account``'s budget."""
    ledger = _ledger_of(account)
    if ledger is not None:  # re-reads the ledger file: spends of other runs count
        ledger.check([PlannedTraining(getattr(account, "stage", stage), "train", float(epsilon), float(delta))])
        return
    remaining = getattr(account, "remaining", None)
    remaining = remaining() if callable(remaining) else remaining
    if isinstance(remaining, (int, float)) and epsilon > remaining * (1 + _TOLERANCE):
        raise BudgetError(f"budget exceeded: training would spend epsilon {epsilon:g}, but only {max(remaining, 0):g} remains")


def budget_delta(account: Any) -> float | None:
    """The δ of the dataset's whole budget when the account knows it (a ledger), else None."""
    ledger = _ledger_of(account)
    value = getattr(ledger, "delta", None) if ledger is not None else None
    return float(value) if isinstance(value, (int, float)) else None


def record_spend(account: TrainingAccount, *, epsilon: float, delta: float, details: dict[str, Any]) -> Any:
    """Record what training spent; the ledger refuses it (``BudgetError``) if another run spent meanwhile."""
    return account.spend(float(epsilon), float(delta), details=details)


__all__ = ["PlannedTraining", "TrainingAccount", "budget_delta", "check_budget", "record_spend"]
