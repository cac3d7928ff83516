"""Per-example gradient norms of ``nn.Conv2d`` for ghost clipping (``grad_sample_mode`` ``ghost`` and ``bk``).

Opacus 1.6 has no ghost norm for convolutions: it materializes each example's gradient with its own
strided unfold (a slow copy on CPU), stores it and then takes the norm. :func:`conv2d_norm_sample`
computes the norm alone, by the cheaper of two exact routes:

* **Gram** (ghost norm, Li et al. 2022 / Bu et al. 2023 for convolutions): an example's weight gradient
  is ``G = Σ_t b_t a_tᵀ`` over the T output positions, with ``a_t`` the input patch and ``b_t`` the output
  gradient at t, so ``‖G‖² = Σ_{t,s} (a_t·a_s)(b_t·b_s)``. The patch products ``a_t·a_s`` are sums over
  the kernel offsets of the Gram matrix of the (padded) input positions, so no patch matrix is built:
  cost ≈ P²·C + T²·(O + K) per example (P padded input positions, C input channels, O output channels,
  K kernel positions). Wins for many input channels on small maps (the ScatterNet heads: 81 channels of 7×7).
* **direct**: im2col (``torch.nn.functional.unfold``) and a batched product give each example's
  gradient, of which only the norm is kept: cost ≈ T·C·K·O. Wins for few input channels and large
  kernels (the pixel CNN's first layer: 1 channel, 8×8 kernel).

Same values as Opacus' per-example gradients, to float rounding (``tests/transforms/train/test_ghost_conv.py``);
``bench_train.py --part speed`` measures the step time. :func:`use_on` sets it on one private
module (nothing changes for other Opacus users in the process).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def _supported(layer: nn.Conv2d) -> bool:
    return layer.groups == 1 and not isinstance(layer.padding, str) and layer.padding_mode == "zeros"


def gram_is_cheaper(layer: nn.Conv2d, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> bool:
    """Whether the Gram route costs fewer operations than the direct one for ``layer`` on these shapes.

    >>> gram_is_cheaper(nn.Conv2d(81, 32, 3, padding=1), (1, 81, 7, 7), (1, 32, 7, 7))
    True
    >>> gram_is_cheaper(nn.Conv2d(1, 16, 8, stride=2, padding=2), (1, 1, 28, 28), (1, 16, 13, 13))
    False
    """
    c, h, w = input_shape[1:]
    positions = (h + 2 * layer.padding[0]) * (w + 2 * layer.padding[1])
    outputs = output_shape[-2] * output_shape[-1]
    kernel = layer.kernel_size[0] * layer.kernel_size[1]
    gram = positions * positions * c + outputs * outputs * (layer.out_channels + kernel)
    return gram < outputs * c * kernel * layer.out_channels


def _padded(x: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    if not (ph or pw):
        return x
    n, c, h, w = x.shape
    out = x.new_zeros(n, c, h + 2 * ph, w + 2 * pw)  # faster than F.pad on CPU for these small maps
    out[:, :, ph:ph + h, pw:pw + w] = x
    return out


def _offset_sum(gram: torch.Tensor, kernel: int, dilation: int, stride: int, out: int, dims: tuple[int, int]) -> torch.Tensor:
    """Σ over the kernel offsets k of ``gram`` at (stride·t + dilation·k, stride·s + dilation·k) on the paired ``dims``."""
    total = None
    for k in range(kernel):
        index: list[Any] = [slice(None)] * gram.dim()
        index[dims[0]] = index[dims[1]] = slice(k * dilation, k * dilation + stride * (out - 1) + 1, stride)
        part = gram[tuple(index)]
        total = part.clone() if total is None else total.add_(part)
    assert total is not None
    return total


def _gram_weight_norm(layer: nn.Conv2d, x: torch.Tensor, g: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
    n, c = x.shape[:2]
    xp = _padded(x, int(layer.padding[0]), int(layer.padding[1]))
    hp, wp = xp.shape[-2:]
    flat = xp.reshape(n, c, hp * wp)
    positions = torch.bmm(flat.transpose(1, 2), flat).view(n, hp, wp, hp, wp)  # input position Gram
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel_size, layer.stride, layer.dilation
    patches = _offset_sum(_offset_sum(positions, kw, dw, sw, out_hw[1], (2, 4)), kh, dh, sh, out_hw[0], (1, 3))
    outputs = torch.bmm(g.transpose(1, 2), g)  # (n, T, T)
    return (patches.reshape(n, -1) * outputs.reshape(n, -1)).sum(dim=1).clamp(min=0).sqrt()


def conv2d_norm_sample(layer: nn.Conv2d, activations: list[torch.Tensor], backprops: torch.Tensor) -> dict[Any, torch.Tensor]:
    """{parameter: per-example gradient norm (n,)} of ``layer`` from its input and output gradients.

    >>> conv = nn.Conv2d(1, 1, kernel_size=1, bias=False)
    >>> x, g = torch.ones(2, 1, 2, 2), torch.full((2, 1, 2, 2), 0.5)  # each example's weight gradient: 4 x 0.5
    >>> conv2d_norm_sample(conv, [x], g)[conv.weight].tolist()
    [2.0, 2.0]
    """
    x = activations[0].to(backprops.dtype)
    n = x.shape[0]
    if not _supported(layer) or n == 0:
        from opacus.grad_sample.conv import compute_conv_grad_sample

        return {p: g.reshape(len(g), -1).norm(2, dim=1) for p, g in compute_conv_grad_sample(layer, activations, backprops).items()}
    out_hw = (int(backprops.shape[-2]), int(backprops.shape[-1]))
    g = backprops.reshape(n, layer.out_channels, -1)
    ret: dict[Any, torch.Tensor] = {}
    if layer.weight.requires_grad:
        if gram_is_cheaper(layer, tuple(x.shape), tuple(backprops.shape)):
            ret[layer.weight] = _gram_weight_norm(layer, x, g, out_hw)
        else:
            unfolded = nn.functional.unfold(x, kernel_size=layer.kernel_size, padding=layer.padding,
                                            stride=layer.stride, dilation=layer.dilation)
            ret[layer.weight] = torch.bmm(g, unfolded.transpose(1, 2)).reshape(n, -1).norm(2, dim=1)
    if layer.bias is not None and layer.bias.requires_grad:
        ret[layer.bias] = g.sum(dim=2).norm(2, dim=1)
    return ret


def use_on(module: Any) -> None:
    """Make ``module`` (an Opacus ghost-clipping module) use :func:`conv2d_norm_sample`; other modules are untouched."""
    module.NORM_SAMPLERS = {**type(module).NORM_SAMPLERS, nn.Conv2d: conv2d_norm_sample}


__all__ = ["conv2d_norm_sample", "gram_is_cheaper", "use_on"]
