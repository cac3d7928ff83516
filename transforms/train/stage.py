"""The ``train`` sink stage: DP-SGD on the sanitized output, spent from the dataset's privacy budget.

A run goes: read the image and label columns (batch by batch) → check and convert them → split off the
held-out rows (never trained on) → check the target (ε, δ) against the account → train with Opacus
(Poisson sampling, noise from the target, PRV accounting) → record the ε spent → write ``model/``.

>>> import numpy as np, pyarrow as pa
>>> from privprep.transforms.dp import SpendLog
>>> rng = np.random.default_rng(0)
>>> table = pa.table({"image": pa.array(list(rng.integers(0, 17, (300, 64), dtype=np.uint8)), pa.list_(pa.uint8(), 64)),
...                   "label": rng.integers(0, 10, 300)})
>>> stage = Train(image="image", label="label", classes=list(range(10)), target_epsilon=3.0, epochs=2, seed=0,
...               pixel_range=(0, 16))
>>> log = SpendLog(epsilon=4.0)
>>> result = stage.fit(table, account=log)  # doctest: +SKIP
>>> result.card["epsilon"] <= 3.0, log.spent <= 3.0, result.card["delta"]  # doctest: +SKIP
(True, True, 0.001)
"""

from __future__ import annotations

import importlib.util
import logging
import math
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np
import pyarrow as pa
from pydantic import ValidationError

from privprep.schemas.config import format_validation_error
from privprep.schemas.errors import ConfigError
from privprep.schemas.stages import TrainParams

from ..base import SinkStage, StageContext
from ..registry import register

if TYPE_CHECKING:
    import pandas as pd
from .budget import budget_delta, check_budget, record_spend
from .card import library_versions, write_model_dir
from .data import Examples, default_delta, examples_from_table, holdout_split, read_columns
from .settings import CHOSEN, DpSgdSettings, choose_model, choose_settings

log = logging.getLogger(__name__)
EXTRA_HINT = "pip install torch==2.13.0 && pip install 'privprep[train]'"
ACCURACY_NOTE = "share of the held-out rows classified correctly; an exact count over those rows, not differentially private"


def require_training_extra() -> None:
    """Raise a one-line :class:`ConfigError` when torch or opacus is not installed (imports neither)."""
    missing = [name for name in ("torch", "opacus") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"stage 'train' needs {' and '.join(missing)}, which the core install leaves out; install the extra: {EXTRA_HINT}"
        )


def require_scatter_extra() -> None:
    """Raise a one-line :class:`ConfigError` when kymatio (the ScatterNet models' transform) is not installed."""
    if importlib.util.find_spec("kymatio") is None:
        raise ConfigError(f"models scatter_linear and scatter_cnn need kymatio, which is not installed: {EXTRA_HINT}")


def chosen_settings(settings: DpSgdSettings, why: dict[str, str], outcome: Any, *, train_rows: int) -> dict[str, Any]:
    """For the model card: each DP-SGD setting, whether the config gave it or the default chose it, and why."""
    entry: dict[str, Any] = {}
    for name in ("model", *CHOSEN):
        value = getattr(settings, name)
        entry[name] = {"value": value, "source": "default" if name in why else "config",
                       **({"reason": why[name]} if name in why else {})}
    entry["noise_multiplier"] = {
        "value": outcome.noise_multiplier, "source": "budget",
        "reason": f"calibrated by Opacus ({settings.accountant}) so that {outcome.steps} steps at sampling rate "
                  f"{outcome.sample_rate:.6g} (1 / ceil({train_rows} / {settings.batch_size})) reach at most epsilon "
                  f"{settings.target_epsilon:g} at delta {settings.delta:g}",
    }
    return entry


