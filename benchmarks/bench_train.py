"""Benchmark: accuracy and speed of the DP-SGD ``train`` stage (not run in CI).

Parts, each printing a table (``--part`` picks; default all):

* **digits** — scikit-learn's 1,797 unique 8×8 digits (the pixels of the sample data), the stage's
  held-out split (20%): the same CNN trained without privacy (plain SGD, momentum 0.9) and with the
  stage at ε = 3 and its defaults (δ = 1e-4, below 1/n), one row per seed.
* **sample** — 4,000 rows of the bundled sample (``privprep sample``), only ``target_epsilon: 3`` given
  (δ = 1e-5), every model, pixels scaled from the uint8 range (no ``bounds`` declared, as a new user
  writes it) and from the declared 0…16; then FedAvg over 3 sites (iid), 3 rounds, ε = 8 per site
  with the defaults ``federate simulate`` chooses (the plain loop it is checked against, same weights).
* **mnist** — the real MNIST (60,000 train / 10,000 test, IDX files from ``--mnist-dir``), δ = 1e-5,
  PRV, the test set as the held-out set: for each model in ``--models``, each ε in ``--eps`` and each
  seed, the settings the stage's defaults choose for 60,000 rows (``--custom`` overrides some, e.g.
  ``epochs=10,learning_rate=2``). ScatterNet features are computed once per model and shared by its runs.
* **speed** — one DP-SGD step (Opacus: per-example clipping + noise) beside one non-private step of the
  same model and batch, interleaved, median of ``--repeats``, per model and ``grad_sample_mode``.

    python benchmarks/bench_train.py [--part digits sample mnist speed] [--device cuda] [--models scatter_linear]
                                     [--eps 1 3] [--seeds 0 1 2] [--mnist-dir ../shared/data/mnist]

Accuracy at a given ε varies with the seed by about ±0.2 points on MNIST (ScatterNet) and ±2 on digits.
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
SPEED_CASES: list[tuple[str, tuple[int, int, int], int, tuple[str, ...]]] = [
    # model, image shape, batch, grad_sample_modes (the first is the stage's default)
    ("cnn", (1, 8, 8), 256, ("bk", "ghost", "ew", "hooks")),
    ("cnn", (1, 28, 28), 256, ("bk", "ghost", "ew", "hooks")),
    ("scatter_linear", (1, 28, 28), 4096, ("bk", "ghost", "ew", "hooks")),
    ("scatter_cnn", (1, 28, 28), 256, ("bk", "ghost", "ew", "hooks")),
    ("scatter_cnn", (1, 28, 28), 1024, ("bk", "ghost")),
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
    if "sample" in args.part:
        bench_sample(args, str(device))
    if "mnist" in args.part:
        bench_mnist(args, str(device))
    if "speed" in args.part:
        bench_speed(args, device)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parts = ["digits", "sample", "mnist", "speed"]
    parser.add_argument("--part", nargs="+", default=parts, choices=parts)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--models", nargs="+", default=["scatter_linear"], choices=["cnn", "scatter_linear", "scatter_cnn"])
    parser.add_argument("--eps", type=float, nargs="+", default=[1.0, 3.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--custom", default=None, help="MNIST settings overriding the defaults, e.g. epochs=10,learning_rate=2")
    parser.add_argument("--mnist-dir", type=Path, default=DEFAULT_MNIST)
    parser.add_argument("--feature-cache", type=Path, default=None,
                        help="a folder to keep MNIST's ScatterNet features in between runs (computed there on the first)")
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


def bench_sample(args: argparse.Namespace, device: str) -> None:
    import pyarrow as pa

    from privprep.pipeline.files.sample import generate_sample
    from privprep.transforms.dp import SpendLog
    from privprep.transforms.train import Train

    table = generate_sample(4000, seed=0).select(["image", "label"])
    print("\nsample (4,000 rows of the bundled sample, only target_epsilon 3 given, delta 1e-5; 20% held out)")
    _row("model", "pixels scaled from", "seed", "eps (prv)", "sigma", "batch", "epochs", "lr", "steps", "accuracy", "warnings", "seconds")
    for model in ("cnn", "scatter_linear", "scatter_cnn"):
        for pixels in (None, (0, 16)):
            for seed in args.seeds:
                stage = Train(image="image", label="label", classes=DIGITS_CLASSES, target_epsilon=3.0, delta=1e-5, seed=seed,
                              pixel_range=pixels, model=model, device=device)
                started = time.perf_counter()
                card = stage.fit(table, account=SpendLog()).card
                _row(model, "0..255 (uint8, no bounds)" if pixels is None else "0..16 (bounds)", seed, f"{card['epsilon']:.3f}",
                     f"{card['noise_multiplier']:.3f}", card["batch_size"], card["epochs"], card["learning_rate"], card["steps"],
                     f"{card['accuracy']:.4f}", len(card["warnings"]), f"{time.perf_counter() - started:.0f}")
    bench_federated_sample(args, device, table)


def bench_federated_sample(args: argparse.Namespace, device: str, table: Any) -> None:
    from types import SimpleNamespace

    from privprep.pipeline.federated.simulate import federated_settings
    from privprep.pipeline.federated.split import assign_sites
    from privprep.transforms.federated.loop import federated_loop
    from privprep.transforms.federated.settings import SiteData
    from privprep.transforms.train.data import default_delta, examples_from_table, holdout_split

    print("\nfederated (the 4,000 sample rows over 3 sites, iid; 3 rounds; only target_epsilon 8 given; no pixel bounds)")
    _row("seed", "batch", "local epochs", "lr", "sigma", "site eps (prv)", "accuracy by round", "seconds")
    examples = examples_from_table(table, image="image", label="label", classes=DIGITS_CLASSES)
    params = SimpleNamespace(target_epsilon=8.0, model="cnn", accountant="prv", holdout=0.2,
                             epochs=None, batch_size=None, learning_rate=None, max_grad_norm=None, momentum=None)
    for seed in args.seeds:
        site_of = assign_sites(len(examples), sites=3, seed=seed)
        sites = []
        for index in range(3):
            rows = examples.take(np.flatnonzero(site_of == index))
            train, held = holdout_split(len(rows), 0.2, np.random.default_rng([seed, index]))
            sites.append(SiteData(f"site-{index}", rows.take(train), rows.take(held), default_delta(len(rows))))
        settings = federated_settings(params, rounds=3, local_epochs=None, seed=seed, site_rows=len(sites[0].train))
        started = time.perf_counter()
        out = federated_loop(sites, settings, classes=10, device=device)
        _row(seed, settings.batch_size, settings.local_epochs, settings.learning_rate, f"{out.accounts[0].noise_multiplier:.3f}",
             f"{max(a.epsilon() for a in out.accounts):.3f}", " ".join(f"{h['accuracy']:.4f}" for h in out.history),
             f"{time.perf_counter() - started:.0f}")


# -- MNIST -------------------------------------------------------------------------------------------


def bench_mnist(args: argparse.Namespace, device: str) -> None:
    from privprep.pipeline.files.mnist import load_mnist
    from privprep.transforms.train.data import Examples
    from privprep.transforms.train.dpsgd import fresh_model, train_dp
    from privprep.transforms.train.model import training_inputs
    from privprep.transforms.train.settings import CHOSEN, DpSgdSettings, choose_settings

    def examples(split: str) -> Examples:
        images, labels = load_mnist(args.mnist_dir, split=split)
        scaled = (images.astype(np.float32) / 127.5 - 1.0)[:, None, :, :]  # the stage's scaling of uint8 pixels
        return Examples(np.ascontiguousarray(scaled), labels)

    train, test = examples("train"), examples("test")
    custom = {k: (int(v) if k in ("epochs", "batch_size") else float(v)) for k, v in
              (item.split("=") for item in args.custom.split(","))} if args.custom else {}
    print(f"\nMNIST ({len(train):,} train / {len(test):,} test, delta 1e-5, PRV accountant; accuracy on the test set; "
          f"settings: the stage's defaults for {len(train):,} rows{', with ' + args.custom if custom else ''})")
    _row("model", "epsilon", "seed", "eps (prv)", "eps (rdp)", "sigma", "q", "batch", "epochs", "lr", "C", "momentum", "steps",
         "accuracy", "feature s", "train s")
    for model in args.models:
        probe = fresh_model((1, 28, 28), 10, 0, model)
        started = time.perf_counter()
        cache = args.feature_cache / f"mnist-{model}.npz" if args.feature_cache and model != "cnn" else None
        if cache is not None and cache.exists():
            with np.load(cache) as saved:
                inputs = (saved["train"], saved["test"])
        else:
            inputs = (training_inputs(probe, train.images, device=device), training_inputs(probe, test.images, device=device))
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                np.savez(cache, train=inputs[0], test=inputs[1])
        feature_seconds = time.perf_counter() - started
        accuracies: dict[float, list[float]] = {}
        for seed, eps in ((seed, eps) for seed in args.seeds for eps in args.eps):
            values, _ = choose_settings(rows=len(train), target_epsilon=eps, model=model, given={k: custom.get(k) for k in CHOSEN})
            settings = DpSgdSettings(target_epsilon=eps, delta=1e-5, seed=seed, model=model, **values)
            out = train_dp(train, test, settings, classes=10, device=device, inputs=inputs)
            accuracies.setdefault(eps, []).append(out.accuracy)
            _row(model, f"{eps:g}", seed, f"{out.epsilon:.3f}", f"{out.epsilons['rdp']:.3f}", f"{out.noise_multiplier:.3f}",
                 f"{out.sample_rate:.5f}", settings.batch_size, settings.epochs, settings.learning_rate, settings.max_grad_norm,
                 settings.momentum, out.steps, f"{out.accuracy:.4f}", f"{feature_seconds:.0f}",
                 f"{out.extras['train_seconds']:.0f}")
        for eps, values in accuracies.items():
            spread = f" +- {statistics.stdev(values):.4f}" if len(values) > 1 else ""
            _row(model, f"{eps:g}", f"mean of {len(values)}", "", "", "", "", "", "", "", "", "", "", f"{statistics.mean(values):.4f}{spread}")


# -- speed -------------------------------------------------------------------------------------------


def bench_speed(args: argparse.Namespace, device: Any) -> None:
    import torch
    from opacus import PrivacyEngine

    from privprep.transforms.train.dpsgd import _pass_through, _Rows, fresh_model, make_private
    from privprep.transforms.train.model import ScatterNet, trainable

    print(f"\nstep time, median of {args.repeats} interleaved steps (non-private and DP-SGD alternate); "
          "ScatterNet models: the head on precomputed features")
    _row("model", "input", "batch", "parameters", "grad_sample_mode", "non-private ms", "DP-SGD ms", "ratio")
    for kind, shape, batch, modes in SPEED_CASES:
        probe = fresh_model(shape, 10, 0, kind)
        features = probe.feature_shape if isinstance(probe, ScatterNet) else shape
        x = torch.rand(batch, *features, device=device) * 2 - 1
        y = torch.randint(0, 10, (batch,), device=device)
        loss = torch.nn.CrossEntropyLoss()
        plain = trainable(fresh_model(shape, 10, 0, kind)).to(device)
        plain_opt = torch.optim.SGD(plain.parameters(), lr=0.1)
        steps: dict[str, Callable[[], None]] = {"plain": _step(plain, plain_opt, loss, x, y)}
        for mode in modes:
            dp_model = trainable(fresh_model(shape, 10, 0, kind)).to(device)
            loader = torch.utils.data.DataLoader(_Rows(x, y), batch_size=batch, collate_fn=_pass_through)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore")
                private, dp_opt, criterion, _, used = make_private(  # as train_dp does
                    PrivacyEngine(), module=dp_model, optimizer=torch.optim.SGD(dp_model.parameters(), lr=0.1), loader=loader,
                    noise_multiplier=1.0, max_grad_norm=1.0, noise_generator=torch.Generator(device=device), mode=mode,
                )
            assert used == mode
            steps[mode] = _step(private, dp_opt, criterion, x, y)
        times = _interleaved(steps, device, args.repeats)
        plain_ms = statistics.median(times["plain"]) * 1000
        for mode in modes:
            dp_ms = statistics.median(times[mode]) * 1000
            _row(kind, "x".join(map(str, features)), batch, sum(p.numel() for p in plain.parameters()),
                 mode + (" (default)" if mode == modes[0] else ""), f"{plain_ms:.2f}", f"{dp_ms:.2f}", f"{dp_ms / plain_ms:.2f}x")


def _step(model: Any, optimizer: Any, loss: Any, x: Any, y: Any) -> Callable[[], None]:
    def run() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss(model(x), y).backward()
        optimizer.step()
    return run


def _interleaved(steps: dict[str, Callable[[], None]], device: Any, repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in steps}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for _ in range(3):
            for run in steps.values():
                run()
        for _ in range(repeats):
            for name, run in steps.items():
                _sync(device)
                started = time.perf_counter()
                run()
                _sync(device)
                times[name].append(time.perf_counter() - started)
    return times


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _row(*cells: Any) -> None:
    print(" | ".join(str(c) for c in cells), flush=True)


if __name__ == "__main__":
    sys.exit(main())
