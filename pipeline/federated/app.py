"""The Flower apps: a ``ServerApp`` (FedAvg, optionally with client-level DP) and a ``ClientApp`` (a site).

The same handlers run under both Flower engines:

* **Simulation Engine** — :func:`make_client_app` and :func:`make_server_app` build apps bound to the
  sites and settings of a ``privprep federate simulate`` run (:mod:`.simulate`); a virtual node's
  ``partition-id`` picks its site.
* **Deployment Engine** — the module-level :data:`server_app` and :data:`client_app`, named in a Flower
  app's ``pyproject.toml`` (``privprep.pipeline.federated.app:server_app`` / ``:client_app``). A
  SuperNode is started with ``--node-config "site-dir='…' partition-id=0"``: ``site-dir`` is a
  directory written by ``privprep federate prepare`` (its ``site.json`` and sanitized ``data/``). The
  ServerApp reads its settings from the run config and writes the global model to ``output``.

Between rounds a site keeps its held-out split seed and its privacy account in ``context.state``
(Flower keeps a node's context across rounds in both engines), so its ε is cumulative.

Needs flwr (``pip install 'privprep[federated]'``), torch and opacus.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg

from privprep.transforms.federated.settings import FederatedSettings

from .site import SiteSpec, SiteWorker

log = logging.getLogger(__name__)
STATE_KEY = "privprep-site"
SITE_KEYS = ("epsilon", "delta", "noise-multiplier", "sample-rate", "steps", "rounds", "accuracy", "num-examples",
             "holdout-rows", "rows")


# -- settings on the wire --------------------------------------------------------------------------------------


def settings_record(settings: FederatedSettings, *, classes: int, threads: int) -> ConfigRecord:
    """The federation-wide settings every site receives with each round's weights."""
    values: dict[str, Any] = {
        "rounds": settings.rounds, "local-epochs": settings.local_epochs, "target-epsilon": settings.target_epsilon,
        "batch-size": settings.batch_size, "learning-rate": settings.learning_rate, "max-grad-norm": settings.max_grad_norm,
        "momentum": settings.momentum, "accountant": settings.accountant, "classes": classes, "threads": threads,
    }
    if settings.seed is not None:
        values["seed"] = int(settings.seed)
    return ConfigRecord(values)


def settings_from(config: Any) -> tuple[FederatedSettings, int, int]:
    """(settings, number of classes, threads) from a round's config record."""
    settings = FederatedSettings(
        rounds=int(config["rounds"]), local_epochs=int(config["local-epochs"]), target_epsilon=float(config["target-epsilon"]),
        batch_size=int(config["batch-size"]), learning_rate=float(config["learning-rate"]),
        max_grad_norm=float(config["max-grad-norm"]), momentum=float(config["momentum"]), accountant=str(config["accountant"]),
        seed=int(config["seed"]) if "seed" in config else None,
    )
    return settings, int(config["classes"]), int(config["threads"])


