"""Private partition selection: which group keys not declared in the config may be released.

Thresholded Laplace (Desfontaines, Voss, Gipson, Mandayam 2022; PipelineDP's and Tumult's key
selection): after bounding, one person is in at most ``L0`` keys. Each observed key's number of
people ``n`` gets Laplace noise of scale ``b = L0 / epsilon`` (diffprivlib's ``Laplace``, sensitivity
``L0``); the key is released when ``n + noise >= tau`` with

    tau = 1 + b * ln(L0 / (2 * delta))

so a key of one person alone is released with probability ``delta / L0`` and the ``L0`` keys one
person can add together with at most ``delta``: the selection is ``(epsilon, delta)``-DP. A key with
``n`` people is released with probability ``1 - exp(-(n - tau) / b) / 2`` when ``n >= tau``, else
``exp(-(tau - n) / b) / 2`` (:func:`release_probability`). Only the set of released keys is
released, never the noisy counts; keys not released appear nowhere.

>>> round(laplace_threshold(epsilon=1.0, delta=1e-6, max_partitions=1), 3)
14.122
>>> f"{release_probability(1, epsilon=1.0, delta=1e-6, max_partitions=1):.3g}"
'1e-06'
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .mechanisms import leak_warnings_are_errors


def laplace_threshold(*, epsilon: float, delta: float, max_partitions: int) -> float:
    """The threshold ``tau`` on a noisy count of people of the thresholded Laplace mechanism."""
    scale = max_partitions / epsilon
    return 1.0 + scale * math.log(max_partitions / (2.0 * delta))


def release_probability(people: float, *, epsilon: float, delta: float, max_partitions: int) -> float:
    """The chance a key of ``people`` people is released (the Laplace CDF above the threshold)."""
    scale = max_partitions / epsilon
    gap = laplace_threshold(epsilon=epsilon, delta=delta, max_partitions=max_partitions) - people
    return 0.5 * math.exp(-gap / scale) if gap >= 0 else 1.0 - 0.5 * math.exp(gap / scale)


@dataclass(frozen=True)
class Selection:
    """The outcome of one selection: which keys (by index into the candidates) were released."""

    released: np.ndarray     # boolean, one per candidate key
    threshold: float
    noise_scale: float
    epsilon: float
    delta: float
    max_partitions: int

    def describe(self) -> dict[str, float | int | str]:
        return {"mechanism": "Laplace thresholding", "epsilon": self.epsilon, "delta": self.delta,
                "threshold": self.threshold, "noise_scale": self.noise_scale,
                "max_partitions_contributed": self.max_partitions, "keys_released": int(self.released.sum())}


def select_partitions(people: np.ndarray, *, epsilon: float, delta: float, max_partitions: int,
                      random_state: np.random.RandomState | None = None) -> Selection:
    """Release each candidate key whose noisy number of people reaches the threshold."""
    from diffprivlib.mechanisms import Laplace

    mech = Laplace(epsilon=epsilon, delta=0.0, sensitivity=float(max_partitions), random_state=random_state)
    tau = laplace_threshold(epsilon=epsilon, delta=delta, max_partitions=max_partitions)
    flat = np.asarray(people, dtype=np.float64)
    with leak_warnings_are_errors():
        noisy = np.fromiter((mech.randomise(float(v)) for v in flat), np.float64, flat.size)
    return Selection(noisy >= tau, tau, max_partitions / epsilon, epsilon, delta, max_partitions)


__all__ = ["Selection", "laplace_threshold", "release_probability", "select_partitions"]
