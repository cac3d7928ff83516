"""One privacy-account protocol: what every DP release and every training run spends from.

A :class:`PrivacyAccount` does three things, as Opacus' accountants share one interface:

* ``check(spends)`` raises :class:`~privprep.schemas.errors.BudgetError` when the planned spends would
  take the total over the budget, and records nothing (a stage checks before it computes anything);
* ``spend(epsilon, delta, *, details)`` records one spend durably, or refuses it with ``BudgetError``,
  before any noise is drawn;
* ``remaining`` is the epsilon one more pure-DP release may still spend.

Three classes implement it: :class:`privprep.transforms.dp.SpendLog` (in memory, for ETL code), the
dataset's persistent :class:`privprep.pipeline.budget.ledger.Ledger`, and the
:class:`~privprep.pipeline.budget.ledger.LedgerScope` one stage of a run spends from. An account that knows the
δ of the dataset's whole budget exposes it as ``delta`` (``None`` or absent when it does not).

>>> from privprep.transforms.dp import SpendLog
>>> log = SpendLog(epsilon=1.0)
>>> isinstance(log, PrivacyAccount)
True
>>> log.check([PlannedSpend("stages[0].dp_stats", "dp_stats", 0.5)])     # fits: nothing is recorded
>>> log.remaining, len(log.entries)
(1.0, 0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable


@dataclass(frozen=True)
class PlannedSpend:
    """What a stage will spend, known before it computes anything: its config path, kind and (ε, δ)."""

    stage: str
    kind: str
    epsilon: float
    delta: float = 0.0


@runtime_checkable
class PrivacyAccount(Protocol):
    """Checks planned spends, records spends durably, and says what remains (see the module docstring)."""

    @property
    def remaining(self) -> float: ...

    def check(self, spends: Sequence[PlannedSpend]) -> None: ...

    def spend(self, epsilon: float, delta: float = 0.0, *, details: dict[str, Any] | None = None) -> Any: ...


class Remaining(float):
    """The value of ``remaining``: a float that may also be called, ``remaining()``, as the ledger's
    method was before the protocol made it a property (kept so that older callers keep working).

    >>> value = Remaining(0.4)
    >>> value, value(), value + 0.1
    (0.4, 0.4, 0.5)
    """

    def __call__(self) -> float:
        return float(self)

    def __repr__(self) -> str:
        return float.__repr__(self)


def account_delta(account: Any) -> float | None:
    """The δ of the dataset's whole budget when ``account`` knows it (a ledger or its scope), else None.

    >>> from privprep.transforms.dp import SpendLog
    >>> account_delta(SpendLog()) is None
    True
    """
    value = getattr(account, "delta", None)
    return float(value) if isinstance(value, (int, float)) else None


__all__ = ["PlannedSpend", "PrivacyAccount", "Remaining", "account_delta"]
