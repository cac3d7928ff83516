"""What a federated training leaves: the model card (``model/model_card.json``), the weights, and the
``federated_train`` entry of ``report.json``.

The card holds, per site, the ε it spent (cumulative over every round, by its own accountant), its δ,
the rounds it took part in, its rows and the global model's accuracy on its held-out rows; and for
the federation: the sites, rounds, the global accuracy (all held-out rows of all sites together), the
guarantee's unit and what the guarantee does not hide.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from privprep.transforms.train.card import library_versions, write_model_dir

PRIVACY_UNIT = "one training record of one site"
NOT_HIDDEN = [
    "which sites took part in the training",
    "how many rows each site holds (train_rows, holdout_rows and rows are exact counts)",
    "the per-site held-out accuracies (exact counts over each site's held-out rows, not differentially private)",
]
ACCURACY_NOTE = ("global accuracy: share of all sites' held-out rows that the final global model classifies correctly; "
                 "an exact count, not differentially private")


def site_figures(outcome: Any, sites: int) -> list[dict[str, Any]]:
    """Per site (by index): the last round's reply figures and its ε after each round."""
    last_train = outcome.train_metrics[max(outcome.train_metrics)] if outcome.train_metrics else {}
    last_eval = outcome.evaluate_metrics[max(outcome.evaluate_metrics)] if outcome.evaluate_metrics else {}
    figures = []
    for index in range(sites):
        def get(metrics: dict[str, float], key: str) -> float | None:
            value = metrics.get(f"{key}@{index}")
            return float(value) if value is not None else None

        figures.append({
            "epsilon": get(last_train, "epsilon"), "delta": get(last_train, "delta"),
            "rounds": int(get(last_train, "rounds") or 0), "accuracy": get(last_eval, "accuracy"),
            "noise_multiplier": get(last_train, "noise-multiplier"), "sample_rate": get(last_train, "sample-rate"),
            "steps": int(get(last_train, "steps") or 0), "train_rows": int(get(last_train, "num-examples") or 0),
            "holdout_rows": int(get(last_eval, "num-examples") or 0),
            "epsilon_by_round": [float(m[f"epsilon@{index}"]) for _, m in sorted(outcome.train_metrics.items())
                                 if f"epsilon@{index}" in m],
        })
    return figures


def history(outcome: Any) -> list[dict[str, Any]]:
    """Per round: the global accuracy after it and the largest cumulative site ε so far."""
    rows = []
    for number in sorted(outcome.evaluate_metrics):
        train = outcome.train_metrics.get(number, {})
        eps = [v for k, v in train.items() if k.startswith("epsilon@")]
        rows.append({"round": number, "accuracy": outcome.evaluate_metrics[number].get("accuracy"),
                     "epsilon": max(eps) if eps else None})
    return rows


def federated_card(plan: Any, outcome: Any, *, names: Sequence[str], classes: list[Any], extra: dict[str, Any] | None = None
                   ) -> dict[str, Any]:
    """The model card of a federated training (also the ``federated_train`` entry of ``report.json``)."""
    s = plan.settings
    per_site = [{"site": name, **fig} for name, fig in zip(names, site_figures(outcome, len(names)))]
    hist = history(outcome)
    epsilons = [p["epsilon"] for p in per_site if p["epsilon"] is not None]
    deltas = [p["delta"] for p in per_site if p["delta"] is not None]
    rows = [p["train_rows"] + p["holdout_rows"] for p in per_site]
    card = {
        "kind": "federated",
        "epsilon": max(epsilons) if epsilons else None,
        "delta": max(deltas) if deltas else None,
        "accountant": s.accountant,
        "rounds": s.rounds,
        "local_epochs": s.local_epochs,
        "accuracy": hist[-1]["accuracy"] if hist else None,
        "sites": per_site,
        "site_count": len(names),
        "rows": int(sum(rows)),
        "strategy": "fedavg (weighted by training rows)" if plan.client_dp is None else "fedavg (uniform), server-side client-level DP",
        "target_epsilon": s.target_epsilon,
        "batch_size": s.batch_size,
        "learning_rate": s.learning_rate,
        "max_grad_norm": s.max_grad_norm,
        "momentum": s.momentum,
        "sampling": "poisson",
        "seed": s.seed,
        "privacy_unit": PRIVACY_UNIT,
        "guarantee": ("each site's updates are (epsilon, delta)-DP for that site's records (its own epsilon and delta, "
                      "cumulative over all rounds); the global model is a function of the updates, so it is DP for every "
                      "record of every site with the largest site epsilon and delta"),
        "not_hidden": list(NOT_HIDDEN),
        "accuracy_note": ACCURACY_NOTE,
        "client_dp": outcome.client_dp,
        "classes": list(classes),
        "model": {"architecture": "privprep-small-cnn", "input_shape": list(plan.shape), "outputs": plan.classes},
        "history": hist,
        "versions": {**library_versions(), "flwr": _version("flwr")},
    }
    from privprep.transforms.train.model import ARCHITECTURE

    card["model"]["architecture"] = ARCHITECTURE
    if s.reasons:
        card["chosen_settings"] = {name: {"value": getattr(s, name), "source": "default", "reason": reason}
                                   for name, reason in s.reasons.items() if hasattr(s, name)}
    card.update(extra or {})
    if not math.isfinite(card["accuracy"] or 0.0):
        card["accuracy"] = None
    from privprep.transforms.train.stage import accuracy_warnings

    held = [p["holdout_rows"] for p in per_site]
    card["warnings"] = [] if card["accuracy"] is None else [w.replace("train:", "federated training:", 1) for w in accuracy_warnings(
        card["accuracy"], np.zeros(0, dtype=np.int64), classes=len(classes), epsilon=s.target_epsilon,
        rows=int(sum(rows) - sum(held)), model=s.model)]
    return card


def write_model(folder: Path, plan: Any, outcome: Any, card: dict[str, Any]) -> Path:
    """``weights.pt`` (a torch state dict) and ``model_card.json``; :func:`privprep.transforms.train.load_model` reads them."""
    import torch

    from privprep.transforms.federated.local import build_model

    model = build_model(outcome.weights, plan.shape, plan.classes)
    card = {**card, "model": {**card["model"], "parameters": int(sum(t.numel() for t in model.parameters()))}}
    state = {name: torch.from_numpy(value.copy()) for name, value in outcome.weights.items()}
    return write_model_dir(folder, state_dict=state, card=card)


def write_deployment_model(folder: Path, plan: Any, outcome: Any) -> Path:
    """The Deployment Engine's ServerApp: the global model and a card with the figures the sites reported."""
    names = [f"site-{i}" for i in range(plan.sites)]
    classes = list(range(plan.classes))
    card = federated_card(plan, outcome, names=names, classes=classes, extra={"engine": "flower-deployment"})
    return write_model(folder, plan, outcome, card)


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


__all__ = ["NOT_HIDDEN", "PRIVACY_UNIT", "federated_card", "history", "site_figures", "write_deployment_model", "write_model"]
