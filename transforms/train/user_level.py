"""DP-SGD at the level of people (``budget.privacy_unit``): per-user gradient averaging.

Design (McMahan, Ramage, Talwar, Zhang 2018, "Learning differentially private recurrent language
models", their DP-FedSGD with one local step): every step Poisson-samples *people* at rate
``q = batch_size / people``; for each sampled person up to ``rows_per_person`` of their rows
(uniformly at random, fresh each step) give per-row gradients (Opacus' ``GradSampleModule``), which
are **averaged per person before clipping**; Opacus' ``DPOptimizer`` then clips each person's
gradient to ``max_grad_norm``, adds its Gaussian noise and divides by the expected number of people
per batch. So the "example" Opacus clips and accounts for is one person: adding or removing a
person changes one clipped term of one step's sum, and the accountant (PRV or RDP, Opacus') with
sample rate ``q`` over people bounds the whole training's (epsilon, delta) at the level of people,
however many rows anyone has.

Why averaging rather than Opacus' group (virtual-step) sampling: averaging gives every person the
same weight and keeps one clipped vector per person, which is what the sensitivity needs; group
sampling over rows would still let a person with many rows appear in many steps of an epoch.
Persons are split into training and held-out people (never trained on) before anything else.

>>> import numpy as np
>>> train_rows, held_rows = holdout_people(np.array([0, 0, 1, 1, 1, 2]), 0.34, np.random.default_rng(0))
>>> train_rows.tolist(), held_rows.tolist()   # person 2 held out whole, persons 0 and 1 trained on
([0, 1, 2, 3, 4], [5])
"""

from __future__ import annotations

import math
import secrets
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from privprep.schemas.errors import ConfigError, DataError

from .budget import check_budget, record_spend
from .card import write_model_dir
from .data import Examples, default_delta, examples_from_table

USER_LEVEL = "per-user gradient averaging (McMahan et al. 2018): people Poisson-sampled, each person's rows averaged before clipping"


