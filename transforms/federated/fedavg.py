"""FedAvg (McMahan et al. 2017): the new global model is the mean of the sites' models, each weighted by
the number of examples it trained on.

Weights are ``{name: array}`` mappings in the order of a torch ``state_dict``. The arithmetic is Flower's
``FedAvg`` exactly (factors ``w / sum(w)`` in Python floats, products and sums in each array's own dtype,
in the order of the sites), so that the plain loop and a Flower run that aggregates the sites in the same
order (:mod:`privprep.pipeline.federated.app` sorts the replies by site) give bit-identical weights.

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
    weights = [float(w) for w in weights]
    if not all(np.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise ValueError("fedavg weights must be finite, >= 0 and not all 0")
    total = sum(weights)
    factors = [w / total for w in weights]
    names = list(updates[0])
    for update in updates[1:]:
        if list(update) != names:
            raise ValueError("every update must hold the same arrays, in the same order")
    result: Weights = {}
    for name in names:
        first = np.asarray(updates[0][name])
        mean = first * factors[0]
        for update, factor in zip(updates[1:], factors[1:]):
            array = np.asarray(update[name])
            if array.shape != first.shape:
                raise ValueError(f"array '{name}' has shape {array.shape} at one site and {first.shape} at another")
            mean += array * factor
        result[name] = np.asarray(mean, dtype=first.dtype)
    return result


__all__ = ["Weights", "fedavg"]
