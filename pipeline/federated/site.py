"""One site of a federation: its description (:class:`SiteSpec`) and its work in each round (:class:`SiteWorker`).

A site holds its own sanitized data (the ``data/`` of a privprep run directory, written by running the
pipeline's sanitization stages on the site's rows), its own privacy ledger and budget, and the
``train`` stage's column settings. Every round the server sends the global weights; the site

1. loads its rows and splits off its held-out rows (the split is seeded once and kept in the round
   state, so it is the same in every round);
2. in its first round only: calibrates σ once for all rounds (:func:`~privprep.transforms.federated.
   accounting.calibrate_noise`), checks the whole training's ε against its ledger and **records it
   before its first update leaves** (fail closed: a federation that stops early has spent less);
3. runs one local DP-SGD round and adds its steps to its account, kept in the round state across
   rounds, so the ε it reports is cumulative.

The worker knows nothing of Flower: :mod:`.app` wraps it in a ``ClientApp``; the state is a plain
dict that the app keeps in Flower's ``context.state``.
"""

from __future__ import annotations

import functools
import json
import logging
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from privprep.schemas.config import stage_path
from privprep.schemas.errors import ConfigError
from privprep.transforms.federated.accounting import LocalSchedule, SiteAccount, calibrate_noise
from privprep.transforms.federated.settings import FederatedSettings, SiteData, round_seed
from privprep.transforms.train.data import default_delta, examples_from_table, holdout_split, read_columns

from ..budget.ledger import Ledger, PlannedSpend, input_fingerprint, resolve_ledger_path
from ..configs.config import LoadedConfig
from ..files.io import InputSource

log = logging.getLogger(__name__)
SPEC_NAME = "site.json"


@dataclass(frozen=True)
class SiteSpec:
    """What a site needs to train: where its sanitized rows are, its columns, its ledger and budget."""

    name: str
    index: int
    data_dir: str
    stage: str
    image: str
    label: str
    classes: list[Any]
    holdout: float
    ledger: str
    budget: dict[str, Any]
    fingerprint: str
    config_sha256: str
    delta: float | None = None
    image_shape: list[int] | None = None
    pixel_range: list[float] | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "SiteSpec":
        return cls(**json.loads(text))

    @classmethod
    def read(cls, site_dir: Path | str) -> "SiteSpec":
        """The ``site.json`` of a site's run directory; its relative ``data_dir`` resolved against that directory."""
        folder = Path(site_dir)
        path = folder / SPEC_NAME
        try:
            spec = cls.from_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"'{folder}' holds no readable {SPEC_NAME} ({type(exc).__name__}); write it with "
                              "privprep federate prepare CONFIG") from None
        data = Path(spec.data_dir)
        return cls(**{**asdict(spec), "data_dir": str(data if data.is_absolute() else folder / data)})

    def ledger_object(self) -> Ledger:
        """The site's ledger (re-read from disk at every check and spend)."""
        b = self.budget
        return Ledger(Path(self.ledger), epsilon=b["epsilon"], delta=b["delta"], composition=b["composition"], slack=b["slack"],
                      fingerprint=self.fingerprint, allow_input_change=b["allow_input_change"],
                      context={"run": secrets.token_hex(6), "config_sha256": self.config_sha256, "site": self.name})


def train_entry(loaded: LoadedConfig) -> tuple[int, Any]:
    """The config's ``train`` stage (index, params); a :class:`ConfigError` when there is none."""
    for index, entry in enumerate(loaded.config.stages):
        if entry.params.kind == "sink":
            return index, entry.params
    raise ConfigError(
        f"config file '{loaded.path}' has no 'train' stage; federated training needs one as its last stage "
        "(e.g. - train: {model: cnn, image: image, label: label, target_epsilon: 3.0})"
    )


def site_ledger_path(ledger: Path, name: str) -> Path:
    """A site's own ledger beside the configured one: ``ledgers/patients.json`` → ``ledgers/patients.site-0.json``."""
    return ledger.with_name(f"{ledger.stem}.{name}{ledger.suffix or '.json'}")


def site_spec(loaded: LoadedConfig, *, name: str, index: int, run_dir: Path, ledger: Path | None = None) -> SiteSpec:
    """The spec of a site whose sanitized run is ``run_dir``, whose input is ``loaded.input`` and whose ledger is
    ``ledger`` (default: the config's ``budget.ledger``)."""
    config = loaded.config
    position, params = train_entry(loaded)
    budget = config.budget
    if budget is None or budget.ledger is None:
        raise ConfigError("budget: federated training needs budget.epsilon and budget.ledger")
    label = config.columns.get(params.label)
    if label is None or not label.categories:
        raise ConfigError(f"label column '{params.label}' needs declared categories (the classes) to train a classifier")
    image = config.columns.get(params.image)
    source = InputSource.open(loaded.input, delimiter=config.io.csv_delimiter)
    return SiteSpec(
        name=name, index=index, data_dir=str(Path(run_dir) / "data"), stage=stage_path(position, "train"),
        image=params.image, label=params.label, classes=list(label.categories), holdout=params.holdout,
        ledger=str(ledger if ledger is not None else resolve_ledger_path(budget.ledger, loaded.base_dir)),
        budget={"epsilon": budget.epsilon, "delta": budget.delta, "composition": budget.composition, "slack": budget.slack,
                "allow_input_change": budget.allow_input_change},
        fingerprint=input_fingerprint(source.files, source.format, source.schema), config_sha256=loaded.sha256,
        delta=params.delta, image_shape=params.image_shape,
        pixel_range=list(image.bounds) if image is not None and image.bounds is not None else None,
    )


