"""DP-SGD with Opacus: the noise from the target (ε, δ), Poisson sampling, PRV accounting.

Opacus' ``get_noise_multiplier`` picks the noise multiplier σ so that ``int(epochs / q)`` steps at
sampling rate ``q = 1 / ceil(n / batch_size)`` reach at most the target ε (binary search with
Opacus' tolerance of 0.01, against the upper bound of the chosen accountant; what
``make_private_with_epsilon`` does). The loop then runs exactly that many steps, so the
accountant's ε of the finished history is at most the target. The other accountant's ε of the same
history is reported beside it (RDP is looser than PRV).

The ScatterNet models train their head on features computed **once** from the whole dataset before
the first step (:func:`~.model.training_inputs`), never per step. Per-example gradients: Opacus'
``grad_sample_mode`` — by default ``bk``, book-keeping ghost clipping (:mod:`.bookkeeping`: per-example
gradient norms without materializing per-example gradients, and the clipped sum from the same single
backward pass), for every model; Opacus' own ``ghost`` (two backward passes), ``ew`` (expanded weights)
and ``hooks`` can be asked for (see :func:`default_grad_sample_mode` and ``benchmarks/bench_train.py``). A
logical batch larger than ``physical_batch_size`` is processed in physical chunks by Opacus'
``BatchMemoryManager``, one noisy step per logical batch: the accounting is that of the logical
(Poisson) batch, unchanged.

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
from .model import build_model, trainable, training_inputs
from .settings import ACCOUNTANTS, GRAD_SAMPLE_MODES, DpSgdSettings

log = logging.getLogger(__name__)
EVAL_BATCH = 1024
#: Rényi orders for the reported RDP ε: Opacus' defaults (1.1 … 63) and larger ones, which small noise needs.
RDP_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [64, 80, 96, 128, 192, 256, 384, 512, 1024]


@dataclass
class FitOutcome:
    """A trained model and what its training spent."""

    model: nn.Module
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


def fresh_model(shape: tuple[int, int, int], classes: int, seed: int | None, kind: str = "cnn") -> nn.Module:
    """A new network of ``kind`` whose initial weights depend on ``seed`` alone; torch's global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(secrets.randbits(63) if seed is None else seed)
        return build_model(kind, shape, classes=classes)


def default_grad_sample_mode(kind: str) -> str:
    """``bk`` for every model: the fastest measured on CPU for each (``bench_train.py --part speed``: 1.4-1.6x a
    non-private step, against 1.8-1.9x for Opacus' two-pass ``ghost`` and up to 36x for ``ew``/``hooks``, which
    materialize per-example gradients), and it never holds per-example gradients, so logical batches of
    thousands fit in memory."""
    return "bk"


def make_private(
    engine: Any, *, module: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, noise_multiplier: float,
    max_grad_norm: float, noise_generator: torch.Generator, mode: str,
) -> tuple[nn.Module, Any, Callable[..., Any], DataLoader, str]:
    """Opacus' ``make_private`` with Poisson sampling and per-example clipping by ``mode`` (one of
    :data:`GRAD_SAMPLE_MODES`); returns (private module, optimizer, criterion, loader, the mode used).

    ``bk`` is Opacus' ghost-clipping module, optimizer and accountant with :class:`.bookkeeping.BookKeepingLoss`
    as the criterion; a network with a layer book-keeping does not handle falls back to ``ghost`` (said in the
    returned mode). Under ``ghost`` and ``bk`` the conv layers' norms come from :mod:`.ghost_conv`.
    """
    from .bookkeeping import book_keeping_loss
    from .ghost_conv import use_on

    if mode not in GRAD_SAMPLE_MODES:
        raise ValueError(f"grad_sample_mode must be one of {', '.join(GRAD_SAMPLE_MODES)}, not {mode!r}")
    made = engine.make_private(
        module=module, optimizer=optimizer, data_loader=loader, criterion=nn.CrossEntropyLoss(),
        noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm, poisson_sampling=True,
        noise_generator=noise_generator, grad_sample_mode="ghost" if mode == "bk" else mode,
    )
    private, optimizer, criterion, loader = made if len(made) == 4 else (made[0], made[1], nn.CrossEntropyLoss(), made[2])
    if mode in ("ghost", "bk"):
        use_on(private)
    if mode == "bk":
        keeper = book_keeping_loss(private, nn.CrossEntropyLoss())
        if keeper is None:
            mode = "ghost"
        else:
            criterion = keeper
    return private, optimizer, criterion, loader, mode