def to_record(weights: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({name: Array(np.ascontiguousarray(value)) for name, value in weights.items()})


def from_record(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {name: np.array(array.numpy(), copy=True) for name, array in record.items()}


# -- the site (ClientApp) ----------------------------------------------------------------------------------------


def _state(context: Context) -> dict[str, Any]:
    record = context.state.config_records.get(STATE_KEY)
    return dict(record) if record is not None else {}


def _handle_train(worker: SiteWorker, msg: Message, context: Context) -> Message:
    settings, classes, threads = settings_from(msg.content["config"])
    worker.threads = threads
    weights = from_record(msg.content["arrays"])
    update, state, metrics = worker.train(weights, settings, int(msg.content["config"]["server-round"]), _state(context),
                                          classes=classes)
    context.state.config_records[STATE_KEY] = ConfigRecord(state)
    content = RecordDict({"arrays": to_record(update.weights), "metrics": MetricRecord(metrics)})
    return Message(content=content, reply_to=msg)


def _handle_evaluate(worker: SiteWorker, msg: Message, context: Context) -> Message:
    settings, classes, threads = settings_from(msg.content["config"])
    worker.threads = threads
    metrics = worker.evaluate(from_record(msg.content["arrays"]), settings, _state(context), classes=classes)
    return Message(content=RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)


def _attach(app: ClientApp, worker_of: Callable[[Context], SiteWorker]) -> ClientApp:
    @app.train()
    def train(msg: Message, context: Context) -> Message:
        return _handle_train(worker_of(context), msg, context)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        return _handle_evaluate(worker_of(context), msg, context)

    return app


def make_client_app(specs: Sequence[SiteSpec]) -> ClientApp:
    """A ClientApp for the Simulation Engine: virtual node ``partition-id`` i is site ``specs[i]``."""
    specs = list(specs)
    workers: dict[int, SiteWorker] = {}

    def worker_of(context: Context) -> SiteWorker:
        index = int(context.node_config["partition-id"])
        if index not in workers:
            workers[index] = SiteWorker(specs[index])
        return workers[index]

    return _attach(ClientApp(), worker_of)


def _deployed_worker(context: Context) -> SiteWorker:
    site_dir = context.node_config.get("site-dir")
    if not site_dir:
        raise ValueError("start the SuperNode with --node-config \"site-dir='<dir written by privprep federate prepare>'\"")
    spec = SiteSpec.read(str(site_dir))
    if "partition-id" in context.node_config:  # the seed of a seeded run is split per site by this index
        spec = SiteSpec(**{**spec.__dict__, "index": int(context.node_config["partition-id"])})
    return SiteWorker(spec)


#: The ClientApp of the Deployment Engine (``privprep.pipeline.federated.app:client_app``).
client_app = _attach(ClientApp(), _deployed_worker)


# -- the server (ServerApp) ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientDp:
    """Server-side client-level DP: clip each site's update to ``clip`` and add Gaussian noise σ·clip/sites to the mean."""

    epsilon: float
    delta: float
    clip: float


@dataclass(frozen=True)
class ServerPlan:
    """What the server needs: settings, the model's input shape and classes, the number of sites, client-level DP."""

    settings: FederatedSettings
    shape: tuple[int, int, int]
    classes: int
    sites: int
    threads: int = 1
    client_dp: ClientDp | None = None


@dataclass
class ServerOutcome:
    """The global weights after the last round and what the sites reported each round."""

    weights: dict[str, np.ndarray]
    train_metrics: dict[int, dict[str, float]] = field(default_factory=dict)
    evaluate_metrics: dict[int, dict[str, float]] = field(default_factory=dict)
    client_dp: dict[str, Any] | None = None


def per_site_metrics(records: list[RecordDict], weighting_key: str) -> MetricRecord:
    """Aggregated reply metrics: ``accuracy`` weighted by each site's examples, and every site's own figures as
    ``<key>@<site index>``."""
    values: dict[str, float] = {}
    weights, accuracies = [], []
    for record in records:
        metrics = next(iter(record.metric_records.values()))
        index = int(metrics["site-index"])
        for key in SITE_KEYS:
            if key in metrics:
                values[f"{key}@{index}"] = float(metrics[key])  # type: ignore[arg-type]
        if "accuracy" in metrics:
            weights.append(float(metrics["num-examples"]))  # type: ignore[arg-type]
            accuracies.append(float(metrics["accuracy"]))  # type: ignore[arg-type]
        values[weighting_key] = values.get(weighting_key, 0.0) + float(metrics.get(weighting_key, 0.0))  # type: ignore[arg-type]
    if weights and sum(weights) > 0:
        values["accuracy"] = math.fsum(a * w for a, w in zip(accuracies, weights)) / math.fsum(weights)
    return MetricRecord(values)


def client_noise_multiplier(epsilon: float, delta: float, *, rounds: int, sites: int) -> float:
    """σ of server-side client-level DP reaching ``epsilon`` after ``rounds`` releases, by Flower's RDP accountant
    (every site in every round: no amplification by sampling)."""
    lo, hi = 1e-3, 1e4
    for _ in range(80):
        mid = math.sqrt(lo * hi)
        if _client_accountant(delta, sites, mid, rounds).get_epsilon(delta) > epsilon:
            lo = mid
        else:
            hi = mid
    return hi


def _client_accountant(delta: float, sites: int, sigma: float | None = None, releases: int = 0) -> Any:
    from flwr.serverapp import GaussianPrivacyEvent, NeighboringRelation, PrivacyConfig, SamplingMethod
    from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

    accountant = RdpAccountant(PrivacyConfig(target_delta=delta, population_size=sites,
                                             neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
                                             sampling_method=SamplingMethod.NO_AMPLIFICATION))
    if releases:
        accountant.compose(GaussianPrivacyEvent(noise_multiplier=sigma, sample_size=sites, population_size=sites), releases)
    return accountant


class FederationStopped(Exception):
    """The run was stopped (e.g. Ctrl-C in a simulation) while the server waited for replies."""


class SiteOrderedGrid:
    """A Grid whose replies come back sorted by the sites' ``site-index`` (then node id), not by arrival: FedAvg then
    adds the sites up in a fixed order, so a seeded run is reproducible and matches the plain loop bit for bit.
    With a ``stop`` event, waiting for replies ends as soon as it is set (the server thread then exits)."""

    def __init__(self, grid: Grid, stop: threading.Event | None = None) -> None:
        self._grid = grid
        self._stop = stop

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> list[Message]:
        ids = set(self._grid.push_messages(messages))
        end = time.monotonic() + (timeout if timeout is not None else math.inf)
        replies: list[Message] = []
        while ids and time.monotonic() < end:
            if self._stop is not None and self._stop.is_set():
                raise FederationStopped("the federated run was stopped")
            received = list(self._grid.pull_messages(ids))
            replies.extend(received)
            ids.difference_update(m.metadata.reply_to_message_id for m in received)
            if ids:
                time.sleep(0.1)
        return sorted(replies, key=_reply_order)


def _reply_order(msg: Message) -> tuple[float, int]:
    if msg.has_error():
        return (math.inf, msg.metadata.src_node_id)
    metrics = next(iter(msg.content.metric_records.values()), None)
    index = metrics.get("site-index") if metrics is not None else None
    return (float(index) if isinstance(index, (int, float)) else math.inf, msg.metadata.src_node_id)


def run_server(grid: Grid, plan: ServerPlan, *, stop: threading.Event | None = None) -> ServerOutcome:
    """FedAvg over ``plan.sites`` sites for ``plan.settings.rounds`` rounds from the seeded initial weights."""
    from privprep.transforms.federated.local import initial_weights

    settings = plan.settings
    weighting = "unit-weight" if plan.client_dp else "num-examples"  # Flower's accounted DP wrapper needs equal weights
    strategy: Any = FedAvg(
        fraction_train=1.0, fraction_evaluate=1.0, min_train_nodes=plan.sites, min_evaluate_nodes=plan.sites,
        min_available_nodes=plan.sites, weighted_by_key=weighting,
        train_metrics_aggr_fn=per_site_metrics, evaluate_metrics_aggr_fn=per_site_metrics,
    )
    dp_summary = None
    if plan.client_dp is not None:
        dp = plan.client_dp
        sigma = client_noise_multiplier(dp.epsilon, dp.delta, rounds=settings.rounds, sites=plan.sites)
        accountant = _client_accountant(dp.delta, plan.sites)
        strategy = DifferentialPrivacyServerSideFixedClipping(strategy, sigma, dp.clip, plan.sites, accountant=accountant)
        dp_summary = {"target_epsilon": dp.epsilon, "delta": dp.delta, "clipping_norm": dp.clip, "noise_multiplier": sigma,
                      "noise_stddev": sigma * dp.clip / plan.sites, "accountant": "rdp (Flower)", "unit": "one site's whole data"}
    seed = settings.seed
    weights = initial_weights(plan.shape, plan.classes, seed)
    config = settings_record(settings, classes=plan.classes, threads=plan.threads)
    result = strategy.start(grid=SiteOrderedGrid(grid, stop), initial_arrays=to_record(weights), num_rounds=settings.rounds,
                            train_config=config, evaluate_config=ConfigRecord(dict(config)))
    if dp_summary is not None:
        spent = strategy.privacy_spent()
        dp_summary["epsilon"] = float(spent.epsilon) if spent is not None else None
    return ServerOutcome(
        weights=from_record(result.arrays) if result.arrays is not None else weights,
        train_metrics={int(r): dict(m) for r, m in result.train_metrics_clientapp.items()},
        evaluate_metrics={int(r): dict(m) for r, m in result.evaluate_metrics_clientapp.items()},
        client_dp=dp_summary,
    )


def make_server_app(plan: ServerPlan, outcome: list[ServerOutcome], stop: threading.Event | None = None) -> ServerApp:
    """A ServerApp for the Simulation Engine that appends its :class:`ServerOutcome` to ``outcome`` (and gives up
    waiting for replies once ``stop`` is set)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        outcome.append(run_server(grid, plan, stop=stop))

    return app


def plan_from_run_config(run_config: dict[str, Any]) -> ServerPlan:
    """The server's plan from a Deployment-Engine run config (``[tool.flwr.app.config]`` and ``--run-config``)."""
    seed = int(run_config.get("seed", -1))
    settings = FederatedSettings(
        rounds=int(run_config["rounds"]), local_epochs=int(run_config["local-epochs"]),
        target_epsilon=float(run_config["target-epsilon"]), batch_size=int(run_config["batch-size"]),
        learning_rate=float(run_config["learning-rate"]), max_grad_norm=float(run_config["max-grad-norm"]),
        accountant=str(run_config.get("accountant", "prv")), seed=seed if seed >= 0 else None,
    ).validate()
    shape = tuple(int(v) for v in str(run_config["image-shape"]).split(","))
    client_eps = float(run_config.get("client-epsilon", 0.0))
    client_dp = ClientDp(client_eps, float(run_config.get("client-delta", 1e-5)), float(run_config.get("client-clip", 1.0))) \
        if client_eps > 0 else None
    return ServerPlan(settings=settings, shape=shape, classes=int(run_config["classes"]),  # type: ignore[arg-type]
                      sites=int(run_config["sites"]), threads=int(run_config.get("threads", 1)), client_dp=client_dp)


#: The ServerApp of the Deployment Engine (``privprep.pipeline.federated.app:server_app``).
server_app = ServerApp()


@server_app.main()
def _deployed_main(grid: Grid, context: Context) -> None:
    from .results import write_deployment_model

    plan = plan_from_run_config(dict(context.run_config))
    outcome = run_server(grid, plan)
    write_deployment_model(Path(str(context.run_config["output"])), plan, outcome)


__all__ = [
    "ClientDp", "ServerOutcome", "ServerPlan", "client_app", "client_noise_multiplier", "make_client_app",
    "make_server_app", "per_site_metrics", "plan_from_run_config", "run_server", "server_app", "settings_from",
    "settings_record",
]
