"""The DP-SGD settings of one training (``train``) or of every site of a federated one, and the defaults
chosen from the data when the config leaves a setting out.

One settings object for both: :class:`DpSgdSettings` (the ``train`` stage, the benchmark) and its
subclass :class:`~privprep.transforms.federated.settings.FederatedSettings` (rounds and local epochs
added). Their constructors keep the values as given; the rules are written once, in the config's
params model (:class:`privprep.schemas.stages.DpSgdParams`), and :meth:`DpSgdSettings.validate`
applies those same rules to settings built in Python.

:func:`choose_settings` fills what was left out (``None``) from the number of training rows, the
target ε and the model, and says why, for the model card:

* **batch size** (expected, Poisson): the power of two nearest ``rows / 16`` (about 16 batches per
  epoch), between 16 and 256 for the pixel CNN, 64 and 4096 for the ScatterNet models. The noise
  added to the mean gradient has standard deviation σ·C/B: larger batches drown less signal, while
  the noise multiplier σ for a given ε grows only slowly with the sampling rate.
* **epochs**: 20 for the CNN (10 on more than 10,000 rows at ε < 2: the step count the budget can
  afford shrinks with ε); for the ScatterNet models 40 at ε ≥ 2 and 20 below.
* **learning rate**: 1.0 for the CNN (0.5 above 10,000 rows), 4.0 with momentum 0.9 for the linear
  ScatterNet head (measured on MNIST, docs/training.md), 1.0 with momentum 0.9 for the ScatterNet CNN
  (measured on the 8×8 sample only; not yet tuned on MNIST).
* **clipping norm** C: 1.0 for the CNN, 0.1 for the ScatterNet models (Tramèr & Boneh 2021).

>>> values, why = choose_settings(rows=3200, target_epsilon=3.0, model="cnn", given={})
>>> values["batch_size"], values["epochs"], values["learning_rate"], values["max_grad_norm"], values["momentum"]
(256, 20, 1.0, 1.0, 0.0)
>>> choose_settings(rows=48000, target_epsilon=3.0, model="scatter_linear", given={"epochs": 5})[0]["epochs"]
5
>>> DpSgdSettings(target_epsilon=0, delta=1e-5).validate()
Traceback (most recent call last):
...
ValueError: target_epsilon: Input should be greater than 0
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from privprep.schemas.stages import ACCOUNTANTS, MODELS

#: Per-example clipping modes (``grad_sample_mode``): ``bk`` (book-keeping, the default) and Opacus' own.
GRAD_SAMPLE_MODES = ("bk", "ghost", "ew", "hooks")
#: The settings :func:`choose_settings` fills when left out.
CHOSEN = ("batch_size", "epochs", "learning_rate", "max_grad_norm", "momentum")
_LARGE_ROWS = 10_000


@dataclass(frozen=True, kw_only=True)
class DpSgdSettings:
    """Everything that fixes a DP-SGD run besides the data (values as given; see :meth:`validate`)."""

    target_epsilon: float
    delta: float | None = None
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 1.0
    max_grad_norm: float = 1.0
    momentum: float = 0.0
    accountant: str = "prv"
    seed: int | None = None
    model: str = "cnn"
    grad_sample_mode: str | None = None
    physical_batch_size: int | None = None
    #: For the model card: why each setting that the config left out got its value (:func:`choose_settings`).
    reasons: dict[str, str] | None = field(default=None, compare=False)

    def validate(self) -> "DpSgdSettings":
        """Raise ``ValueError`` (one line per problem) where a value breaks the config's rules; return self."""
        from pydantic import ValidationError

        from privprep.schemas.stages import DpSgdParams

        names = set(DpSgdParams.model_fields)
        try:
            DpSgdParams.model_validate({k: v for k, v in asdict(self).items() if k in names})
        except ValidationError as exc:
            raise ValueError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
        if self.physical_batch_size is not None and self.physical_batch_size < 1:
            raise ValueError("physical_batch_size must be >= 1")
        if self.grad_sample_mode is not None and self.grad_sample_mode not in GRAD_SAMPLE_MODES:
            raise ValueError(f"grad_sample_mode must be one of {', '.join(GRAD_SAMPLE_MODES)}")
        return self

    def replace(self, **changes: Any) -> "DpSgdSettings":
        """A copy with ``changes``."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return type(self)(**{**values, **changes})


def _power_of_two(value: float, low: int, high: int) -> int:
    return int(min(high, max(low, 2 ** round(math.log2(max(value, 1.0))))))


#: The largest ScatterNet feature array (bytes, float32) for which a left-out ``model`` is ``scatter_linear``.
SCATTER_FEATURE_BYTES = 4 << 30
_SCATTER_MIN_SIDE = 8


def choose_model(*, shape: tuple[int, ...], rows: int, given: str | None, scatter_available: bool = True) -> tuple[str, str | None]:
    """``given``, or the model for ``rows`` images of ``shape`` (C, H, W) when it is left out, and why.

    ``scatter_linear`` (ScatterNet features + a linear layer: on MNIST 98.3% at epsilon 1 and 98.7% at 3, on the
    8x8 sample digits 98.3% at 3, the most accurate measured; docs/training.md) for images of at least 8x8
    pixels whose features (computed once, held in memory) fit in :data:`SCATTER_FEATURE_BYTES`; else ``cnn``.

    >>> choose_model(shape=(1, 28, 28), rows=60_000, given=None)[0]
    'scatter_linear'
    >>> choose_model(shape=(1, 4, 4), rows=500, given=None)[0], choose_model(shape=(1, 28, 28), rows=60_000, given="cnn")
    ('cnn', ('cnn', None))
    """
    if given is not None:
        return given, None
    from .scatter import scatter_shape

    c, h, w = (int(v) for v in shape)
    if min(h, w) < _SCATTER_MIN_SIDE:
        return "cnn", f"cnn: images of {h}x{w} pixels are below the {_SCATTER_MIN_SIDE}x{_SCATTER_MIN_SIDE} the ScatterNet models need"
    if not scatter_available:
        return "cnn", "cnn: kymatio (the ScatterNet models' transform, in the train extra) is not installed"
    f = scatter_shape((c, h, w))
    size = int(rows) * f[0] * f[1] * f[2] * 4
    if size > SCATTER_FEATURE_BYTES:
        return "cnn", (f"cnn: the ScatterNet features of {rows:,} rows would take {size / 2**30:.1f} GiB in memory "
                       f"(more than {SCATTER_FEATURE_BYTES / 2**30:.0f} GiB)")
    return "scatter_linear", (f"scatter_linear: ScatterNet features ({f[0]}x{f[1]}x{f[2]}, computed once, "
                              f"{size / 2**30:.2f} GiB) and a linear layer, the most accurate model measured at every epsilon "
                              "(docs/training.md)")


def choose_settings(*, rows: int, target_epsilon: float, model: str, given: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The values of :data:`CHOSEN` (``given`` where not None, else chosen from ``rows``, ``target_epsilon``
    and ``model``) and, for each chosen one, why."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}")
    scatter = model != "cnn"
    low, high = (64, 4096) if scatter else (16, 256)
    auto: dict[str, tuple[Any, str]] = {
        "batch_size": (_power_of_two(rows / 16, low, high),
                       f"the power of two nearest rows/16 = {rows / 16:.0f} (about 16 Poisson batches per epoch), "
                       f"kept within {low}..{high} for {model}: larger batches carry less noise per example"),
    }
    if scatter:
        auto["epochs"] = (40, "40 at epsilon >= 2 for the ScatterNet models") if target_epsilon >= 2 else \
            (20, "20 at epsilon < 2 for the ScatterNet models: fewer steps leave less noise per step")
        batch = auto["batch_size"][0]
        if model == "scatter_linear":
            auto["learning_rate"] = (4.0, "4 with momentum 0.9 for scatter_linear (measured on MNIST and the 8x8 sample, "
                                          "docs/training.md)")
        else:  # the learning rate grows with the batch (Tramer & Boneh: 0.5 per 512), within 1..4
            lr = float(min(4.0, max(1.0, batch / 1024)))
            auto["learning_rate"] = (lr, f"batch/1024 = {batch / 1024:g} kept within 1..4, with momentum 0.9, for scatter_cnn "
                                         "(on MNIST at batch 4096 and epsilon 3: 98.7% with 4 against 98.3% with 1; "
                                         "1 on the 8x8 sample at batch 256; docs/training.md)")
        auto["max_grad_norm"] = (0.1, "0.1 for the ScatterNet models (Tramer & Boneh 2021)")
        auto["momentum"] = (0.9, "0.9 for the ScatterNet models (Tramer & Boneh 2021)")
    else:
        large = rows > _LARGE_ROWS
        auto["epochs"] = (10, f"10 on more than {_LARGE_ROWS:,} rows at epsilon < 2") if large and target_epsilon < 2 else \
            (20, "20 for the CNN")
        auto["learning_rate"] = (0.5, f"0.5 on more than {_LARGE_ROWS:,} rows") if large else (1.0, f"1.0 on up to {_LARGE_ROWS:,} rows")
        auto["max_grad_norm"] = (1.0, "1.0 for the CNN")
        auto["momentum"] = (0.0, "plain SGD for the CNN")
    values: dict[str, Any] = {}
    why: dict[str, str] = {}
    for name in CHOSEN:
        if given.get(name) is not None:
            values[name] = given[name]
        else:
            values[name], why[name] = auto[name]
    return values, why


__all__ = ["ACCOUNTANTS", "CHOSEN", "DpSgdSettings", "MODELS", "choose_settings"]
