"""What training spends from: a :class:`~privprep.transforms.privacy_account.PrivacyAccount`, i.e. the
run's ledger scope, a :class:`~privprep.pipeline.budget.ledger.Ledger`, or an in-memory
:class:`~privprep.transforms.dp.SpendLog` for ETL code.

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

from typing import Any

from ..privacy_account import PlannedSpend, PrivacyAccount, account_delta

TrainingAccount = PrivacyAccount  # names kept from before the account protocol was shared
PlannedTraining = PlannedSpend


def check_budget(account: PrivacyAccount, *, epsilon: float, delta: float, stage: str = "train") -> None:
    """Raise :class:`BudgetError` when spending (``epsilon``, ``delta``) would exceed ``account``'s budget
    (a ledger re-reads its file: spends of other runs count)."""
    if not callable(getattr(account, "check", None)):
        raise TypeError("training needs a privacy account to check and spend from, e.g. privprep.transforms.dp.SpendLog(epsilon=3)")
    account.check([PlannedSpend(stage, "train", float(epsilon), float(delta))])


def budget_delta(account: PrivacyAccount) -> float | None:
    """The δ of the dataset's whole budget when the account knows it (a ledger), else None."""
    return account_delta(account)


def record_spend(account: PrivacyAccount, *, epsilon: float, delta: float, details: dict[str, Any]) -> Any:
    """Record what training spent; the ledger refuses it (``BudgetError``) if another run spent meanwhile."""
    return account.spend(float(epsilon), float(delta), details=details)


__all__ = ["PlannedTraining", "TrainingAccount", "budget_delta", "check_budget", "record_spend"]
