"""DP-SGD with Opacus: the noise from the target (ε, δ), Poisson sampling, PRV accounting.

``make_private_with_epsilon`` picks the noise multiplier σ so that ``int(epochs / q)`` steps at
sampling rate ``q = 1 / ceil(n / batch_size)`` reach at most the target ε (binary search with
Opacus' tolerance of 0.01, against the upper bound of the chosen accountant). The loop then runs
exactly that many steps (Opacus' own epochs can take one step more when ``epochs / q`` rounds down),
so the accountant's ε of the finished history is at most the target. The other accountant's ε of
the same history is reported beside it (RDP is looser than PRV).

Randomness: with a ``seed`` the model's initial weights, the Poisson batches and the Gaussian noise
come from torch generators seeded from it (reproducible on CPU). Without one they come from the
operating system's entropy: whoever knows the seed of a release can replay its noise, so a
published seed weakens the guarantee against an adversary who knows the other rows.

Needs torch and opacus (the ``train`` extra); imported only when training starts.

>>> from privprep.transforms.train.data import Examples
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> data = Examples(rng.random((200, 1, 8, 8), dtype=np.float32), rng.integers(0, 2, 200))
>>> settings = DpSgdSettings(target_epsilon=2.0, delta=1e-3, epochs=2, batch_size=50, seed=0)
>>> out = train_dp(data, data, settings, classes=2)  # doctest: +SKIP
>>> out.steps, out.epsilon <= 2.0  # doctest: +SKIP
(8, True)
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .data import Examples
from .model import SmallCNN, build_cnn

log = logging.getLogger(__name__)
ACCOUNTANTS = ("prv", "rdp")
EVAL_BATCH = 1024
#: Rényi orders for the reported RDP ε: Opacus' defaults (1.1 … 63) and larger ones, which small noise needs.
RDP_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [64, 80, 96, 128, 192, 256, 384, 512, 1024]


@dataclass(frozen=True)
class DpSgdSettings:
    """Everything that fixes a DP-SGD run besides the data."""

    target_epsilon: float
    delta: float
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 1.0
    max_grad_norm: float = 1.0
    momentum: float = 0.0
    accountant: str = "prv"
    seed: int | None = None
    grad_sample_mode: str = "ew"

    def __post_init__(self) -> None:
        if not (self.target_epsilon > 0 and math.isfinite(self.target_epsilon)):
            raise ValueError("target_epsilon must be a finite number > 0")
        if not 0 < self.delta < 1:
            raise ValueError("delta must be in (0, 1)")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if not (self.learning_rate > 0 and self.max_grad_norm > 0 and 0 <= self.momentum < 1):
            raise ValueError("learning_rate and max_grad_norm must be > 0, momentum in [0, 1)")
        if self.accountant not in ACCOUNTANTS:
            raise ValueError(f"accountant must be one of {', '.join(ACCOUNTANTS)}")


@dataclass
class FitOutcome:
    """A trained model and what its training spent."""

    model: SmallCNN
    noise_multiplier: float
    sample_rate: float
    steps: int
    epsilon: float
    epsilons: dict[str, float]
    accuracy: float
    device: str
    threads: int
    seconds: float
    extras: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)


class _Rows(Dataset):
    """Rows held as two tensors; ``__getitems__`` gathers a whole batch with one index (no per-row collate)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long, device=self.labels.device)
        return [self.images.index_select(0, index), self.labels.index_select(0, index)]


def _pass_through(batch: list[torch.Tensor]) -> list[torch.Tensor]:
    return batch


def pick_device(device: str | None = None) -> torch.device:
    """``device`` when given, else CUDA when present, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which containers and ``taskset`` restrict)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def idle_cpus() -> int:
    """CPUs not busy: those this process may use less the 1-minute load average (at least 1; conservative, as
    this process may be part of the load)."""
    cpus = available_cpus()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - not Unix
        return cpus
    return max(1, min(cpus, round(cpus - load)))


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run with ``threads`` intra-op threads; the caller's setting is restored afterwards.

    Default: torch's own setting, capped at the CPUs this process may use and at the CPUs other work
    leaves idle. OpenMP threads that wait for a busy core make a step many times slower (measured: 10×
    on a 2-core machine under load), while extra threads speed this small CNN up by at most ~3× at 8.
    """
    before = torch.get_num_threads()
    wanted = threads if threads is not None else min(before, available_cpus(), idle_cpus())
    torch.set_num_threads(max(1, int(wanted)))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def _generator(seed: int | None, offset: int, device: torch.device) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(secrets.randbits(63) if seed is None else (seed * 1_000_003 + offset) % (1 << 63))
    return generator