def people_codes(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Each row's person as a dense code 0..P-1 (nulls: one person of their own, a conservative choice)."""
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    encoded = pc.dictionary_encode(column)
    codes = encoded.indices.fill_null(len(encoded.dictionary)).to_numpy(zero_copy_only=False).astype(np.int64)
    return np.unique(codes, return_inverse=True)[1]


def holdout_people(people: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of (training people, held-out people): the split is by person, never within one."""
    n = int(people.max()) + 1 if len(people) else 0
    if n < 2:
        raise DataError(f"training at the level of people needs at least 2 people (one to hold out); the data has {n}")
    held = set(rng.permutation(n)[: min(max(1, round(fraction * n)), n - 1)].tolist())
    mask = np.isin(people, list(held))
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def train_user_dp(train: Examples, people: np.ndarray, holdout: Examples, settings: Any, *, classes: int,
                  rows_per_person: int = 1, device: str | None = None, threads: int | None = None) -> Any:
    """Train a fresh CNN with user-level DP-SGD; ``people[i]`` is the person (0..P-1) of ``train`` row i."""
    import torch
    from opacus import GradSampleModule
    from opacus.accountants import create_accountant
    from opacus.accountants.utils import get_noise_multiplier
    from opacus.optimizers import DPOptimizer
    from opacus.utils.uniform_sampler import UniformWithReplacementSampler

    from .dpsgd import FitOutcome, _epsilons, _generator, evaluate, fresh_model, pick_device, torch_threads

    started = time.perf_counter()
    where = pick_device(device)
    people = np.unique(people, return_inverse=True)[1]
    n_people = int(people.max()) + 1
    order = np.argsort(people, kind="stable")
    starts = np.searchsorted(people[order], np.arange(n_people + 1))
    sample_rate = min(1.0, settings.batch_size / n_people)
    planned = int(settings.epochs / sample_rate)
    with torch_threads(threads) as used_threads, warnings.catch_warnings(), np.errstate(divide="ignore"):
        warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG.*")
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        sigma = float(get_noise_multiplier(target_epsilon=settings.target_epsilon, target_delta=settings.delta,
                                           sample_rate=sample_rate, steps=planned, accountant=settings.accountant))
        shape = tuple(int(v) for v in train.images.shape[1:])
        model = GradSampleModule(fresh_model(shape, classes, settings.seed).to(where), loss_reduction="sum")  # type: ignore[arg-type]
        base = torch.optim.SGD(model.parameters(), lr=settings.learning_rate, momentum=settings.momentum)
        optimizer = DPOptimizer(base, noise_multiplier=sigma, max_grad_norm=settings.max_grad_norm,
                                expected_batch_size=max(1, round(sample_rate * n_people)), loss_reduction="mean",
                                generator=_generator(settings.seed, 2, where))
        accountant = create_accountant(mechanism=settings.accountant)
        sampler = UniformWithReplacementSampler(num_samples=n_people, sample_rate=sample_rate,
                                                generator=_generator(settings.seed, 1, torch.device("cpu")))
        pick = np.random.default_rng(settings.seed if settings.seed is not None else secrets.randbits(63))
        images, labels = torch.from_numpy(train.images).to(where), torch.from_numpy(train.labels).to(where)
        steps = 0
        t0 = time.perf_counter()
        model.train()
        while steps < planned:
            for batch in sampler:
                rows, owner = _rows_of(batch, order, starts, rows_per_person, pick)
                optimizer.zero_grad(set_to_none=True)
                if len(rows):
                    index = torch.as_tensor(rows, device=where)
                    person_gradients(model, images[index], labels[index], torch.as_tensor(owner, device=where), len(batch))
                else:  # no one sampled: a pure noise step, as the accounting assumes
                    for param in model.parameters():
                        param.grad_sample = param.new_zeros((0, *param.shape))
                optimizer.step()
                accountant.step(noise_multiplier=sigma, sample_rate=sample_rate)
                steps += 1
                if steps == planned:
                    break
        train_seconds = time.perf_counter() - t0
        epsilons = _epsilons(accountant.history, settings.delta)
        trained = model._module
        trained.eval()
        accuracy = evaluate(trained, holdout, device=where)
    return FitOutcome(
        model=trained, noise_multiplier=sigma, sample_rate=sample_rate, steps=steps, epsilon=epsilons[settings.accountant],
        epsilons=epsilons, accuracy=accuracy, device=str(where), threads=used_threads, seconds=time.perf_counter() - started,
        extras={"train_seconds": train_seconds, "people": n_people},
    )


def person_gradients(model: Any, images: Any, labels: Any, owner: Any, people: int) -> None:
    """Set each parameter's ``grad_sample`` to one gradient per person: the gradient of the mean
    cross-entropy over that person's rows (``owner[i]``: the person, 0..people-1, of row i). ``model``
    is an Opacus ``GradSampleModule`` with ``loss_reduction="sum"``."""
    import torch
    from torch import nn

    counts = torch.bincount(owner, minlength=people).clamp(min=1).to(images.dtype)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook is firing")  # inputs need no gradient
        loss = (nn.functional.cross_entropy(model(images), labels, reduction="none") / counts[owner]).sum()
        loss.backward()
    for param in model.parameters():  # per-row gradients (already divided by the person's rows) summed per person
        if param.requires_grad and getattr(param, "grad_sample", None) is not None:
            grouped = param.grad_sample.new_zeros((people, *param.shape))
            param.grad_sample = grouped.index_add_(0, owner, param.grad_sample)


def _rows_of(batch: list[int], order: np.ndarray, starts: np.ndarray, limit: int,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``limit`` rows of each sampled person (uniformly at random), and each row's position in ``batch``."""
    rows, owner = [], []
    for position, person in enumerate(batch):
        mine = order[starts[person]:starts[person + 1]]
        if len(mine) > limit:
            mine = rng.choice(mine, size=limit, replace=False)
        rows.append(mine)
        owner.append(np.full(len(mine), position))
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows).astype(np.int64), np.concatenate(owner).astype(np.int64)


def fit_user_level(stage: Any, table: pa.Table, *, account: Any, model_dir: Path | str | None) -> Any:
    """``Train.fit`` at the level of people: split by person, train, spend, write the model card."""
    from .settings import CHOSEN, DpSgdSettings, choose_settings
    from .stage import TrainResult, accuracy_warnings, chosen_settings, require_training_extra

    p = stage.params
    if stage.privacy_unit not in table.column_names:
        raise DataError(f"privacy unit column '{stage.privacy_unit}' is not in the data trained on; keep it "
                        "(pseudonymized) in the output so rows of one person can be grouped")
    examples = examples_from_table(table, image=p.image, label=p.label, classes=stage.classes,
                                   image_shape=p.image_shape, pixel_range=stage.pixel_range)
    people = people_codes(table.column(stage.privacy_unit))
    n_people = int(people.max()) + 1 if len(people) else 0
    if p.delta is not None:
        delta, source = float(p.delta), "config"
    else:
        delta, source = default_delta(max(n_people, 1)), f"default: the largest power of ten below 1/people (people = {n_people})"
        from .budget import budget_delta

        ceiling = budget_delta(account)
        if ceiling is not None and 0 < ceiling < delta:
            delta, source = ceiling, "budget.delta (smaller than the default below 1/people)"
    rng = np.random.default_rng(stage.seed if stage.seed is not None else secrets.randbits(63))
    train_rows, held_rows = holdout_people(people, p.holdout, rng)
    check_budget(account, epsilon=p.target_epsilon, delta=delta, stage=stage.path)
    require_training_extra()
    if p.model not in (None, "cnn"):
        raise ConfigError(f"{stage.path}.model: DP-SGD at the level of people (budget.privacy_unit) trains model cnn only, "
                          f"not {p.model}")
    # Left-out settings are chosen as for rows, counting people: a step samples people, not rows.
    values, why = choose_settings(rows=len(np.unique(people[train_rows])), target_epsilon=p.target_epsilon, model="cnn",
                                  given={k: getattr(p, k) for k in CHOSEN})
    if p.model is None:
        why = {"model": "cnn: DP-SGD at the level of people trains the CNN", **why}
    settings = DpSgdSettings(target_epsilon=p.target_epsilon, delta=delta, accountant=p.accountant, seed=stage.seed,
                             model="cnn", **values)
    outcome = train_user_dp(examples.take(train_rows), people[train_rows], examples.take(held_rows), settings,
                            classes=len(stage.classes), rows_per_person=stage.rows_per_person,
                            device=stage.device, threads=stage.threads)
    card = stage._card(examples, train_rows, held_rows, settings, outcome, source)
    train_people = outcome.extras["people"]
    card.update({
        "privacy_unit": f"one person: every row of one '{stage.privacy_unit}' value",
        "privacy_unit_column": stage.privacy_unit, "people": n_people, "train_people": train_people,
        "holdout_people": n_people - train_people, "rows_per_person_per_step": stage.rows_per_person,
        "user_level": USER_LEVEL, "sampling": "poisson over people",
        "expected_batch_size": math.floor(train_people * outcome.sample_rate),
        "delta_below_one_over_people": delta < 1 / max(n_people, 1),
    })
    card.pop("delta_below_one_over_rows", None)
    card["chosen_settings"] = chosen_settings(settings, why, outcome, train_rows=train_people)
    card["warnings"] = accuracy_warnings(outcome.accuracy, examples.labels[held_rows], classes=len(stage.classes),
                                         epsilon=p.target_epsilon, rows=train_people, model="cnn")
    record_spend(account, epsilon=outcome.epsilon, delta=delta, details={
        **{k: card[k] for k in ("accountant", "target_epsilon", "epsilon_by_accountant", "noise_multiplier", "sample_rate",
                                "steps", "rows", "people")}, "privacy_unit": stage.privacy_unit,
    })
    if model_dir is not None:
        write_model_dir(Path(model_dir), state_dict=outcome.model.state_dict(), card=card)
    return TrainResult(model=outcome.model, card=card)


__all__ = ["USER_LEVEL", "fit_user_level", "holdout_people", "people_codes", "person_gradients", "train_user_dp"]
