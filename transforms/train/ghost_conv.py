"""Per-example gradient norms of ``nn.Conv2d`` for Opacus' ghost clipping (``grad_sample_mode="ghost"``).

Opacus 1.6 has no ghost norm for convolutions: it materializes each example's gradient with its own
strided unfold (a slow copy on CPU), stores it and then takes the norm. This norm sampler unfolds
with ``torch.nn.functional.unfold`` (im2col), contracts to each example's weight gradient and keeps
only its norm, which is all ghost clipping needs (the clipped sum comes from the second backward
pass). Same values, to float rounding; ``bench_train.py --part speed`` measures the step time.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

_REGISTERED = False


def conv2d_norm_sample(layer: nn.Conv2d, activations: list[torch.Tensor], backprops: torch.Tensor) -> dict[Any, torch.Tensor]:
    """{parameter: per-example gradient norm (n,)} of ``layer`` from its input and output gradients.

    >>> conv = nn.Conv2d(1, 1, kernel_size=1, bias=False)
    >>> x, g = torch.ones(2, 1, 2, 2), torch.full((2, 1, 2, 2), 0.5)  # each example's weight gradient: 4 x 0.5
    >>> conv2d_norm_sample(conv, [x], g)[conv.weight].tolist()
    [2.0, 2.0]
    """
    x = activations[0].to(backprops.dtype)
    n = x.shape[0]
    if layer.groups != 1 or isinstance(layer.padding, str) or layer.padding_mode != "zeros" or n == 0:
        from opacus.grad_sample.conv import compute_conv_grad_sample

        return {p: g.reshape(len(g), -1).norm(2, dim=1) for p, g in compute_conv_grad_sample(layer, activations, backprops).items()}
    g = backprops.reshape(n, layer.out_channels, -1)
    ret: dict[Any, torch.Tensor] = {}
    if layer.weight.requires_grad:
        unfolded = nn.functional.unfold(x, kernel_size=layer.kernel_size, padding=layer.padding,
                                        stride=layer.stride, dilation=layer.dilation)
        ret[layer.weight] = torch.bmm(g, unfolded.transpose(1, 2)).reshape(n, -1).norm(2, dim=1)
    if layer.bias is not None and layer.bias.requires_grad:
        ret[layer.bias] = g.sum(dim=2).norm(2, dim=1)
    return ret


def register() -> None:
    """Make :func:`conv2d_norm_sample` Opacus' ghost-clipping norm for ``nn.Conv2d`` (idempotent)."""
    global _REGISTERED
    if not _REGISTERED:
        from opacus.grad_sample import register_norm_sampler

        register_norm_sampler(nn.Conv2d)(conv2d_norm_sample)
        _REGISTERED = True


__all__ = ["conv2d_norm_sample", "register"]