def accuracy_warnings(accuracy: float, held_labels: np.ndarray, *, classes: int, epsilon: float, rows: int, model: str) -> list[str]:
    """A warning when the held-out accuracy is near what always guessing the most frequent class gets."""
    counts = np.bincount(np.asarray(held_labels, dtype=np.int64), minlength=classes)
    baseline = max(float(counts.max()) / max(int(counts.sum()), 1), 1.0 / classes)
    useful = baseline + (1.0 - baseline) / 2
    if accuracy >= useful:
        return []
    return [
        f"train: held-out accuracy {accuracy:.1%} is close to chance ({baseline:.1%}: the larger of 1/classes and "
        f"the most frequent held-out class; useful starts at {useful:.1%}): epsilon {epsilon:g} buys too little signal on {rows:,} training rows with "
        f"model {model}. Use more rows, a larger target_epsilon, or another model before relying on this one"
    ]


@dataclass
class TrainResult:
    """A trained model (a torch module in eval mode) and its model card."""

    model: Any
    card: dict[str, Any]


@register
class Train(SinkStage):
    """Train a small tanh CNN with DP-SGD on an image column and a label column.

    Parameters (keyword-only; the config's ``train:`` keys, plus the column declarations)
    ----------
    image, label:
        Column names: one pixel array per row, and the class of each row.
    classes:
        The label column's declared categories, in order: class ``i`` is ``classes[i]``.
    target_epsilon:
        The ε the training may spend; the noise multiplier is computed from it (at most this is spent).
    delta:
        δ of the guarantee; default the largest power of ten below 1/rows (and at most the budget's δ).
    model:
        ``cnn`` (a small tanh CNN on pixels), ``scatter_linear`` or ``scatter_cnn`` (a linear model or a small
        CNN on ScatterNet features; needs kymatio).
    epochs, batch_size, learning_rate, max_grad_norm, momentum:
        DP-SGD settings: passes over the data, expected batch size (Poisson sampling), SGD step,
        per-example clipping norm, SGD momentum. Each one left out (None) is chosen from the training
        rows, the target ε and the model (:func:`~.settings.choose_settings`); the model card's
        ``chosen_settings`` says which were chosen and why.
    holdout:
        Share of rows held out before training, for the reported accuracy; never trained on.
    image_shape, pixel_range:
        [H, W] or [C, H, W] when the column's own shape does not say it; the declared pixel range
        (the image column's ``bounds``), else the pixel type's range.
    accountant:
        ``prv`` (default) or ``rdp``; the other's ε of the same history is reported too.
    seed:
        Makes the split, initial weights, batches and noise reproducible (see ``dpsgd``); ``None``: fresh
        entropy. A config's ``seed:`` applies only when written out.
    device, threads:
        torch device (default CUDA when present) and CPU threads (default torch's, capped at this process' CPUs).
    """

    name: ClassVar[str] = "train"
    Params = TrainParams

    def __init__(
        self,
        *,
        image: str,
        label: str,
        classes: Sequence[Any],
        target_epsilon: float,
        delta: float | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        learning_rate: float | None = None,
        max_grad_norm: float | None = None,
        momentum: float | None = None,
        holdout: float = 0.2,
        image_shape: Sequence[int] | None = None,
        pixel_range: tuple[float, float] | None = None,
        accountant: str = "prv",
        seed: int | None = None,
        device: str | None = None,
        threads: int | None = None,
        model: str | None = None,
        path: str = "train",
        privacy_unit: str | None = None,
        rows_per_person: int = 1,
    ) -> None:
        try:  # the one validation of the DP-SGD settings (the config's params model)
            params = TrainParams(
                model=model, image=image, label=label, target_epsilon=target_epsilon, delta=delta, epochs=epochs,
                batch_size=batch_size, learning_rate=learning_rate, max_grad_norm=max_grad_norm, momentum=momentum,
                holdout=holdout, image_shape=list(image_shape) if image_shape is not None else None,
                accountant=accountant, seed=seed,
            )
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc)) from None
        self._setup(params, classes=classes, pixel_range=pixel_range, device=device, threads=threads, path=path,
                    privacy_unit=privacy_unit, rows_per_person=rows_per_person)

    def _setup(self, params: TrainParams, *, classes: Sequence[Any], pixel_range: tuple[float, float] | None,
               device: str | None, threads: int | None, path: str, privacy_unit: str | None = None,
               rows_per_person: int = 1) -> None:
        """Keep the validated ``params`` as given (left-out settings stay None until :meth:`fit` chooses them)."""
        classes = list(classes)
        if len(classes) < 2 or len({repr(c) for c in classes}) != len(classes):
            raise ConfigError(f"label column '{params.label}' needs at least 2 distinct declared categories to train a classifier")
        if pixel_range is not None and not (len(pixel_range) == 2 and float(pixel_range[0]) < float(pixel_range[1])):
            raise ConfigError("pixel_range must be (low, high) with low < high")
        if threads is not None and threads < 1:
            raise ConfigError("threads must be >= 1")
        self.params = params
        self.classes = classes
        self.pixel_range = (float(pixel_range[0]), float(pixel_range[1])) if pixel_range is not None else None
        self.seed, self.device, self.threads, self.path = params.seed, device, threads, path
        self.privacy_unit, self.rows_per_person = privacy_unit, int(rows_per_person)  # user-level DP-SGD: see user_level

    @property
    def momentum(self) -> float | None:
        return self.params.momentum

    @classmethod
    def from_config(cls, params: TrainParams, *, context: StageContext) -> "Train":
        require_training_extra()
        label = context.columns.get(params.label)
        image = context.columns.get(params.image)
        if label is None or not label.categories:
            raise ConfigError(
                f"label column '{params.label}' needs declared categories (the classes), e.g. "
                f"columns.{params.label}: {{role: insensitive, categories: [0, 1, 2]}}"
            )
        if params.model not in (None, "cnn"):
            require_scatter_extra()
        stage = cls.__new__(cls)  # params were validated with the config: not again
        stage._setup(params, classes=list(label.categories), device=None, threads=None, path=context.path,
                     privacy_unit=getattr(getattr(context, "budget", None), "privacy_unit", None),
                     rows_per_person=getattr(getattr(context, "budget", None), "max_contributions_per_partition", 1),
                     pixel_range=tuple(image.bounds) if image is not None and image.bounds is not None else None)  # type: ignore[arg-type]
        return stage

    def __repr__(self) -> str:
        given = {k: v for k, v in self.params.model_dump().items() if v is not None and k not in ("image", "label")}
        return f"Train(image={self.params.image!r}, label={self.params.label!r}, " + ", ".join(f"{k}={v!r}" for k, v in given.items()) + ")"

    def input_columns(self) -> list[str]:
        return [self.params.image, self.params.label] + ([self.privacy_unit] if self.privacy_unit else [])

    def consume(self, data_dir: Path, run_dir: Path, ledger: Any) -> dict[str, Any]:
        """Train on the Parquet parts under ``data_dir``; write ``run_dir/model``; return the report entry."""
        table = read_columns(Path(data_dir), self.input_columns())
        result = self.fit(table, account=ledger, model_dir=Path(run_dir) / "model")
        return {**result.card, "model_dir": "model"}

    def fit(self, data: pa.Table | pd.DataFrame, *, account: Any, model_dir: Path | str | None = None) -> TrainResult:
        """Train on an in-memory table, spending from ``account``; optionally write ``model_dir``."""
        if account is None:
            raise ConfigError("training spends privacy budget: pass account=, e.g. privprep.transforms.dp.SpendLog(epsilon=3)")
        table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
        if self.privacy_unit is not None:  # DP-SGD at the level of people
            from .user_level import fit_user_level

            return fit_user_level(self, table, account=account, model_dir=model_dir)
        p = self.params
        examples = examples_from_table(
            table, image=p.image, label=p.label, classes=self.classes, image_shape=p.image_shape, pixel_range=self.pixel_range,
        )
        delta, delta_source = self._delta(len(examples), account)
        rng = np.random.default_rng(self.seed if self.seed is not None else secrets.randbits(63))
        train_rows, held_rows = holdout_split(len(examples), p.holdout, rng)
        check_budget(account, epsilon=p.target_epsilon, delta=delta, stage=self.path)
        require_training_extra()
        model, model_why = choose_model(shape=examples.images.shape[1:], rows=len(examples), given=p.model,
                                        scatter_available=importlib.util.find_spec("kymatio") is not None)
        if model != "cnn":
            require_scatter_extra()
        from .dpsgd import train_dp  # torch is imported here, not before

        values, why = choose_settings(rows=len(train_rows), target_epsilon=p.target_epsilon, model=model,
                                      given={k: getattr(p, k) for k in CHOSEN})
        if model_why is not None:
            why = {"model": model_why, **why}
        settings = DpSgdSettings(target_epsilon=p.target_epsilon, delta=delta, accountant=p.accountant, seed=self.seed,
                                 model=model, **values)
        log.info("training on %d rows (%d held out), target epsilon %g", len(train_rows), len(held_rows), p.target_epsilon)
        outcome = train_dp(
            examples.take(train_rows), examples.take(held_rows), settings,
            classes=len(self.classes), device=self.device, threads=self.threads,
        )
        card = self._card(examples, train_rows, held_rows, settings, outcome, delta_source)
        card["chosen_settings"] = chosen_settings(settings, why, outcome, train_rows=len(train_rows))
        card["warnings"] = accuracy_warnings(outcome.accuracy, examples.labels[held_rows], classes=len(self.classes),
                                             epsilon=p.target_epsilon, rows=len(train_rows), model=model)
        for warning in card["warnings"]:
            log.warning("%s", warning)
        record_spend(account, epsilon=outcome.epsilon, delta=delta, details={
            k: card[k] for k in ("accountant", "target_epsilon", "epsilon_by_accountant", "noise_multiplier", "sample_rate", "steps", "rows")
        })
        if model_dir is not None:
            write_model_dir(Path(model_dir), state_dict=outcome.model.state_dict(), card=card)
        return TrainResult(model=outcome.model, card=card)

    def _delta(self, rows: int, account: Any) -> tuple[float, str]:
        if self.params.delta is not None:
            return float(self.params.delta), "config"
        delta = default_delta(rows)
        ceiling = budget_delta(account)
        if ceiling is not None and 0 < ceiling < delta:
            return ceiling, "budget.delta (smaller than the default below 1/rows)"
        return delta, f"default: the largest power of ten below 1/rows (rows = {rows})"

    def _card(self, examples: Examples, train_rows: np.ndarray, held_rows: np.ndarray, settings: Any,
              outcome: Any, delta_source: str) -> dict[str, Any]:
        rows = len(examples)
        return {
            "epsilon": outcome.epsilon,
            "delta": settings.delta,
            "accountant": settings.accountant,
            "noise_multiplier": outcome.noise_multiplier,
            "max_grad_norm": settings.max_grad_norm,
            "sample_rate": outcome.sample_rate,
            "epochs": settings.epochs,
            "steps": outcome.steps,
            "rows": rows,
            "accuracy": outcome.accuracy,
            "seed": self.seed,
            "versions": library_versions(),
            "target_epsilon": settings.target_epsilon,
            "epsilon_by_accountant": outcome.epsilons,
            "delta_source": delta_source,
            "delta_below_one_over_rows": settings.delta < 1 / rows,
            "train_rows": int(len(train_rows)),
            "holdout_rows": int(len(held_rows)),
            "accuracy_note": ACCURACY_NOTE,
            "batch_size": settings.batch_size,
            "expected_batch_size": math.floor(len(train_rows) * outcome.sample_rate),
            "learning_rate": settings.learning_rate,
            "momentum": settings.momentum,
            "sampling": "poisson",
            "privacy_unit": "one row of the data trained on",
            "classes": [_json_value(c) for c in self.classes],
            "model": {**outcome.model.spec, "kind": settings.model,
                      "parameters": int(sum(t.numel() for t in outcome.model.parameters()))},
            "grad_sample_mode": outcome.extras.get("grad_sample_mode"),
            "feature_seconds": round(float(outcome.extras.get("feature_seconds", 0.0)), 4),
            "image": self.params.image,
            "label": self.params.label,
            "device": outcome.device,
            "threads": outcome.threads,
            "history": [{**h, "epsilon_accountant": "rdp"} for h in outcome.history],
        }


def _json_value(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


__all__ = ["Train", "TrainResult", "accuracy_warnings", "chosen_settings", "require_scatter_extra", "require_training_extra"]
