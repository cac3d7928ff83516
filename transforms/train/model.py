"""The small CNN the ``train`` stage fits: tanh activations, no BatchNorm, checked by Opacus' validator.

Images of at least 16×16 pixels get the MNIST network of Papernot et al. (2021) that Tramèr & Boneh
(2021) train end to end with DP-SGD (conv 16@8×8/2, max-pool 2/1, conv 32@4×4/2, max-pool 2/1,
dense 32, dense classes; about 26,000 parameters at 28×28). Smaller images (the 8×8 sample digits)
get 3×3 convolutions of the same widths. Tanh instead of ReLU: bounded activations keep clipped
gradients informative (Papernot et al., "Tempered sigmoid activations for deep learning with DP").
BatchNorm mixes the examples of a batch, which per-example clipping forbids; so there is none.

Needs torch (the ``train`` extra): this module is imported only when a model is built.

>>> net = build_cnn((1, 28, 28), classes=10)  # doctest: +SKIP
>>> sum(p.numel() for p in net.parameters())  # doctest: +SKIP
26010
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn


def _import_opacus() -> None:
    """Import opacus once, undoing the ``logging.basicConfig(level=INFO)`` it runs at import time
    (which would add a second handler to the root logger and repeat every log line)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        import opacus  # noqa: F401
        import opacus.utils.module_utils  # noqa: F401  (the module that configures logging)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


_import_opacus()

ARCHITECTURE = "cnn-tanh/1"
"""Name and version of the architecture, recorded in the model card; :func:`build_cnn` rebuilds it."""

_LARGE = 16  # images with both sides at least this many pixels get the strided 8×8 network


class SmallCNN(nn.Module):
    """Two convolutions and two dense layers with tanh; ``spec`` rebuilds it (see :func:`build_cnn`)."""

    def __init__(self, *, shape: tuple[int, int, int], classes: int) -> None:
        super().__init__()
        channels, height, width = shape
        self.spec: dict[str, Any] = {"architecture": ARCHITECTURE, "input_shape": list(shape), "outputs": classes}
        if min(height, width) >= _LARGE:
            features = [
                nn.Conv2d(channels, 16, kernel_size=8, stride=2, padding=2), nn.Tanh(), nn.MaxPool2d(2, stride=1),
                nn.Conv2d(16, 32, kernel_size=4, stride=2), nn.Tanh(), nn.MaxPool2d(2, stride=1),
            ]
        else:
            features = [
                nn.Conv2d(channels, 16, kernel_size=3, padding=1), nn.Tanh(),
                *([nn.MaxPool2d(2)] if min(height, width) >= 4 else []),
                nn.Conv2d(16, 32, kernel_size=3, padding=1), nn.Tanh(),
                *([nn.MaxPool2d(2, stride=1)] if min(height, width) >= 4 else []),
            ]
        self.features = nn.Sequential(*features)
        with torch.no_grad():
            flat = self.features(torch.zeros(1, *shape)).numel()
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(flat, 32), nn.Tanh(), nn.Linear(32, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def build_cnn(shape: tuple[int, int, int] | list[int], *, classes: int) -> SmallCNN:
    """A fresh :class:`SmallCNN` for images of ``shape`` (channels, height, width), validated for DP-SGD.

    Raises ``ValueError`` (listing every problem) if Opacus' ``ModuleValidator`` rejects it.
    """
    from opacus.validators import ModuleValidator

    c, h, w = (int(v) for v in shape)
    if min(c, h, w) < 1 or classes < 2:
        raise ValueError("a CNN needs positive image dimensions and at least 2 classes")
    model = SmallCNN(shape=(c, h, w), classes=int(classes))
    problems = ModuleValidator.validate(model, strict=False)
    if problems:
        raise ValueError("the model is not DP-SGD compatible: " + "; ".join(str(p) for p in problems))
    return model


__all__ = ["ARCHITECTURE", "SmallCNN", "build_cnn"]