def calibrate(settings: DpSgdSettings, sample_rate: float) -> tuple[float, int]:
    """(σ, steps): the noise multiplier for ``int(epochs / q)`` steps to reach at most the target ε."""
    from opacus.accountants.utils import get_noise_multiplier

    steps = int(settings.epochs / sample_rate)
    with warnings.catch_warnings(), np.errstate(divide="ignore"):  # PRV takes log(1 - q), -inf at q = 1
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")  # large σ tried by the search
        sigma = get_noise_multiplier(target_epsilon=settings.target_epsilon, target_delta=float(settings.delta),  # type: ignore[arg-type]
                                     sample_rate=sample_rate, steps=steps, accountant=settings.accountant, epsilon_tolerance=0.01)
    return float(sigma), steps


def train_dp(
    train: Examples,
    holdout: Examples,
    settings: DpSgdSettings,
    *,
    classes: int,
    device: str | None = None,
    threads: int | None = None,
    inputs: tuple[np.ndarray, np.ndarray] | None = None,
) -> FitOutcome:
    """Train a fresh network of ``settings.model`` on ``train`` with DP-SGD and measure its accuracy on ``holdout``.

    ``inputs``: the (train, holdout) inputs of the trained part when already computed (the ScatterNet
    features of :func:`~.model.training_inputs`, e.g. shared by the benchmark's runs over one dataset).
    """
    from opacus import PrivacyEngine

    started = time.perf_counter()
    where = pick_device(device)
    mode = settings.grad_sample_mode or default_grad_sample_mode(settings.model)
    with torch_threads(threads) as used_threads:
        shape = tuple(int(v) for v in train.images.shape[1:])
        model = fresh_model(shape, classes, settings.seed, settings.model).to(where)  # type: ignore[arg-type]
        head = trainable(model)
        t0 = time.perf_counter()
        if inputs is None:  # ScatterNet features: once, here
            inputs = (training_inputs(model, train.images, device=where), training_inputs(model, holdout.images, device=where))
        held = Examples(inputs[1], holdout.labels)
        feature_seconds = time.perf_counter() - t0
        optimizer = torch.optim.SGD(head.parameters(), lr=settings.learning_rate, momentum=settings.momentum)
        rows = _Rows(torch.from_numpy(np.ascontiguousarray(inputs[0])).to(where), torch.from_numpy(train.labels).to(where))
        loader = DataLoader(
            rows, batch_size=settings.batch_size, collate_fn=_pass_through,
            generator=_generator(settings.seed, 1, torch.device("cpu")),
        )
        sample_rate = 1.0 / len(loader)  # what Opacus' Poisson loader uses: 1 / ceil(n / batch_size)
        sigma, planned = calibrate(settings, sample_rate)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG.*")
            engine = PrivacyEngine(accountant=settings.accountant)
            private, optimizer, criterion, loader, mode = make_private(
                engine, module=head, optimizer=optimizer, loader=loader, noise_multiplier=sigma,
                max_grad_norm=settings.max_grad_norm, noise_generator=_generator(settings.seed, 2, where), mode=mode,
            )
        if abs(float(loader.sample_rate) - sample_rate) > 1e-12:  # pragma: no cover - the accounting assumes this rate
            raise RuntimeError(f"Opacus samples at {loader.sample_rate}, not the calibrated {sample_rate}")
        history: list[dict[str, float]] = []

        def after_epoch(epoch: int, steps: int) -> None:
            """Held-out accuracy and the ε spent so far (RDP: cheap per epoch; the final figure uses the chosen accountant)."""
            module = private._module
            accuracy = evaluate(module, held, device=where)
            module.train()
            epsilon = _epsilons(engine.accountant.history, float(settings.delta), names=("rdp",))["rdp"]  # type: ignore[arg-type]
            history.append({"epoch": epoch, "steps": steps, "accuracy": accuracy, "epsilon": epsilon})

        t0 = time.perf_counter()
        steps = _run_steps(private, optimizer, loader, planned, after_epoch=after_epoch, criterion=criterion,
                           physical=settings.physical_batch_size)
        train_seconds = time.perf_counter() - t0
        epsilons = _epsilons(engine.accountant.history, float(settings.delta))  # type: ignore[arg-type]
        trained = private._module  # the plain module, without Opacus' hooks
        accuracy = evaluate(trained, held, device=where)
        model.eval()
    return FitOutcome(
        model=model, noise_multiplier=float(optimizer.noise_multiplier), sample_rate=sample_rate, steps=steps,
        epsilon=epsilons[settings.accountant], epsilons=epsilons, accuracy=accuracy, device=str(where),
        threads=used_threads, seconds=time.perf_counter() - started,
        extras={"train_seconds": train_seconds, "feature_seconds": feature_seconds, "grad_sample_mode": mode},
        history=history,
    )


