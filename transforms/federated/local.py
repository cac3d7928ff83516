"""One site's part of a round: DP-SGD from the global weights for a fixed number of steps, and evaluation.

:func:`local_round` is the whole of a site's training in one round. It uses the noise multiplier σ
and sampling rate that the site calibrated once for all rounds (:mod:`.accounting`), Poisson
batches at that rate, per-example clipping to ``max_grad_norm`` and Gaussian noise, exactly as the
``train`` stage does (:mod:`privprep.transforms.train.dpsgd`), for ``steps`` steps. Opacus' own
accountant of the round is discarded: the site's account keeps the history across rounds.

With a ``seed`` the batches and the noise are reproducible on the CPU (bit for bit with the same
thread count); without one they come from the operating system's entropy.

Needs torch and opacus (the ``train`` extra).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch

from privprep.transforms.train.data import Examples
from privprep.transforms.train.dpsgd import (
    _generator, _pass_through, _Rows, _run_steps, default_grad_sample_mode, evaluate, fresh_model, make_private, pick_device,
)
from privprep.transforms.train.model import SmallCNN

from .fedavg import Weights
from .settings import FederatedSettings


@dataclass
class LocalUpdate:
    """What a site sends back after a round: its new weights, how many examples it trained on, its steps."""

    weights: Weights
    num_examples: int
    steps: int


def model_weights(model: torch.nn.Module) -> Weights:
    """The model's ``state_dict`` as numpy arrays (copies), in order."""
    return {name: tensor.detach().cpu().numpy().copy() for name, tensor in model.state_dict().items()}


def load_weights(model: torch.nn.Module, weights: Mapping[str, np.ndarray]) -> torch.nn.Module:
    """Load ``weights`` into ``model`` (names and shapes must match)."""
    model.load_state_dict({name: torch.from_numpy(np.array(value, copy=True)) for name, value in weights.items()})
    return model


def initial_weights(shape: tuple[int, int, int], classes: int, seed: int | None) -> Weights:
    """The global model's starting weights: a fresh CNN seeded from ``seed`` (OS entropy when None)."""
    return model_weights(fresh_model(shape, classes, seed))


def build_model(weights: Mapping[str, np.ndarray], shape: tuple[int, int, int], classes: int) -> SmallCNN:
    """A CNN for images of ``shape`` holding ``weights`` (eval mode)."""
    model = fresh_model(shape, classes, 0)
    load_weights(model, weights)
    return model.eval()


def local_round(
    weights: Mapping[str, np.ndarray],
    train: Examples,
    settings: FederatedSettings,
    *,
    classes: int,
    noise_multiplier: float,
    steps: int,
    seed: int | None,
    device: str | None = None,
) -> LocalUpdate:
    """``steps`` DP-SGD steps from ``weights`` on ``train`` with noise ``noise_multiplier``; the new weights."""
    from opacus import PrivacyEngine

    where = pick_device(device)
    shape = tuple(int(v) for v in train.images.shape[1:])
    model = build_model(weights, shape, classes).to(where).train()  # type: ignore[arg-type]
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.learning_rate, momentum=settings.momentum)
    rows = _Rows(torch.from_numpy(train.images).to(where), torch.from_numpy(train.labels).to(where))
    loader = torch.utils.data.DataLoader(
        rows, batch_size=settings.batch_size, collate_fn=_pass_through, generator=_generator(seed, 1, torch.device("cpu")),
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG.*")
        engine = PrivacyEngine(accountant="rdp")  # its per-round history is not the site's account
        private, optimizer, criterion, loader, _ = make_private(
            engine, module=model, optimizer=optimizer, loader=loader, noise_multiplier=noise_multiplier,
            max_grad_norm=settings.max_grad_norm, noise_generator=_generator(seed, 2, where),
            mode=default_grad_sample_mode("cnn"),
        )
    taken = _run_steps(private, optimizer, loader, steps, criterion=criterion)
    return LocalUpdate(weights=model_weights(private._module), num_examples=len(train), steps=taken)


def accuracy_of(weights: Mapping[str, np.ndarray], examples: Examples, *, classes: int, device: str | None = None) -> float:
    """Share of ``examples`` that a CNN with ``weights`` classifies correctly."""
    where = pick_device(device)
    shape = tuple(int(v) for v in examples.images.shape[1:])
    model = build_model(weights, shape, classes).to(where)  # type: ignore[arg-type]
    return evaluate(model, examples, device=where)


__all__ = ["LocalUpdate", "accuracy_of", "build_model", "initial_weights", "load_weights", "local_round", "model_weights"]
