"""Benchmark: federated DP training (FedAvg, DP-SGD at every site) beside centralized DP-SGD (not run in CI).

Two parts, each printing a table (``--part`` picks; default both):

* **digits** — scikit-learn's 1,797 unique 8×8 digits (the pixels of the sample data). Per seed, 20% of
  the rows are held out first (the test rows of every model in that seed); the other 80% are split over
  ``--sites`` sites, IID or label-skewed (Dirichlet α = ``--alpha``). Federated: ``--rounds`` rounds of
  ``--local-epochs`` epochs at each site, every site calibrated once for the whole training at ε.
  Centralized: the ``train`` stage's DP-SGD on all 80% at the same ε, δ and total epochs
  (rounds × local epochs), batch size and learning rate.
* **mnist** — the real MNIST (60,000 train / 10,000 test, IDX files from ``--mnist-dir``) split IID over
  3 and 10 sites at ε = 3, δ = 1e-5: test accuracy after each round and seconds per round
  (``--mnist-rows`` takes a random subset of the training rows when the full set would take too long).

The federated runs use :func:`privprep.transforms.federated.loop.federated_loop`, the plain-Python loop of
the algorithm that the Flower apps run (a test holds the two to the same weights); sites run one after
another in this process, so seconds per round are the sum over sites (a real federation runs them in
parallel, plus the network).

    python benchmarks/bench_federated.py [--part digits mnist] [--eps 3 8] [--seeds 0 1 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_MNIST = HERE.parents[1] / "shared" / "data" / "mnist"


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    import torch

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG.*")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s), python {platform.python_version()}, "
          f"{platform.machine()}; accountant {args.accountant}")
    if "digits" in args.part:
        bench_digits(args)
    if "mnist" in args.part:
        bench_mnist(args)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", nargs="+", default=["digits", "mnist"], choices=["digits", "mnist"])
    parser.add_argument("--eps", type=float, nargs="+", default=[3.0, 8.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--local-epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1.0)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--accountant", default="rdp", choices=["prv", "rdp"])
    parser.add_argument("--mnist-dir", type=Path, default=DEFAULT_MNIST)
    parser.add_argument("--mnist-sites", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--mnist-rows", type=int, default=None, help="a random subset of the MNIST training rows")
    parser.add_argument("--mnist-local-epochs", type=int, default=1)
    parser.add_argument("--mnist-batch-size", type=int, default=256)
    parser.add_argument("--mnist-learning-rate", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args(argv)


def _row(*cells: Any) -> None:
    widths = (12, 12, 8, 10, 10, 10, 10)
    print(" | ".join(str(c).ljust(w) for c, w in zip(cells, widths)))


def _sites(examples: Any, train_rows: np.ndarray, *, sites: int, partition: str, alpha: float, seed: int,
           delta: float) -> list[Any]:
    from privprep.pipeline.federated.split import assign_sites
    from privprep.transforms.federated.settings import SiteData

    site_of = assign_sites(len(train_rows), sites=sites, partition=partition, labels=examples.labels[train_rows],
                           alpha=alpha, seed=seed)
    empty = examples.take(np.array([], dtype=np.int64))
    return [SiteData(f"site-{i}", examples.take(train_rows[site_of == i]), empty, delta) for i in range(sites)]


def bench_digits(args: argparse.Namespace) -> None:
    import pyarrow as pa
    from sklearn.datasets import load_digits

    from privprep.transforms.federated.local import accuracy_of
    from privprep.transforms.federated.loop import federated_loop
    from privprep.transforms.federated.settings import FederatedSettings
    from privprep.transforms.train.data import examples_from_table, holdout_split
    from privprep.transforms.train.dpsgd import DpSgdSettings, train_dp

    digits = load_digits()
    table = pa.table({"image": pa.FixedSizeListArray.from_arrays(pa.array(digits.data.astype(np.uint8).ravel()), 64),
                      "label": pa.array(digits.target, pa.int64())})
    examples = examples_from_table(table, image="image", label="label", classes=list(range(10)), pixel_range=(0, 16))
    delta = 1e-4
    epochs = args.rounds * args.local_epochs
    print(f"\ndigits: 1,797 unique 8x8 images, 20% held out per seed; {args.sites} sites; {args.rounds} rounds x "
          f"{args.local_epochs} local epochs vs {epochs} centralized epochs; batch {args.batch_size}, lr {args.learning_rate}, "
          f"delta {delta:g}, label-skew alpha {args.alpha:g}")
    _row("setting", "partition", "epsilon", "seed", "accuracy", "eps spent", "seconds")
    results: dict[tuple[str, float], list[float]] = {}
    for eps in args.eps:
        for seed in args.seeds:
            train_rows, held_rows = holdout_split(len(examples), 0.2, np.random.default_rng(seed))
            held = examples.take(held_rows)
            started = time.perf_counter()
            outcome = train_dp(examples.take(train_rows), held, DpSgdSettings(
                target_epsilon=eps, delta=delta, epochs=epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                accountant=args.accountant, seed=seed), classes=10, threads=args.threads)
            _row("centralized", "-", eps, seed, f"{outcome.accuracy:.4f}", f"{outcome.epsilon:.3f}", f"{time.perf_counter() - started:.1f}")
            results.setdefault(("centralized", eps), []).append(outcome.accuracy)
            for partition in ("iid", "label-skew"):
                sites = _sites(examples, train_rows, sites=args.sites, partition=partition, alpha=args.alpha, seed=seed, delta=delta)
                settings = FederatedSettings(rounds=args.rounds, local_epochs=args.local_epochs, target_epsilon=eps,
                                             batch_size=args.batch_size, learning_rate=args.learning_rate,
                                             accountant=args.accountant, seed=seed)
                started = time.perf_counter()
                fed = federated_loop(sites, settings, classes=10)
                accuracy = accuracy_of(fed.weights, held, classes=10)
                spent = max(a.epsilon() for a in fed.accounts)
                _row("federated", partition, eps, seed, f"{accuracy:.4f}", f"{spent:.3f}", f"{time.perf_counter() - started:.1f}")
                results.setdefault((f"federated {partition}", eps), []).append(accuracy)
            sys.stdout.flush()
    print(f"\nsummary over seeds {args.seeds} (mean ± sd of held-out accuracy)")
    print("| ε | centralized | federated IID | federated label-skew |")
    print("|---|---|---|---|")
    for eps in args.eps:
        cells = [_mean_sd(results[(name, eps)]) for name in ("centralized", "federated iid", "federated label-skew")]
        print(f"| {eps:g} | " + " | ".join(cells) + " |")


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def bench_mnist(args: argparse.Namespace) -> None:
    from privprep.pipeline.files.mnist import load_mnist, mnist_table
    from privprep.transforms.federated import loop as L
    from privprep.transforms.federated.local import accuracy_of, local_round
    from privprep.transforms.federated.settings import FederatedSettings, round_seed
    from privprep.transforms.federated.fedavg import fedavg
    from privprep.transforms.federated.local import initial_weights
    from privprep.transforms.train.data import examples_from_table

    images, labels = load_mnist(args.mnist_dir, split="train")
    test_images, test_labels = load_mnist(args.mnist_dir, split="test")
    train = examples_from_table(mnist_table(images, labels), image="image", label="label", classes=list(range(10)))
    test = examples_from_table(mnist_table(test_images, test_labels), image="image", label="label", classes=list(range(10)))
    rows = np.arange(len(train))
    if args.mnist_rows:
        rows = np.sort(np.random.default_rng(0).permutation(len(train))[: args.mnist_rows])
    eps, delta, seed = 3.0, 1e-5, args.seeds[0]
    print(f"\nMNIST: {len(rows):,} training rows split IID, {len(test):,} test rows; epsilon {eps:g}, delta {delta:g}; "
          f"{args.rounds} rounds x {args.mnist_local_epochs} local epoch(s), batch {args.mnist_batch_size}, "
          f"lr {args.mnist_learning_rate}; seed {seed}")
    print("| sites | rows per site | σ | steps per site | accuracy after each round | final | s per round (all sites, sequential) | s per round per site |")
    print("|---|---|---|---|---|---|---|---|")
    for count in args.mnist_sites:
        sites = _sites(train, rows, sites=count, partition="iid", alpha=1.0, seed=seed, delta=delta)
        settings = FederatedSettings(rounds=args.rounds, local_epochs=args.mnist_local_epochs, target_epsilon=eps,
                                     batch_size=args.mnist_batch_size, learning_rate=args.mnist_learning_rate,
                                     accountant=args.accountant, seed=seed)
        weights = initial_weights((1, 28, 28), 10, seed)
        accounts = [L.calibrated_account(site, settings) for site in sites]
        accuracies, seconds = [], []
        for number in range(1, args.rounds + 1):
            started = time.perf_counter()
            updates = []
            for index, (site, (account, schedule)) in enumerate(zip(sites, accounts)):
                update = local_round(weights, site.train, settings, classes=10, noise_multiplier=account.noise_multiplier,
                                     steps=schedule.steps_per_round, seed=round_seed(seed, index, number))
                account.record_round(update.steps)
                updates.append(update)
            weights = fedavg([u.weights for u in updates], [u.num_examples for u in updates])
            seconds.append(time.perf_counter() - started)
            accuracies.append(accuracy_of(weights, test, classes=10))
            print(f"  {count} sites, round {number}: accuracy {accuracies[-1]:.4f}, {seconds[-1]:.1f} s, "
                  f"epsilon so far {max(a.epsilon() for a, _ in accounts):.3f}", flush=True)
        sigma = accounts[0][0].noise_multiplier
        steps = accounts[0][0].steps
        print(f"| {count} | {len(rows) // count:,} | {sigma:.3f} | {steps} | {' '.join(f'{a:.3f}' for a in accuracies)} | "
              f"**{accuracies[-1]:.3f}** | {statistics.mean(seconds):.1f} | {statistics.mean(seconds) / count:.1f} |", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
