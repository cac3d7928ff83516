"""The privacy ledger (SPEC §7): one JSON file per dataset records every DP release, across runs.

* **Identity.** The ledger file named by ``budget.ledger`` *is* the dataset's account: every
  pipeline over the same dataset must name the same file. The ledger remembers the fingerprint of
  the input it was spent on (file names relative to the input, sizes, and a SHA-256 of each Parquet
  footer, or of the first and last MiB of a CSV file, plus the schema) and refuses an input with
  another fingerprint unless ``budget.allow_input_change`` says it is the same dataset, changed (the
  new fingerprint is then added; spends keep adding up, they are never reset).
* **Composition.** ``basic``: epsilons and deltas add up. ``advanced``: diffprivlib's bound for
  heterogeneous compositions with ``slack`` in delta (the least of the sum, Dwork-Rothblum-Vadhan and
  Kairouz-Oh-Viswanath), computed by a local ``BudgetAccountant`` (never diffprivlib's global one).
* **Durability.** A spend is checked and recorded under an exclusive lock (``<ledger>.lock``), re-read
  from disk, and written to a temporary file that is fsynced and renamed over the ledger; a crash
  leaves the old or the new ledger, never a mix. Stages record a spend before drawing any noise,
  so a run that fails afterwards still counts.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "patients.json"
>>> ledger = Ledger(path, epsilon=1.0, fingerprint="sha256:ab")
>>> _ = ledger.spend(0.6, stage="stages[2].dp_stats", kind="dp_stats")
>>> Ledger(path, epsilon=1.0, fingerprint="sha256:ab").check([PlannedSpend("stages[2].dp_stats", "dp_stats", 0.6)])
Traceback (most recent call last):
...
privprep.schemas.errors.BudgetError: budget exceeded: this run would spend epsilon 0.6 (stages[2].dp_stats 0.6), but only 0.4 of budget.epsilon 1 remains for this dataset (spent 0.6 in 1 release(s), ledger '...patients.json')
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import posixpath
import secrets
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import pyarrow as pa

from privprep.schemas.config import stage_path
from privprep.schemas.errors import BudgetError, ConfigError
from privprep.transforms.privacy_account import PlannedSpend, Remaining

from ..files.fsutil import write_text_atomic
from ..files.storage import ObjectPath

try:  # POSIX; elsewhere spends are still atomic, only not serialized between processes
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

FORMAT = "privprep-ledger/1"
_TOLERANCE = 1e-9
_SAMPLE_BYTES = 1 << 20


def planned_spends(config: Any) -> list[PlannedSpend]:
    """The spends of a config's DP stages (each params model states its own), in stage order."""
    spends = []
    budget_delta = config.budget.delta if config.budget is not None else 0.0
    for index, entry in enumerate(config.stages):
        planned = entry.params.planned_spend(budget_delta=budget_delta)
        if planned is not None:
            spends.append(PlannedSpend(stage_path(index, entry.tag), entry.tag, float(planned[0]), float(planned[1])))
    return spends


def input_fingerprint(files: list[Path], fmt: str, schema: pa.Schema) -> str:
    """A fingerprint of the input's identity: names relative to the input, sizes, footers, schema."""
    digest = hashlib.sha256()
    digest.update(json.dumps([[f.name, str(f.type)] for f in schema]).encode())
    for file, name in zip(files, relative_names(files)):
        digest.update(name.encode() + b"\0")
        size = file.stat().st_size
        digest.update(str(size).encode() + b"\0")
        digest.update(_file_sample(file, size, fmt))
    return "sha256:" + digest.hexdigest()


def relative_names(files: list[Any]) -> list[str]:
    """Each input file's name relative to the folder (or prefix) common to all of them."""
    if files and all(isinstance(f, ObjectPath) for f in files):
        root = posixpath.commonpath([f.parent.path for f in files])
        return [posixpath.relpath(f.path, root) for f in files]
    root = Path(os.path.commonpath([str(f.resolve().parent) for f in files])) if files else Path(".")
    return [str(f.resolve().relative_to(root)) for f in files]


