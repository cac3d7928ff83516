"""Fixtures of the DP-SGD tests: each example's gradient by plain autograd, the reference for clipping."""

from __future__ import annotations

from typing import Any, Callable

import pytest


@pytest.fixture
def per_example(torch: Any) -> Callable[[Any, Any, Any], list[list[Any]]]:
    """``per_example(model, x, y)``: each example's gradient of every parameter, one example at a time (cross-entropy)."""

    def grads(model: Any, x: Any, y: Any) -> list[list[Any]]:
        out = []
        for i in range(len(x)):
            model.zero_grad()
            torch.nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
            out.append([p.grad.detach().clone() for p in model.parameters()])
        return out

    return grads
