"""Information loss of a generalization.

``nu_entropy`` (SPEC §5, ARX's non-uniform entropy, monotone variant) and ``loss`` (the generalization
intensity of Iyengar / ARX's Loss, normalized to [0, 1]) add up over quasi-identifiers and depend only
on each quasi-identifier's level, so a table of per-level terms prices every node.
``discernibility`` (Σ|E|² over kept classes + n per suppressed row) and ``aecs`` (rows kept per kept
class, divided by k) depend on the classes, so they are computed per evaluated node.

>>> import numpy as np
>>> value_counts = np.array([3.0, 1.0]); to_top = [np.array([0, 1]), np.array([0, 0])]
>>> [round(float(v), 4) + 0.0 for v in nu_entropy_terms(value_counts, to_top)]  # + 0.0: level 0 costs -0.0
[0.0, 3.2451]
"""

from __future__ import annotations

import numpy as np

SEPARABLE = ("nu_entropy", "loss")


def nu_entropy_terms(value_counts: np.ndarray, level_codes: list[np.ndarray]) -> list[float]:
    """``−Σ_v cnt(v) log2(cnt(v) / cnt(gen(v)))`` per level, over the values with rows."""
    present = value_counts > 0
    out = []
    for codes in level_codes:
        generalized = np.bincount(codes, weights=value_counts, minlength=int(codes.max(initial=-1)) + 1)
        ratio = value_counts[present] / generalized[codes[present]]
        out.append(float(-(value_counts[present] * np.log2(ratio)).sum()))
    return out


def loss_terms(value_counts: np.ndarray, level_codes: list[np.ndarray], n_rows: int, n_qis: int) -> list[float]:
    """Per level, ``Σ_rows (leaves(gen(v)) − 1) / (|D| − 1)`` divided by ``n·q`` (so the total is in [0, 1])."""
    present = value_counts > 0
    domain = int(present.sum())
    out = []
    for codes in level_codes:
        leaves = np.bincount(codes[present], minlength=int(codes.max(initial=-1)) + 1)
        share = (leaves[codes] - 1) / max(domain - 1, 1)
        out.append(float((value_counts * share).sum() / max(n_rows * n_qis, 1)))
    return out


def discernibility(sizes: np.ndarray, violating: np.ndarray, n_rows: int) -> float:
    kept = sizes[~violating]
    return float((kept.astype(float) ** 2).sum() + sizes[violating].sum() * n_rows)


def aecs(sizes: np.ndarray, violating: np.ndarray, k: int) -> float:
    kept = sizes[~violating & (sizes > 0)]
    return float(kept.sum() / len(kept) / max(k, 1)) if len(kept) else float("inf")