def _file_sample(file: Path, size: int, fmt: str) -> bytes:
    with file.open("rb") as handle:  # a local file, or an object (storage.ObjectPath)
        if fmt == "parquet" and size >= 12:
            handle.seek(size - 8)
            footer_len = int.from_bytes(handle.read(4), "little")
            handle.seek(max(size - 8 - footer_len, 0))
            return hashlib.sha256(handle.read(footer_len + 8)).digest()
        head = handle.read(_SAMPLE_BYTES)
        handle.seek(max(size - _SAMPLE_BYTES, 0))
        return hashlib.sha256(head + handle.read(_SAMPLE_BYTES)).digest()


class Ledger:
    """The persistent account of one dataset (a :class:`~privprep.transforms.privacy_account.PrivacyAccount`); ``path=None`` keeps it in memory (tests, ETL)."""

    def __init__(
        self,
        path: Path | None,
        *,
        epsilon: float,
        delta: float = 0.0,
        composition: str = "basic",
        slack: float = 0.0,
        fingerprint: str | None = None,
        allow_input_change: bool = False,
        context: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.epsilon, self.delta = float(epsilon), float(delta)
        self.composition, self.slack = composition, float(slack)
        self.fingerprint = fingerprint
        self.allow_input_change = allow_input_change
        self.context = dict(context or {})
        self._doc = self._read()
        self._check_identity(self._doc)

    @classmethod
    def from_budget(cls, budget: Any, path: Path, *, fingerprint: str, context: dict[str, Any]) -> "Ledger":
        """The ledger of a config's ``budget:`` section."""
        return cls(path, epsilon=budget.epsilon, delta=budget.delta, composition=budget.composition, slack=budget.slack,
                   fingerprint=fingerprint, allow_input_change=budget.allow_input_change, context=context)

    # -- reading the account ---------------------------------------------------------------------------

    @property
    def entries(self) -> list[dict[str, Any]]:
        return list(self._doc["entries"])

    def total(self, extra: list[tuple[float, float]] | None = None, *, entries: list[dict[str, Any]] | None = None) -> tuple[float, float]:
        """Total (epsilon, delta) of the recorded spends plus ``extra``, under the configured composition."""
        spends = [(e["epsilon"], e["delta"]) for e in (self._doc["entries"] if entries is None else entries)]
        spends += list(extra or [])
        if not spends:
            return 0.0, 0.0
        if self.composition == "advanced":
            from diffprivlib.accountant import BudgetAccountant  # a local accountant, not the global default

            eps, delta = BudgetAccountant(slack=self.slack).total(spent_budget=spends)
            return float(eps), float(delta)
        return math.fsum(e for e, _ in spends), math.fsum(d for _, d in spends)

    @property
    def remaining(self) -> float:
        """The epsilon one more pure-DP release may still spend (``remaining()`` works too, as before)."""
        spent = self.total()[0]
        if self.composition == "basic":
            return Remaining(max(self.epsilon - spent, 0.0))
        lo, hi = 0.0, self.epsilon
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if self._fits(self.total([(mid, 0.0)])) else (lo, mid)
        return Remaining(lo)

    def summary(self) -> dict[str, Any]:
        """The budget state for ``report.json``."""
        eps, delta = self.total()
        return {
            "epsilon": self.epsilon, "delta": self.delta, "composition": self.composition,
            "spent_epsilon": eps, "spent_delta": delta, "remaining_epsilon": float(self.remaining),
            "releases": len(self._doc["entries"]), "ledger": str(self.path) if self.path else None,
            "input_fingerprint": self.fingerprint,
        }

    # -- spending --------------------------------------------------------------------------------------

    def check(self, spends: Sequence[PlannedSpend]) -> None:
        """Raise :class:`BudgetError` if ``spends`` would take the total over the budget (re-reads the file)."""
        doc = self._read()
        self._check_identity(doc)
        self._doc = doc
        self._refuse_over_budget(doc, spends)

    def spend(self, epsilon: float, delta: float = 0.0, *, stage: str = "etl", kind: str = "release",
              details: dict[str, Any] | None = None) -> dict[str, Any]:
        """Check and durably record one spend; returns the entry. Raises :class:`BudgetError` when over budget."""
        if not (math.isfinite(epsilon) and epsilon > 0) or not 0 <= delta < 1:
            raise ValueError("a spend needs 0 < epsilon < inf and 0 <= delta < 1")
        with self._locked():
            doc = self._read()
            self._check_identity(doc)
            self._refuse_over_budget(doc, [PlannedSpend(stage, kind, float(epsilon), float(delta))])
            entry = {
                "id": secrets.token_hex(8),
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "stage": stage, "kind": kind, "epsilon": float(epsilon), "delta": float(delta),
                "input_fingerprint": self.fingerprint, **self.context,
                "budget": {"epsilon": self.epsilon, "delta": self.delta, "composition": self.composition},
                "details": dict(details or {}),
            }
            doc["entries"].append(entry)
            if self.fingerprint and self.fingerprint not in doc["dataset"]["fingerprints"]:
                doc["dataset"]["fingerprints"].append(self.fingerprint)
            self._write(doc)
            self._doc = doc
        return entry

    def scope(self, *, stage: str, kind: str) -> "LedgerScope":
        """An account for one stage of a run: its spends are recorded under ``stage``."""
        return LedgerScope(self, stage=stage, kind=kind)

    def write_copy(self, target: Path) -> None:
        """Write the current ledger (as recorded) to ``target`` atomically, e.g. into a run directory."""
        write_text_atomic(Path(target), _dumps(self._doc))

    # -- internals -------------------------------------------------------------------------------------

    def _fits(self, total: tuple[float, float]) -> bool:
        return total[0] <= self.epsilon * (1 + _TOLERANCE) and total[1] <= self.delta * (1 + _TOLERANCE) + 1e-300

    def _refuse_over_budget(self, doc: dict[str, Any], spends: Sequence[PlannedSpend]) -> None:
        new = [(s.epsilon, s.delta) for s in spends]
        if self._fits(self.total(new, entries=doc["entries"])):
            return
        self._doc = doc
        spent_eps, spent_delta = self.total(entries=doc["entries"])
        asked = math.fsum(e for e, _ in new)
        parts = ", ".join(f"{s.stage} {s.epsilon:g}" for s in spends)
        where = f"ledger '{self.path}'" if self.path else "in-memory ledger"
        over_delta = self.total(new, entries=doc["entries"])[1] > self.delta * (1 + _TOLERANCE)
        if over_delta and self.total([(s.epsilon, 0.0) for s in spends], entries=doc["entries"])[0] <= self.epsilon:
            raise BudgetError(
                f"budget exceeded: this run would spend delta {math.fsum(d for _, d in new):g}, but only "
                f"{max(self.delta - spent_delta, 0):g} of budget.delta {self.delta:g} remains for this dataset ({where})"
            )
        raise BudgetError(
            f"budget exceeded: this run would spend epsilon {asked:g} ({parts}), but only {self.remaining:.6g} of "
            f"budget.epsilon {self.epsilon:g} remains for this dataset (spent {spent_eps:.6g} in "
            f"{len(doc['entries'])} release(s), {where})"
        )

    def _check_identity(self, doc: dict[str, Any]) -> None:
        known = doc["dataset"]["fingerprints"]
        if not known or self.fingerprint is None or self.fingerprint in known or self.allow_input_change:
            return
        raise BudgetError(
            f"ledger '{self.path}' records spends on another input (fingerprint {known[-1][:19]}, this input "
            f"{self.fingerprint[:19]}); if this is the same dataset changed, set budget.allow_input_change: true "
            "(its spends keep adding up); otherwise name this dataset's own ledger in budget.ledger"
        )

    def _read(self) -> dict[str, Any]:
        if self.path is None or not self.path.exists():
            return getattr(self, "_doc", None) or _new_doc()
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise BudgetError(
                f"ledger '{self.path}' cannot be read ({type(exc).__name__}); refusing to release "
                "(a ledger is never reset automatically: restore it from the copy in the last run directory)"
            ) from None
        _validate(doc, self.path)
        return doc

    def _write(self, doc: dict[str, Any]) -> None:
        eps, delta = self.total(entries=doc["entries"])
        doc["budget"] = {"epsilon": self.epsilon, "delta": self.delta, "composition": self.composition, "slack": self.slack}
        doc["spent"] = {"epsilon": eps, "delta": delta, "releases": len(doc["entries"])}
        if self.path is not None:
            write_text_atomic(self.path, _dumps(doc))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if self.path is None or fcntl is None:
            yield
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path.with_name(self.path.name + ".lock"), "a+")
        except OSError as exc:
            raise ConfigError(
                f"budget.ledger '{self.path}' cannot be written ({exc.strerror or type(exc).__name__}); "
                "name a file in a writable folder"
            ) from None
        with handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class LedgerScope:
    """The account (a :class:`~privprep.transforms.privacy_account.PrivacyAccount`) a stage spends from during a run: checks and spends are
    the ledger's, under the stage's config path and kind; remembers what it recorded."""

    def __init__(self, ledger: Ledger, *, stage: str, kind: str) -> None:
        self.ledger, self.stage, self.kind = ledger, stage, kind
        self.recorded: list[dict[str, Any]] = []

    @property
    def remaining(self) -> float:
        return self.ledger.remaining

    @property
    def delta(self) -> float:
        """The δ of the dataset's whole budget."""
        return self.ledger.delta

    def check(self, spends: Sequence[PlannedSpend]) -> None:
        """The ledger's check (re-reads the file), with ``spends`` counted as this stage's."""
        self.ledger.check([replace(s, stage=self.stage, kind=self.kind) for s in spends])

    def spend(self, epsilon: float, delta: float = 0.0, *, details: dict[str, Any] | None = None) -> dict[str, Any]:
        entry = self.ledger.spend(epsilon, delta, stage=self.stage, kind=self.kind, details=details)
        self.recorded.append(entry)
        return entry

    def settle(self, planned: PlannedSpend) -> None:
        """Fail closed: a stage that recorded nothing is charged its planned spend."""
        if not self.recorded:
            self.spend(planned.epsilon, planned.delta, details={"note": "charged by the runner: the stage recorded no spend"})


