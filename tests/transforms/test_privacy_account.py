"""One privacy-account protocol: the in-memory SpendLog, the persistent Ledger and a run's LedgerScope
answer check, spend and remaining alike (figures worked out by hand: basic composition adds epsilons)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from privprep.pipeline.budget.ledger import Ledger
from privprep.schemas.errors import BudgetError
from privprep.transforms.dp import SpendLog
from privprep.transforms.privacy_account import PlannedSpend, PrivacyAccount


def accounts(tmp_path: Path) -> dict[str, PrivacyAccount]:
    ledger = Ledger(tmp_path / "ledger.json", epsilon=1.0, delta=1e-5, fingerprint="sha256:x")
    return {
        "spend_log": SpendLog(epsilon=1.0),
        "ledger": Ledger(tmp_path / "other.json", epsilon=1.0, fingerprint="sha256:y"),
        "scope": ledger.scope(stage="stages[1].train", kind="train"),
    }


@pytest.mark.parametrize("name", ["spend_log", "ledger", "scope"])
def test_every_account_checks_spends_and_says_what_remains(tmp_path: Path, name: str) -> None:
    account = accounts(tmp_path)[name]
    assert isinstance(account, PrivacyAccount)
    assert account.remaining == pytest.approx(1.0)
    account.check([PlannedSpend("stages[0].dp_stats", "dp_stats", 0.75)])  # fits; nothing recorded
    assert account.remaining == pytest.approx(1.0)
    account.spend(0.75, 0.0, details={"what": "a mean"})
    assert account.remaining == pytest.approx(0.25) and account.remaining() == pytest.approx(0.25)  # both spellings
    with pytest.raises(BudgetError, match="only 0.25"):
        account.check([PlannedSpend("stages[1].train", "train", 0.5)])
    with pytest.raises(BudgetError):
        account.spend(0.5)
    assert account.remaining == pytest.approx(0.25)


def test_a_scope_checks_under_its_own_stage_and_knows_the_budget_delta(tmp_path: Path) -> None:
    scope = accounts(tmp_path)["scope"]
    assert scope.delta == 1e-5 and getattr(SpendLog(), "delta", None) is None
    with pytest.raises(BudgetError, match=r"\(stages\[1\]\.train 2\)"):
        scope.check([PlannedSpend("elsewhere", "dp_stats", 2.0)])


def test_remaining_reads_and_pickles_as_a_float() -> None:
    value = SpendLog(epsilon=2.0).remaining
    assert value == 2.0 and f"{value:g}" == "2" and repr(value) == "2.0"
    assert pickle.loads(pickle.dumps(value)) == 2.0
