"""FedAvg (McMahan et al. 2017): the new global model is the mean of the sites' models, each weighted by
the number of examples it trained on.

Weights are ``{name: array}`` mappings in the order of a torch ``state_dict``. The mean is accumulated in
float64 and cast back to each array's dtype, so the result does not depend on the order of the sites
beyond the final rounding.

>>> import numpy as np
>>> a = {"w": np.array([1.0, 2.0], np.float32), "b": np.array([0.0], np.float32)}
>>> b = {"w": np.array([3.0, 4.0], np.float32), "b": np.array([4.0], np.float32)}
>>> out = fedavg([a, b], [1, 3])
>>> out["w"].tolist(), out["b"].tolist(), out["w"].dtype.name
([2.5, 3.5], [3.0], 'float32')
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

Weights = dict[str, np.ndarray]


def fedavg(updates: Sequence[Mapping[str, np.ndarray]], weights: Sequence[float]) -> Weights:
    """The weighted mean of ``updates`` (same names, shapes and dtypes), weights ``>= 0`` with a positive sum."""
    if not updates or len(updates) != len(weights):
        raise ValueError("fedavg needs one weight per update and at least one update")
    factors = np.asarray(weights, dtype=np.float64)
    if not np.all(np.isfinite(factors)) or np.any(factors < 0) or factors.sum() <= 0:
        raise ValueError("fedavg weights must be finite, >= 0 and not all 0")
    factors = factors / factors.sum()
    names = list(updates[0])
    for update in updates[1:]:
        if list(update) != names:
            raise ValueError("every update must hold the same arrays, in the same order")
    result: Weights = {}
    for name in names:
        first = np.asarray(updates[0][name])
        total = np.zeros(first.shape, dtype=np.float64)
        for update, factor in zip(updates, factors):
            array = np.asarray(update[name])
            if array.shape != first.shape:
                raise ValueError(f"array '{name}' has shape {array.shape} at one site and {first.shape} at another")
            total += factor * array.astype(np.float64)
        result[name] = total.astype(first.dtype)
    return result


__all__ = ["Weights", "fedavg"]
