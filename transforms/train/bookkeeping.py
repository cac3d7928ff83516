"""Book-keeping ghost clipping (``grad_sample_mode="bk"``): DP-SGD's clipped gradient sum from one backward pass.

Opacus' ghost clipping (``grad_sample_mode="ghost"``) runs two backward passes per step: the first gives
each example's gradient norm (from the layers' inputs and output gradients, without materializing
per-example gradients), the second back-propagates the loss reweighted by each example's clipping factor
``c_i = min(1, C / ‖g_i‖)``. Book-keeping (Bu, Wang, Zha and Karypis, "Differentially private optimization on
large model at small cost", ICML 2023) keeps the inputs ``a`` and output gradients ``b`` of each layer from
the first pass and forms the clipped sum ``Σ_i c_i g_i`` from them directly: for a linear layer
``(c ⊙ b)ᵀ a``, for a convolution the weight gradient of the batch with ``b`` scaled by ``c`` (one
``conv2d_weight`` call). And since the weights' own gradients are then never needed from autograd, the one
backward pass asks only for the gradients of the layers' outputs: no weight gradient is computed twice.

What stays Opacus': the private module and its hooks (``GradSampleModuleFastGradientClipping``), the
per-example norms it collects (the norm samplers: Opacus' for ``nn.Linear``, :mod:`.ghost_conv` for
``nn.Conv2d``), the clipping factors (``get_clipping_coef``), and the optimizer that adds the Gaussian noise
and the accountant that counts the step (``DPOptimizerFastGradientClipping``). So σ, q, the steps and ε
are exactly those of ``ghost``; the clipped sum equals the two-pass one to float rounding
(``tests/transforms/train/test_bookkeeping.py`` checks both against a per-example autograd loop).

Supported: networks whose trainable layers are all ``nn.Linear`` and ``nn.Conv2d`` (zero padding given as
numbers); :func:`book_keeping_loss` returns ``None`` otherwise and the caller keeps Opacus' two-pass loss.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from .ghost_conv import conv2d_norm_sample


def supports(model: nn.Module) -> bool:
    """Whether every trainable layer of ``model`` is one book-keeping handles (Linear; Conv2d with numeric zero padding)."""
    from opacus.utils.module_utils import trainable_modules

    layers = [m for _, m in trainable_modules(model)]
    if not layers:
        return False
    for layer in layers:
        names = {name for name, p in layer.named_parameters(recurse=False) if p.requires_grad}
        if not names <= {"weight", "bias"}:
            return False
        if type(layer) is nn.Linear:
            continue
        if type(layer) is not nn.Conv2d or isinstance(layer.padding, str) or layer.padding_mode != "zeros":
            return False
    return True


def clipped_sum(layer: nn.Module, activations: torch.Tensor, backprops: torch.Tensor, factors: torch.Tensor) -> dict[Any, torch.Tensor]:
    """{parameter: Σ_i factors_i · (example i's gradient)} of ``layer`` from its input and per-example output gradients.

    >>> lin = nn.Linear(2, 1)
    >>> a, b = torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[1.0], [1.0]])
    >>> clipped_sum(lin, a, b, torch.tensor([1.0, 0.5]))[lin.weight].tolist()
    [[2.5, 4.0]]
    """
    scaled = backprops * factors.to(backprops.dtype).view(-1, *([1] * (backprops.dim() - 1)))
    out: dict[Any, torch.Tensor] = {}
    if isinstance(layer, nn.Conv2d):
        if layer.weight.requires_grad:
            out[layer.weight] = torch.nn.grad.conv2d_weight(
                activations.to(scaled.dtype), layer.weight.shape, scaled, stride=layer.stride, padding=layer.padding,
                dilation=layer.dilation, groups=layer.groups)
        if layer.bias is not None and layer.bias.requires_grad:
            out[layer.bias] = scaled.sum(dim=(0, 2, 3))
        return out
    flat_b = scaled.reshape(-1, scaled.shape[-1])
    if layer.weight.requires_grad:
        out[layer.weight] = flat_b.t() @ activations.to(scaled.dtype).reshape(-1, activations.shape[-1])
    if layer.bias is not None and layer.bias.requires_grad:
        out[layer.bias] = flat_b.sum(dim=0)
    return out


class BookKeepingLoss:
    """The loss a ghost-clipping private module trains with, doing book-keeping in ``backward()``.

    Built by :func:`book_keeping_loss`; ``loss = criterion(private(x), y); loss.backward(); optimizer.step()``.
    """

    def __init__(self, module: Any, criterion: nn.Module) -> None:
        from opacus.utils.module_utils import trainable_modules

        self.module = module
        self.criterion = criterion
        self.layers = [m for _, m in trainable_modules(module._module)]
        self.records: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
        self.targets: list[torch.Tensor] = []
        base = type(module).NORM_SAMPLERS
        module.NORM_SAMPLERS = {**base, nn.Conv2d: self._recording(conv2d_norm_sample),
                                nn.Linear: self._recording(base[nn.Linear])}
        for layer in self.layers:
            layer.register_forward_hook(self._keep)

    def _recording(self, sampler: Callable[..., dict[Any, torch.Tensor]]) -> Callable[..., dict[Any, torch.Tensor]]:
        def norms(layer: nn.Module, activations: list[torch.Tensor], backprops: torch.Tensor) -> dict[Any, torch.Tensor]:
            if layer in self.records:  # pragma: no cover - Opacus rejects parameter tying under ghost clipping
                raise NotImplementedError("book-keeping needs each layer to run once per step")
            self.records[layer] = (activations[0], backprops)
            return sampler(layer, activations, backprops)
        return norms

    def _keep(self, layer: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        """Remember the tensors whose gradients the backward pass needs: each layer's output (and inputs that need one)."""
        if not (layer.training and torch.is_grad_enabled() and self.module.hooks_enabled):
            return
        for tensor in (*inputs, output):
            if isinstance(tensor, torch.Tensor) and tensor.requires_grad:
                self.targets.append(tensor)

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> "_Loss":
        reduction = self.criterion.reduction
        self.criterion.reduction = "none"
        try:
            per_example = self.criterion(output, target)
        finally:
            self.criterion.reduction = reduction
        return _Loss(self, per_example)

    def backward(self, per_example: torch.Tensor) -> None:
        """One backward pass for the layers' output gradients (Opacus' hooks take the norms), then the clipped sums."""
        targets, self.targets = self.targets, []
        self.records.clear()
        torch.autograd.grad(per_example.mean(), targets, allow_unused=True)
        factors = self.module.get_clipping_coef()
        for layer in self.layers:
            if layer not in self.records:  # pragma: no cover - every trainable layer ran in the forward pass
                raise RuntimeError(f"book-keeping: no output gradient was recorded for {type(layer).__name__}")
            activations, backprops = self.records.pop(layer)
            for param, grad in clipped_sum(layer, activations, backprops, factors).items():
                param.grad = grad


class _Loss:
    """A per-example loss whose ``backward()`` does book-keeping; ``item()``/``detach()`` give the batch mean."""

    def __init__(self, owner: BookKeepingLoss, per_example: torch.Tensor) -> None:
        self.owner, self.per_example = owner, per_example

    def backward(self) -> None:
        self.owner.backward(self.per_example)

    def detach(self) -> torch.Tensor:
        return self.per_example.mean().detach()

    def item(self) -> float:
        return float(self.detach())


def book_keeping_loss(module: Any, criterion: nn.Module) -> BookKeepingLoss | None:
    """A :class:`BookKeepingLoss` for ``module`` (Opacus' ghost-clipping private module), or ``None`` if a layer is unsupported."""
    if not supports(module._module):
        return None
    return BookKeepingLoss(module, criterion)


__all__ = ["BookKeepingLoss", "book_keeping_loss", "clipped_sum", "supports"]