@functools.lru_cache(maxsize=8)
def _examples(spec_json: str) -> Any:
    spec = SiteSpec.from_json(spec_json)
    table = read_columns(Path(spec.data_dir), [spec.image, spec.label])
    return examples_from_table(table, image=spec.image, label=spec.label, classes=spec.classes, image_shape=spec.image_shape,
                               pixel_range=tuple(spec.pixel_range) if spec.pixel_range else None)  # type: ignore[arg-type]


def site_delta(spec: SiteSpec, rows: int) -> float:
    """δ of the site's guarantee: the config's ``train.delta``, else the largest power of ten below 1/rows, at most
    ``budget.delta`` (as the ``train`` stage chooses it)."""
    if spec.delta is not None:
        return float(spec.delta)
    delta = default_delta(rows)
    ceiling = float(spec.budget["delta"] or 0)
    return ceiling if 0 < ceiling < delta else delta


@dataclass
class SiteWorker:
    """A site's work in a round, from its :class:`SiteSpec` and the round state it kept from earlier rounds."""

    spec: SiteSpec
    threads: int | None = 1
    device: str | None = None
    _split: dict[int, SiteData] = field(default_factory=dict, repr=False)

    def data(self, split_seed: int) -> SiteData:
        """The site's training and held-out rows (the split is fixed by ``split_seed``)."""
        if split_seed not in self._split:
            examples = _examples(self.spec.to_json())
            train, held = holdout_split(len(examples), self.spec.holdout, np.random.default_rng(split_seed))
            self._split[split_seed] = SiteData(self.spec.name, examples.take(train), examples.take(held),
                                               site_delta(self.spec, len(examples)))
        return self._split[split_seed]

    def split_seed(self, settings_seed: int | None, state: dict[str, Any]) -> int:
        if "split-seed" in state:
            return int(state["split-seed"])
        return round_seed(settings_seed, self.spec.index, 0) if settings_seed is not None else secrets.randbits(62)

    def train(self, weights: dict[str, np.ndarray], settings: FederatedSettings, round_number: int, state: dict[str, Any],
              *, classes: int) -> tuple[Any, dict[str, Any], dict[str, float]]:
        """One round: (the local update, the new state, the reply metrics)."""
        from privprep.transforms.federated.local import local_round
        from privprep.transforms.train.dpsgd import torch_threads

        state = dict(state)
        state["split-seed"] = self.split_seed(settings.seed, state)
        site = self.data(int(state["split-seed"]))
        schedule = LocalSchedule(rows=len(site.train), batch_size=settings.batch_size, local_epochs=settings.local_epochs,
                                 rounds=settings.rounds)
        if "noise-multiplier" not in state:
            account = self._start(site, schedule, settings)
        else:
            account = SiteAccount.from_state(state)
        seed = round_seed(settings.seed, self.spec.index, round_number) if settings.seed is not None else None
        with torch_threads(self.threads):
            update = local_round(weights, site.train, settings, classes=classes, noise_multiplier=account.noise_multiplier,
                                 steps=schedule.steps_per_round, seed=seed, device=self.device)
        account.record_round(update.steps)
        state.update(account.to_state())
        metrics = {
            "num-examples": float(update.num_examples), "unit-weight": 1.0, "site-index": float(self.spec.index),
            "epsilon": account.epsilon(), "delta": account.delta, "noise-multiplier": account.noise_multiplier,
            "sample-rate": account.sample_rate, "steps": float(account.steps), "rounds": float(len(account.history)),
            "holdout-rows": float(len(site.holdout)), "rows": float(len(site.train) + len(site.holdout)),
        }
        return update, state, metrics

    def _start(self, site: SiteData, schedule: LocalSchedule, settings: FederatedSettings) -> SiteAccount:
        """First round: σ calibrated once for all rounds; the whole training's ε checked and recorded in the ledger."""
        budget = self.spec.ledger_object().scope(stage=self.spec.stage, kind="train")  # a PrivacyAccount
        budget.check([PlannedSpend(self.spec.stage, "train", settings.target_epsilon, site.delta)])
        sigma = calibrate_noise(settings.target_epsilon, site.delta, schedule, settings.accountant)
        account = SiteAccount(noise_multiplier=sigma, sample_rate=schedule.sample_rate, delta=site.delta,
                              accountant=settings.accountant)
        planned = account.epsilon_after(schedule.total_steps)
        budget.spend(planned, site.delta, details={
            "federated": True, "site": self.spec.name, "rounds": settings.rounds, "local_epochs": settings.local_epochs,
            "noise_multiplier": sigma, "sample_rate": schedule.sample_rate, "steps": schedule.total_steps,
            "rows": len(site.train) + len(site.holdout), "accountant": settings.accountant,
            "note": "recorded before the site's first update left it: the epsilon of all rounds",
        })
        log.info("%s: sigma %.4f for %d steps over %d rounds, epsilon %.4g recorded", self.spec.name, sigma,
                 schedule.total_steps, settings.rounds, planned)
        return account

    def evaluate(self, weights: dict[str, np.ndarray], settings: FederatedSettings, state: dict[str, Any], *,
                 classes: int) -> dict[str, float]:
        """Accuracy of ``weights`` on the site's held-out rows (an exact count, not DP)."""
        from privprep.transforms.federated.local import accuracy_of
        from privprep.transforms.train.dpsgd import torch_threads

        site = self.data(self.split_seed(settings.seed, state))
        with torch_threads(self.threads):
            accuracy = accuracy_of(weights, site.holdout, classes=classes, device=self.device)
        return {"num-examples": float(len(site.holdout)), "unit-weight": 1.0, "accuracy": accuracy, "site-index": float(self.spec.index)}


__all__ = ["SPEC_NAME", "SiteSpec", "SiteWorker", "site_delta", "site_ledger_path", "site_spec", "train_entry"]
