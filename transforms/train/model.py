"""The networks the ``train`` stage fits: a small tanh CNN on pixels, or a linear model / small CNN on
ScatterNet features; no BatchNorm; every one checked by Opacus' validator.

``model: cnn`` (:class:`SmallCNN`):

Images of at least 16×16 pixels get the MNIST network of Papernot et al. (2021) that Tramèr & Boneh
(2021) train end to end with DP-SGD (conv 16@8×8/2, max-pool 2/1, conv 32@4×4/2, max-pool 2/1,
dense 32, dense classes; about 26,000 parameters at 28×28). Smaller images (the 8×8 sample digits)
get 3×3 convolutions of the same widths. Tanh instead of ReLU: bounded activations keep clipped
gradients informative (Papernot et al., "Tempered sigmoid activations for deep learning with DP").
BatchNorm mixes the examples of a batch, which per-example clipping forbids; so there is none.
Each image is first standardized on its own (zero mean, unit variance over its pixels: a
``GroupNorm`` with one group and no parameters), so the network trains alike whatever pixel range
was declared (the 8×8 sample digits hold 0…16, a uint8 column without ``bounds`` is scaled from
0…255): a per-record transform, which costs no privacy. Cards of ``cnn-tanh/1`` (before it) reload
without it.

``model: scatter_linear`` and ``model: scatter_cnn`` (:class:`ScatterNet`): the fixed scattering
transform of :mod:`.scatter` (computed once per dataset, no parameters), group normalization of its
channels (per example, no parameters), then a linear layer, or a small tanh CNN, as in Tramèr &
Boneh (2021). Only the head is trained, on precomputed features; the saved model holds the head and
recomputes the transform in front of it.

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

ARCHITECTURE = "cnn-tanh/2"
"""Name and version of the architecture, recorded in the model card; :func:`build_cnn` rebuilds it."""
UNSTANDARDIZED = "cnn-tanh/1"
MODELS = ("cnn", "scatter_linear", "scatter_cnn")
SCATTER_ARCHITECTURES = {"scatter_linear": "scatter-linear/1", "scatter_cnn": "scatter-cnn/1"}

_LARGE = 16  # images with both sides at least this many pixels get the strided 8×8 network


class SmallCNN(nn.Module):
    """Two convolutions and two dense layers with tanh; ``spec`` rebuilds it (see :func:`build_cnn`)."""

    def __init__(self, *, shape: tuple[int, int, int], classes: int, standardize: bool = True) -> None:
        super().__init__()
        channels, height, width = shape
        architecture = ARCHITECTURE if standardize else UNSTANDARDIZED
        self.spec: dict[str, Any] = {"architecture": architecture, "input_shape": list(shape), "outputs": classes}
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
        if standardize:
            features.insert(0, nn.GroupNorm(1, channels, affine=False))
        self.features = nn.Sequential(*features)
        with torch.no_grad():
            flat = self.features(torch.zeros(1, *shape)).numel()
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(flat, 32), nn.Tanh(), nn.Linear(32, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _groups(channels: int) -> int:
    """Groups of the scattering channels' normalization: 27 for MNIST's 81 (Tramèr & Boneh), else a divisor near C/3."""
    target = max(1, channels // 3)
    return max(g for g in range(1, target + 1) if channels % g == 0)


class ScatterHead(nn.Module):
    """What DP-SGD trains on scattering features (C, H, W): group normalization, then linear or a small tanh CNN."""

    def __init__(self, *, features: tuple[int, int, int], classes: int, kind: str) -> None:
        super().__init__()
        channels, height, width = features
        layers: list[nn.Module] = [nn.GroupNorm(_groups(channels), channels, affine=False)]
        if kind == "scatter_cnn":
            pool = min(height, width) >= 3
            layers += [nn.Conv2d(channels, 32, kernel_size=3, padding=1), nn.Tanh(), *([nn.MaxPool2d(2, stride=1)] if pool else []),
                       nn.Conv2d(32, 32, kernel_size=3, padding=1), nn.Tanh(), *([nn.MaxPool2d(2, stride=1)] if pool else [])]
        body = nn.Sequential(*layers)
        with torch.no_grad():
            flat = body(torch.zeros(1, *features)).numel()
        tail: list[nn.Module] = [nn.Flatten()]
        tail += [nn.Linear(flat, 32), nn.Tanh(), nn.Linear(32, classes)] if kind == "scatter_cnn" else [nn.Linear(flat, classes)]
        self.body, self.tail = body, nn.Sequential(*tail)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.body(x))


class ScatterNet(nn.Module):
    """The scattering transform (fixed, not a parameter) in front of a :class:`ScatterHead`; classifies raw images."""

    def __init__(self, *, shape: tuple[int, int, int], classes: int, kind: str) -> None:
        super().__init__()
        from .scatter import scatter_scale, scatter_shape

        self.scale = scatter_scale(shape)
        self.feature_shape = scatter_shape(shape, self.scale)
        self.head = ScatterHead(features=self.feature_shape, classes=classes, kind=kind)
        self.spec: dict[str, Any] = {"architecture": SCATTER_ARCHITECTURES[kind], "input_shape": list(shape), "outputs": classes,
                                     "scattering": {"J": self.scale, "L": 8, "features": list(self.feature_shape),
                                                    "library": "kymatio"}}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from .scatter import scatter_batch

        with torch.no_grad():
            features = scatter_batch(x, self.scale)
        return self.head(features)


def trainable(model: nn.Module) -> nn.Module:
    """The part of ``model`` that DP-SGD trains: the head of a :class:`ScatterNet`, else the whole network."""
    return model.head if isinstance(model, ScatterNet) else model


def training_inputs(model: nn.Module, images: Any, *, device: Any = "cpu") -> Any:
    """What :func:`trainable` takes: the images, or their scattering features (computed once, here)."""
    if isinstance(model, ScatterNet):
        from .scatter import scatter_features

        return scatter_features(images, scale=model.scale, device=device)
    return images


def _validated(model: nn.Module) -> nn.Module:
    from opacus.validators import ModuleValidator

    problems = ModuleValidator.validate(trainable(model), strict=False)
    if problems:
        raise ValueError("the model is not DP-SGD compatible: " + "; ".join(str(p) for p in problems))
    return model


def build_cnn(shape: tuple[int, int, int] | list[int], *, classes: int, standardize: bool = True) -> SmallCNN:
    """A fresh :class:`SmallCNN` for images of ``shape`` (channels, height, width), validated for DP-SGD.

    Raises ``ValueError`` (listing every problem) if Opacus' ``ModuleValidator`` rejects it.
    """
    c, h, w = (int(v) for v in shape)
    if min(c, h, w) < 1 or classes < 2:
        raise ValueError("a CNN needs positive image dimensions and at least 2 classes")
    return _validated(SmallCNN(shape=(c, h, w), classes=int(classes), standardize=standardize))  # type: ignore[return-value]


def build_model(kind: str, shape: tuple[int, int, int] | list[int], *, classes: int) -> nn.Module:
    """A fresh network of ``kind`` (one of :data:`MODELS`) for images of ``shape``, validated for DP-SGD."""
    if kind == "cnn":
        return build_cnn(shape, classes=classes)
    if kind not in SCATTER_ARCHITECTURES:
        raise ValueError(f"model must be one of {', '.join(MODELS)}")
    c, h, w = (int(v) for v in shape)
    if min(c, h, w) < 1 or classes < 2:
        raise ValueError("a model needs positive image dimensions and at least 2 classes")
    return _validated(ScatterNet(shape=(c, h, w), classes=int(classes), kind=kind))


def model_from_spec(spec: dict[str, Any], *, classes: int) -> nn.Module:
    """Rebuild the network a model card's ``model`` entry describes (every architecture version)."""
    architecture = spec.get("architecture", UNSTANDARDIZED)
    shape = tuple(int(v) for v in spec["input_shape"])
    kinds = {v: k for k, v in SCATTER_ARCHITECTURES.items()}
    if architecture in kinds:
        return ScatterNet(shape=shape, classes=classes, kind=kinds[architecture])  # type: ignore[arg-type]
    return SmallCNN(shape=shape, classes=classes, standardize=architecture != UNSTANDARDIZED)  # type: ignore[arg-type]


__all__ = ["ARCHITECTURE", "MODELS", "ScatterHead", "ScatterNet", "SmallCNN", "build_cnn", "build_model", "model_from_spec",
           "trainable", "training_inputs"]
