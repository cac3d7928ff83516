"""The ``model/`` folder: ``weights.pt`` (a torch state dict) and ``model_card.json``, and reading them back.

The card holds what SPEC §4 names (``epsilon``, ``delta``, ``accountant``, ``noise_multiplier``,
``max_grad_norm``, ``sample_rate``, ``epochs``, ``steps``, ``rows``, ``accuracy``) plus the seed, the
library versions, the architecture (enough to rebuild the network) and how δ was chosen. The same
keys are the ``train`` entry of ``report.json``.

>>> card = model_card_keys()
>>> card[:4]
['epsilon', 'delta', 'accountant', 'noise_multiplier']
>>> model = load_model("out/sample/model")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

CARD_NAME = "model_card.json"
WEIGHTS_NAME = "weights.pt"
FORMAT = "privprep-model/1"
SPEC_KEYS = (
    "epsilon", "delta", "accountant", "noise_multiplier", "max_grad_norm", "sample_rate",
    "epochs", "steps", "rows", "accuracy",
)


def model_card_keys() -> list[str]:
    """The keys SPEC §4 requires in the card and in the report's ``train`` entry."""
    return list(SPEC_KEYS)


def library_versions() -> dict[str, str | None]:
    """Versions of the libraries that shaped the model and its accounting."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("privprep", "torch", "opacus", "numpy", "pyarrow", "kymatio"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def write_model_dir(folder: Path, *, state_dict: Any, card: dict[str, Any]) -> Path:
    """Write ``weights.pt`` and ``model_card.json`` into ``folder`` (each under a temporary name, then renamed)."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".weights-", delete=False) as handle:
        torch.save(state_dict, handle)
    os.replace(handle.name, folder / WEIGHTS_NAME)
    text = json.dumps({"format": FORMAT, **card, "weights": WEIGHTS_NAME}, indent=2) + "\n"
    with tempfile.NamedTemporaryFile("w", dir=folder, prefix=".card-", suffix=".json", delete=False, encoding="utf-8") as handle:
        handle.write(text)
    os.replace(handle.name, folder / CARD_NAME)
    return folder


def read_card(folder: Path | str) -> dict[str, Any]:
    """The model card of a ``model/`` folder."""
    return json.loads((Path(folder) / CARD_NAME).read_text(encoding="utf-8"))


def load_model(folder: Path | str, *, device: str = "cpu") -> Any:
    """Rebuild the trained network of a ``model/`` folder (in eval mode); needs torch."""
    import torch

    from .model import model_from_spec

    card = read_card(folder)
    model = model_from_spec(card["model"], classes=len(card["classes"]))
    state = torch.load(Path(folder) / card.get("weights", WEIGHTS_NAME), map_location=device, weights_only=True)
    model.load_state_dict(state)
    return model.to(device).eval()


__all__ = ["CARD_NAME", "WEIGHTS_NAME", "library_versions", "load_model", "model_card_keys", "read_card", "write_model_dir"]
