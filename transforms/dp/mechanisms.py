"""Noise from diffprivlib's mechanisms, one value at a time, with the scale and a 95% error bound.

Nothing here samples noise itself: :class:`NoiseSource` builds diffprivlib mechanisms (``Laplace``,
``Geometric``, ``GeometricTruncated``) with explicit sensitivities and hands them one exact value
each. diffprivlib's ``PrivacyLeakWarning`` is raised as an error while they run. A ``seed`` gives a
``numpy.random.RandomState`` for reproducible tests; without one diffprivlib draws from
``secrets.SystemRandom``.

The 95% bounds are exact for one mechanism: Laplace of scale ``b`` exceeds ``t`` with probability
``exp(-t/b)``; the two-sided geometric mechanism with ``a = exp(-epsilon/sensitivity)`` reaches
``|X| >= k`` (k >= 1) with probability ``2 a**k / (1 + a)``.

>>> source = NoiseSource(seed=7)
>>> noisy = source.laplace(100.0, epsilon=1.0, sensitivity=10.0)
>>> noisy.scale, round(noisy.error_95, 2), noisy.mechanism
(10.0, 29.96, 'Laplace')
>>> source.count(1000, epsilon=1.0).error_95
3
"""

from __future__ import annotations

import contextlib
import math
import sys
import warnings
from dataclasses import dataclass
from typing import Iterator

import numpy as np

# diffprivlib (and scikit-learn under it) is imported when noise is drawn, not when privprep starts.


@dataclass(frozen=True)
class Noisy:
    """A value with noise added: the mechanism, its noise scale (sensitivity / epsilon) and 95% bound."""

    value: float
    mechanism: str
    scale: float
    error_95: float
    epsilon: float
    sensitivity: float


@contextlib.contextmanager
def leak_warnings_are_errors() -> Iterator[None]:
    """Within the block, diffprivlib's ``PrivacyLeakWarning`` is raised instead of printed."""
    from diffprivlib.utils import PrivacyLeakWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", PrivacyLeakWarning)
        yield


def laplace_bound(scale: float, tail: float = 0.05) -> float:
    """``t`` with ``P(|Laplace(scale)| > t) = tail``."""
    return scale * math.log(1.0 / tail)


def geometric_bound(epsilon: float, sensitivity: int = 1, tail: float = 0.05) -> int:
    """The least ``k`` with ``P(|X| > k) <= tail`` for two-sided geometric noise."""
    alpha = math.exp(-epsilon / sensitivity)
    k = math.ceil(math.log(tail * (1 + alpha) / 2) / math.log(alpha)) - 1
    return max(k, 0)


def geometric_variance(epsilon: float, sensitivity: int = 1) -> float:
    """Variance ``2a / (1 - a)**2`` of two-sided geometric noise, ``a = exp(-epsilon/sensitivity)``."""
    alpha = math.exp(-epsilon / sensitivity)
    return 2 * alpha / (1 - alpha) ** 2


class NoiseSource:
    """Makes diffprivlib mechanisms that share one random state (seeded, or ``secrets`` when ``seed`` is None)."""

    def __init__(self, *, seed: int | None = None) -> None:
        self.seeded = seed is not None
        self._random_state = np.random.RandomState(seed) if seed is not None else None

    def laplace(self, value: float, *, epsilon: float, sensitivity: float, tail: float = 0.05) -> Noisy:
        """``value`` plus Laplace noise of scale ``sensitivity / epsilon``."""
        from diffprivlib.mechanisms import Laplace

        mech = Laplace(epsilon=epsilon, delta=0.0, sensitivity=float(sensitivity), random_state=self._random_state)
        with leak_warnings_are_errors():
            noisy = float(mech.randomise(float(value)))
        scale = sensitivity / epsilon
        return Noisy(noisy, "Laplace", scale, laplace_bound(scale, tail), epsilon, float(sensitivity))

    def count(self, value: int, *, epsilon: float, truncate: bool = True, tail: float = 0.05, sensitivity: int = 1) -> Noisy:
        """A count plus two-sided geometric noise; truncated at 0 as diffprivlib's histogram does.
        ``sensitivity``: how much one protected unit (a row, or a person's bounded rows) changes it."""
        noisy = int(self.counts(np.array([value]), epsilon=epsilon, truncate=truncate, sensitivity=sensitivity)[0])
        name = "GeometricTruncated" if truncate else "Geometric"
        return Noisy(noisy, name, sensitivity / epsilon, geometric_bound(epsilon, sensitivity, tail), epsilon, float(sensitivity))

    def counts(self, values: np.ndarray, *, epsilon: float, truncate: bool = True, sensitivity: int = 1) -> np.ndarray:
        """Noisy copies of disjoint counts, each with its own geometric draw (one unit changes them by
        at most ``sensitivity`` in total)."""
        from diffprivlib.mechanisms import Geometric, GeometricTruncated

        if truncate:
            mech: Geometric = GeometricTruncated(
                epsilon=epsilon, sensitivity=int(sensitivity), lower=0, upper=sys.maxsize, random_state=self._random_state
            )
        else:
            mech = Geometric(epsilon=epsilon, sensitivity=int(sensitivity), random_state=self._random_state)
        flat = np.asarray(values, dtype=np.int64).ravel()
        with leak_warnings_are_errors():
            out = np.fromiter((mech.randomise(int(v)) for v in flat), np.int64, flat.size)
        return out.reshape(np.shape(values))

__all__ = [
    "NoiseSource",
    "Noisy",
    "geometric_bound",
    "geometric_variance",
    "laplace_bound",
    "leak_warnings_are_errors",
]
