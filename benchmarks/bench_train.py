"""Benchmark: accuracy and speed of the DP-SGD ``train`` stage (not run in CI).

Three parts, each printing a table (``--part`` picks; default all):

* **digits** — scikit-learn's 1,797 unique 8×8 digits (the pixels of the sample data), the stage's
  held-out split (20%): the same CNN trained without privacy (plain SGD, momentum 0.9) and with the
  stage at ε = 3 and its defaults (δ = 1e-4, below 1/n), one row per seed.
* **mnist** — the real MNIST (60,000 train / 10,000 test, IDX files from ``--mnist-dir``), δ = 1e-5,
  the test set as the held-out set: for each ε in ``--eps`` the stage's defaults and the settings
  documented in docs/training.md (``MNIST_SETTINGS``; ``--settings`` picks rows, ``--custom`` adds your
  own, ``--epochs`` overrides every row's epochs, e.g. ``--epochs 1`` for a quick check). All eight runs
  take about 8 minutes on an H100 and hours on a 2-core CPU.
* **speed** — one DP-SGD step (Opacus, per-example clipping + noise) beside one non-private step of
  the same model and batch (256), interleaved, median of ``--repeats``, for both image sizes.

    python benchmarks/bench_train.py [--part digits mnist speed] [--device cuda] [--epochs N]
                                     [--eps 1 3] [--seeds 0 1 2] [--mnist-dir ../shared/data/mnist]

Accuracy at a given ε varies with the seed by about ±0.5 points on MNIST and ±2 on digits.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_MNIST = HERE.parents[1] / "shared" / "data" / "mnist"
DIGITS_CLASSES = list(range(10))
#: Rows of the MNIST table: a name and the stage's settings (None: the stage's default).
MNIST_SETTINGS: list[tuple[str, dict[str, Any]]] = [
    ("defaults (20 ep, B 256, lr 1, C 1)", {}),
    ("epochs 10, lr 0.5 (documented for eps 1)", {"epochs": 10, "learning_rate": 0.5}),
    ("lr 0.5 (documented for eps 3)", {"learning_rate": 0.5}),
    ("epochs 30, B 512, lr 1", {"epochs": 30, "batch_size": 512}),
]


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    import torch

    from privprep.transforms.train.dpsgd import pick_device

    device = pick_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG.*")
    print(f"device {device} ({_device_name(device)}), torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"python {platform.python_version()}")
    if "digits" in args.part:
        bench_digits(args, str(device))
    if "mnist" in args.part:
        bench_mnist(args, str(device))
    if "speed" in args.part:
        bench_speed(args, device)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", nargs="+", default=["digits", "mnist", "speed"], choices=["digits", "mnist", "speed"])
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--epochs", type=int, default=None, help="override the epochs of every MNIST row")
    parser.add_argument("--eps", type=float, nargs="+", default=[1.0, 3.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--settings", type=int, nargs="+", default=None, help="indices of MNIST_SETTINGS rows to run")
    parser.add_argument("--custom", nargs="+", default=None, help="MNIST rows of your own, e.g. epochs=10,learning_rate=0.5")
    parser.add_argument("--mnist-dir", type=Path, default=DEFAULT_MNIST)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    return parser.parse_args(argv)


def _device_name(device: Any) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()


# -- digits ------------------------------------------------------------------------------------------


def bench_digits(args: argparse.Namespace, device: str) -> None:
    import pyarrow as pa
    from sklearn.datasets import load_digits

    from privprep.transforms.dp import SpendLog
    from privprep.transforms.train import Train
    from privprep.transforms.train.data import examples_from_table, holdout_split

    digits = load_digits()
    table = pa.table({
        "image": pa.FixedSizeListArray.from_arrays(pa.array(digits.data.astype(np.uint8).ravel()), 64),
        "label": pa.array(digits.target, pa.int64()),
    })
    examples = examples_from_table(table, image="image", label="label", classes=DIGITS_CLASSES, pixel_range=(0, 16))
    print("\ndigits (scikit-learn, 1,797 unique 8x8 images; 20% held out, 0 ... 16 scaled to -1 ... 1)")
    _row("seed", "setting", "epsilon", "delta", "accuracy", "seconds")
    for seed in args.seeds:
        train, held = holdout_split(len(examples), 0.2, np.random.default_rng(seed))
        started = time.perf_counter()
        accuracy = train_plain(examples.take(train), examples.take(held), epochs=40, seed=seed, device=device)
        _row(seed, "non-private (SGD lr 0.1, momentum 0.9, 40 ep)", "-", "-", f"{accuracy:.4f}", f"{time.perf_counter() - started:.1f}")
        stage = Train(image="image", label="label", classes=DIGITS_CLASSES, target_epsilon=3.0, seed=seed,
                      pixel_range=(0, 16), device=device)
        started = time.perf_counter()
        card = stage.fit(table, account=SpendLog()).card
        _row(seed, "train stage, defaults", f"{card['epsilon']:.3f}", f"{card['delta']:g}", f"{card['accuracy']:.4f}",
             f"{time.perf_counter() - started:.1f}")


def train_plain(train: Any, held: Any, *, epochs: int, seed: int, device: str, batch_size: int = 64) -> float:
    """The same CNN without privacy: shuffled mini-batches, SGD with momentum; accuracy on ``held``."""
    import torch

    from privprep.transforms.train.dpsgd import evaluate, fresh_model

    model = fresh_model(tuple(train.images.shape[1:]), 10, seed).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    images, labels = torch.from_numpy(train.images).to(device), torch.from_numpy(train.labels).to(device)
    generator = torch.Generator().manual_seed(seed)
    loss = torch.nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(labels), generator=generator).to(device)
        for start in range(0, len(labels), batch_size):
            pick = order[start:start + batch_size]
            optimizer.zero_grad()
            loss(model(images[pick]), labels[pick]).backward()
            optimizer.step()
    return evaluate(model, held, device=device)


# -- MNIST -------------------------------------------------------------------------------------------


def bench_mnist(args: argparse.Namespace, device: str) -> None:
    from privprep.pipeline.mnist import load_mnist
    from privprep.transforms.train.data import Examples
    from privprep.transforms.train.dpsgd import DpSgdSettings, train_dp

    def examples(split: str) -> Examples:
        images, labels = load_mnist(args.mnist_dir, split=split)
        scaled = (images.astype(np.float32) / 127.5 - 1.0)[:, None, :, :]  # the stage's scaling of uint8 pixels
        return Examples(np.ascontiguousarray(scaled), labels)

    train, test = examples("train"), examples("test")
    print(f"\nMNIST ({len(train):,} train / {len(test):,} test, delta 1e-5, PRV accountant; accuracy on the test set)")
    _row("epsilon", "setting", "seed", "eps (prv)", "eps (rdp)", "sigma", "steps", "accuracy", "seconds")
    rows = MNIST_SETTINGS if args.settings is None else [MNIST_SETTINGS[i] for i in args.settings]
    if args.custom:
        rows = [(text, {k: (int(v) if k in ("epochs", "batch_size") else float(v)) for k, v in
                        (item.split("=") for item in text.split(","))}) for text in args.custom]
    for eps in args.eps:
        for name, overrides in rows:
            params = {"epochs": 20, "batch_size": 256, "learning_rate": 1.0, "max_grad_norm": 1.0, **overrides}
            if args.epochs is not None:
                params["epochs"] = args.epochs
                name = f"{name} [epochs {args.epochs}]"
            for seed in args.seeds:
                settings = DpSgdSettings(target_epsilon=eps, delta=1e-5, seed=seed, **params)
                out = train_dp(train, test, settings, classes=10, device=device)
                _row(f"{eps:g}", name, seed, f"{out.epsilon:.3f}", f"{out.epsilons['rdp']:.3f}", f"{out.noise_multiplier:.3f}",
                     out.steps, f"{out.accuracy:.4f}", f"{out.seconds:.0f}")


# -- speed -------------------------------------------------------------------------------------------


def bench_speed(args: argparse.Namespace, device: Any) -> None:
    import torch
    from opacus import PrivacyEngine

    from privprep.transforms.train.dpsgd import _pass_through, _Rows, fresh_model

    print(f"\nstep time, batch 256, median of {args.repeats} interleaved steps")
    _row("image", "parameters", "non-private ms", "DP-SGD ms", "ratio")
    for shape in ((1, 8, 8), (1, 28, 28)):
        x = torch.rand(256, *shape, device=device) * 2 - 1
        y = torch.randint(0, 10, (256,), device=device)
        loss = torch.nn.CrossEntropyLoss()
        plain = fresh_model(shape, 10, 0).to(device)
        plain_opt = torch.optim.SGD(plain.parameters(), lr=0.1)
        dp_model = fresh_model(shape, 10, 0).to(device)
        loader = torch.utils.data.DataLoader(_Rows(x, y), batch_size=256, collate_fn=_pass_through)
        private, dp_opt, _ = PrivacyEngine().make_private(
            module=dp_model, optimizer=torch.optim.SGD(dp_model.parameters(), lr=0.1), data_loader=loader,
            noise_multiplier=1.0, max_grad_norm=1.0, poisson_sampling=True, grad_sample_mode="ew",
        )

        def step(model: Any, optimizer: Any) -> Callable[[], None]:
            def run() -> None:
                optimizer.zero_grad(set_to_none=True)
                loss(model(x), y).backward()
                optimizer.step()
            return run

        steps = {"plain": step(plain, plain_opt), "dp": step(private, dp_opt)}
        times: dict[str, list[float]] = {k: [] for k in steps}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            for _ in range(3):
                for run in steps.values():
                    run()
            for _ in range(args.repeats):
                for name, run in steps.items():
                    _sync(device)
                    started = time.perf_counter()
                    run()
                    _sync(device)
                    times[name].append(time.perf_counter() - started)
        plain_ms, dp_ms = (statistics.median(times[k]) * 1000 for k in ("plain", "dp"))
        _row("x".join(map(str, shape[1:])), sum(p.numel() for p in plain.parameters()), f"{plain_ms:.2f}", f"{dp_ms:.2f}",
             f"{dp_ms / plain_ms:.2f}x")


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _row(*cells: Any) -> None:
    print(" | ".join(str(c) for c in cells), flush=True)


if __name__ == "__main__":
    sys.exit(main())