def fresh_model(shape: tuple[int, int, int], classes: int, seed: int | None) -> SmallCNN:
    """A new CNN whose initial weights depend on ``seed`` alone; torch's global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(secrets.randbits(63) if seed is None else seed)
        return build_cnn(shape, classes=classes)


def train_dp(
    train: Examples,
    holdout: Examples,
    settings: DpSgdSettings,
    *,
    classes: int,
    device: str | None = None,
    threads: int | None = None,
) -> FitOutcome:
    """Train a fresh CNN on ``train`` with DP-SGD and measure its accuracy on ``holdout``."""
    from opacus import PrivacyEngine

    started = time.perf_counter()
    where = pick_device(device)
    with torch_threads(threads) as used_threads:
        shape = tuple(int(v) for v in train.images.shape[1:])
        model = fresh_model(shape, classes, settings.seed).to(where)  # type: ignore[arg-type]
        optimizer = torch.optim.SGD(model.parameters(), lr=settings.learning_rate, momentum=settings.momentum)
        rows = _Rows(torch.from_numpy(train.images).to(where), torch.from_numpy(train.labels).to(where))
        loader = DataLoader(
            rows, batch_size=settings.batch_size, collate_fn=_pass_through,
            generator=_generator(settings.seed, 1, torch.device("cpu")),
        )
        with warnings.catch_warnings(), np.errstate(divide="ignore"):  # PRV takes log(1 - q), -inf at q = 1
            warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG.*")
            warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")  # large σ tried by the search
            engine = PrivacyEngine(accountant=settings.accountant)
            private, optimizer, loader = engine.make_private_with_epsilon(
                module=model, optimizer=optimizer, data_loader=loader,
                target_epsilon=settings.target_epsilon, target_delta=settings.delta, epochs=settings.epochs,
                max_grad_norm=settings.max_grad_norm, poisson_sampling=True,
                noise_generator=_generator(settings.seed, 2, where), grad_sample_mode=settings.grad_sample_mode,
            )
        sample_rate = float(loader.sample_rate)  # 1 / len(the plain loader); not 1 / len(loader), which may round down
        planned = int(settings.epochs / sample_rate)  # the step count Opacus calibrated the noise for
        history: list[dict[str, float]] = []

        def after_epoch(epoch: int, steps: int) -> None:
            """Held-out accuracy and the ε spent so far (RDP: cheap per epoch; the final figure uses the chosen accountant)."""
            module = private._module
            module.eval()
            accuracy = evaluate(module, holdout, device=where)
            module.train()
            epsilon = _epsilons(engine.accountant.history, settings.delta, names=("rdp",))["rdp"]
            history.append({"epoch": epoch, "steps": steps, "accuracy": accuracy, "epsilon": epsilon})

        t0 = time.perf_counter()
        steps = _run_steps(private, optimizer, loader, planned, after_epoch=after_epoch)
        train_seconds = time.perf_counter() - t0
        epsilons = _epsilons(engine.accountant.history, settings.delta)
        trained: SmallCNN = private._module  # the plain module, without Opacus' hooks
        trained.eval()
        accuracy = evaluate(trained, holdout, device=where)
    return FitOutcome(
        model=trained, noise_multiplier=float(optimizer.noise_multiplier), sample_rate=sample_rate, steps=steps,
        epsilon=epsilons[settings.accountant], epsilons=epsilons, accuracy=accuracy, device=str(where),
        threads=used_threads, seconds=time.perf_counter() - started, extras={"train_seconds": train_seconds},
        history=history,
    )


def _run_steps(
    model: nn.Module, optimizer: Any, loader: DataLoader, planned: int, *, after_epoch: Callable[[int, int], None] | None = None
) -> int:
    criterion = nn.CrossEntropyLoss()
    model.train()
    steps = 0
    epoch = 0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook is firing")  # inputs need no gradient
        while steps < planned:
            epoch += 1
            if epoch > 1 and after_epoch is not None:
                after_epoch(epoch - 1, steps)
            for images, labels in loader:
                optimizer.zero_grad(set_to_none=True)
                if len(labels):
                    criterion(model(images), labels).backward()
                else:  # an empty Poisson batch still takes a (pure noise) step, as the accounting assumes
                    for param in optimizer.params:
                        param.grad_sample = param.new_zeros((0, *param.shape))
                optimizer.step()
                steps += 1
                if steps == planned:
                    break
    if after_epoch is not None and steps:
        after_epoch(epoch, steps)
    return steps


def _epsilons(history: list[tuple[float, float, int]], delta: float, names: tuple[str, ...] | None = None) -> dict[str, float]:
    """ε of ``history`` under each accountant (PRV: Opacus' upper bound at eps_error 0.01; RDP over :data:`RDP_ORDERS`)."""
    from opacus.accountants import create_accountant

    result = {}
    for name in names or ACCOUNTANTS:
        accountant = create_accountant(mechanism=name)
        accountant.history = list(history)
        extra = {"alphas": RDP_ORDERS} if name == "rdp" else {}
        with np.errstate(divide="ignore"):  # PRV takes log(1 - q), -inf at q = 1
            result[name] = float(accountant.get_epsilon(delta, **extra))
    return result


@torch.no_grad()
def evaluate(model: nn.Module, examples: Examples, *, device: torch.device | str = "cpu") -> float:
    """Share of ``examples`` the model classifies correctly."""
    model.eval()
    correct = 0
    for start in range(0, len(examples), EVAL_BATCH):
        images = torch.from_numpy(examples.images[start:start + EVAL_BATCH]).to(device)
        labels = torch.from_numpy(examples.labels[start:start + EVAL_BATCH]).to(device)
        correct += int((model(images).argmax(dim=1) == labels).sum())
    return correct / max(len(examples), 1)


__all__ = [
    "ACCOUNTANTS", "DpSgdSettings", "FitOutcome", "available_cpus", "evaluate", "fresh_model", "idle_cpus", "pick_device",
    "torch_threads", "train_dp",
]