def _new_doc() -> dict[str, Any]:
    return {"format": FORMAT, "dataset": {"fingerprints": []}, "entries": []}


def _validate(doc: Any, path: Path) -> None:
    ok = isinstance(doc, dict) and doc.get("format") == FORMAT and isinstance(doc.get("entries"), list)
    ok = ok and isinstance(doc.get("dataset"), dict) and isinstance(doc["dataset"].get("fingerprints"), list)
    if ok:
        for entry in doc["entries"]:
            eps, delta = (entry.get("epsilon"), entry.get("delta")) if isinstance(entry, dict) else (None, None)
            if not (_number(eps) and eps > 0 and math.isfinite(eps) and _number(delta) and 0 <= delta < 1):
                ok = False
                break
    if not ok:
        raise BudgetError(f"ledger '{path}' is not a valid privprep ledger ({FORMAT}); refusing to release")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"


def resolve_ledger_path(value: str, base_dir: Path) -> Path:
    """``budget.ledger`` resolved against the config file's folder, symlinks resolved: two names of one
    file must share one lock and one account (a symlink would otherwise be replaced by a separate file)."""
    path = Path(value).expanduser()
    return Path(os.path.realpath(path if path.is_absolute() else base_dir / path))


def open_ledger(loaded: Any, source: Any) -> tuple[Ledger | None, list[PlannedSpend]]:
    """The ledger of a run and its planned spends; ``(None, [])`` for a pipeline without DP stages."""
    config = loaded.config
    spends = planned_spends(config)
    if not spends:
        return None, []
    budget = config.budget
    if budget is None or budget.ledger is None:  # check_references reports this; stay closed regardless
        raise ConfigError("budget: a pipeline with DP stages needs budget.epsilon and budget.ledger")
    path = resolve_ledger_path(budget.ledger, loaded.base_dir)
    _check_ledger_location(path, loaded, source)
    context = {"run": secrets.token_hex(6), "config_sha256": loaded.sha256}
    fingerprint = input_fingerprint(source.files, source.format, source.schema)
    return Ledger.from_budget(budget, path, fingerprint=fingerprint, context=context), spends


def _check_ledger_location(path: Path, loaded: Any, source: Any) -> None:
    resolved = path.resolve()
    output = loaded.output.resolve()
    if resolved == output or output in resolved.parents:
        raise ConfigError(f"budget.ledger '{path}' lies inside the output '{loaded.output}', which a run replaces; keep it outside")
    if path.is_dir():
        raise ConfigError(f"budget.ledger '{path}' is a directory; name a file such as ledgers/<dataset>.json")
    inputs = {f.resolve() for f in source.files}
    root = Path(loaded.input).resolve()
    if resolved in inputs or (root.is_dir() and root in resolved.parents):
        raise ConfigError(f"budget.ledger '{path}' lies inside the input '{loaded.input}', which is never written; keep it outside")


__all__ = [
    "FORMAT",
    "Ledger",
    "LedgerScope",
    "PlannedSpend",
    "input_fingerprint",
    "open_ledger",
    "planned_spends",
    "resolve_ledger_path",
]