def _run_steps(
    model: nn.Module, optimizer: Any, loader: DataLoader, planned: int, *, after_epoch: Callable[[int, int], None] | None = None,
    criterion: Callable[..., Any] | None = None, physical: int | None = None,
) -> int:
    """Run ``planned`` noisy steps (one per logical Poisson batch); return how many ran."""
    criterion = criterion or nn.CrossEntropyLoss()
    ghost = "FastGradientClipping" in type(optimizer).__name__
    model.train()
    steps = 0
    epoch = 0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook is firing")  # inputs need no gradient
        while steps < planned:
            epoch += 1
            if epoch > 1 and after_epoch is not None:
                after_epoch(epoch - 1, steps)
            with _physical_batches(loader, optimizer, physical) as batches:
                for images, labels in batches:
                    optimizer.zero_grad(set_to_none=True)
                    if len(labels):
                        criterion(model(images), labels).backward()
                    elif ghost:  # an empty Poisson batch still takes a (pure noise) step, as the accounting assumes
                        for param in optimizer.params:
                            param.grad = torch.zeros_like(param)
                    else:
                        for param in optimizer.params:
                            param.grad_sample = param.new_zeros((0, *param.shape))
                    optimizer.step()
                    if getattr(optimizer, "_is_last_step_skipped", False):
                        continue  # a physical chunk of a logical batch: no step yet
                    steps += 1
                    if steps == planned:
                        break
    if after_epoch is not None and steps:
        after_epoch(epoch, steps)
    return steps


@contextlib.contextmanager
def _physical_batches(loader: DataLoader, optimizer: Any, physical: int | None) -> Iterator[Any]:
    """The loader itself, or Opacus' BatchMemoryManager splitting each logical batch into ``physical`` rows."""
    if physical is None:
        yield loader
        return
    from opacus.utils.batch_memory_manager import BatchMemoryManager

    with BatchMemoryManager(data_loader=loader, max_physical_batch_size=physical, optimizer=optimizer) as batches:
        yield batches


def _epsilons(history: list[tuple[float, float, int]], delta: float, names: tuple[str, ...] | None = None) -> dict[str, float]:
    """ε of ``history`` under each accountant (PRV: Opacus' upper bound at eps_error 0.01; RDP over :data:`RDP_ORDERS`)."""
    from opacus.accountants import create_accountant

    result = {}
    for name in names or ACCOUNTANTS:
        accountant = create_accountant(mechanism=name)
        accountant.history = list(history)
        extra = {"alphas": RDP_ORDERS} if name == "rdp" else {}
        with np.errstate(divide="ignore"):  # PRV takes log(1 - q), -inf at q = 1
            result[name] = max(0.0, float(accountant.get_epsilon(delta, **extra)))  # RDP's conversion can go below 0 at huge σ
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
    "ACCOUNTANTS", "GRAD_SAMPLE_MODES", "DpSgdSettings", "FitOutcome", "available_cpus", "calibrate", "default_grad_sample_mode", "evaluate",
    "fresh_model", "idle_cpus", "make_private", "pick_device", "torch_threads", "train_dp",
]
