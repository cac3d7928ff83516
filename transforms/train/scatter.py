"""ScatterNet features: a fixed (untrained, data-independent) wavelet scattering transform, computed once per dataset.

Tramèr & Boneh ("Differentially private learning needs better features", ICLR 2021) train DP-SGD on the
scattering transform of Oyallon & Mallat instead of the pixels: the features are fixed wavelets, so
computing them costs no privacy budget, and a linear model or a small CNN on them reaches 98.7% on
MNIST at ε = 3. The transform here is kymatio's ``Scattering2D`` with ``L = 8`` angles and ``J`` scales
(``J = 2`` for images of at least 16×16 pixels, else ``J = 1``): a (C, H, W) image becomes
``C·K`` channels of (⌊H/2^J⌋, ⌊W/2^J⌋), ``K = 1 + 8J + 32J(J-1)`` (81 channels of 7×7 for MNIST).

The features of a whole dataset are computed **once** before training (:func:`scatter_features`, in
chunks, no gradient), never per step; the trained model wraps the same transform in front of its head
so that :func:`~privprep.transforms.train.card.load_model` classifies raw images.

kymatio 0.3 imports scipy's ``sph_harm`` in ``kymatio.torch`` (for its 3-D transform), which scipy
1.17 removed; the 2-D frontend is imported from its own module, which needs no scipy.

Needs torch and kymatio (the ``train`` extra).

>>> scatter_scale((1, 28, 28)), scatter_shape((1, 28, 28))
(2, (81, 7, 7))
>>> scatter_scale((1, 8, 8)), scatter_shape((1, 8, 8)), scatter_shape((1, 9, 9))
(1, (9, 4, 4), (9, 4, 4))
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

ANGLES = 8
CHUNK = 1024
_LARGE = 16


def scatter_scale(shape: tuple[int, int, int] | list[int]) -> int:
    """The number of scales J for images of ``shape``: 2 when both sides have at least 16 pixels, else 1."""
    return 2 if min(int(shape[1]), int(shape[2])) >= _LARGE else 1


def scatter_shape(shape: tuple[int, int, int] | list[int], scale: int | None = None) -> tuple[int, int, int]:
    """(channels, height, width) of the scattering features of images of ``shape``."""
    j = scatter_scale(shape) if scale is None else int(scale)
    per_channel = 1 + ANGLES * j + ANGLES * ANGLES * j * (j - 1) // 2
    return int(shape[0]) * per_channel, int(shape[1]) // 2**j, int(shape[2]) // 2**j  # kymatio's output: floor(side / 2^J)


@functools.lru_cache(maxsize=8)
def scattering(height: int, width: int, scale: int) -> Any:
    """kymatio's 2-D scattering (torch frontend) for ``height``×``width`` images at ``scale`` scales (cached)."""
    try:
        from kymatio.scattering2d.frontend.torch_frontend import ScatteringTorch2D
    except ImportError as exc:  # pragma: no cover - without the extra
        raise ImportError("the scatter_* models need kymatio: pip install 'kymatio>=0.3,<0.4'") from exc
    return ScatteringTorch2D(J=int(scale), shape=(int(height), int(width)), L=ANGLES)


def scatter_batch(images: Any, scale: int) -> Any:
    """Scattering features of a torch batch (n, C, H, W) -> (n, C·K, H', W'), on the batch's device."""
    transform = scattering(int(images.shape[-2]), int(images.shape[-1]), int(scale)).to(images.device)
    out = transform(images.contiguous())  # (n, C, K, H', W')
    return out.reshape(out.shape[0], -1, out.shape[-2], out.shape[-1])


def scatter_features(images: np.ndarray, *, scale: int | None = None, device: Any = "cpu", chunk: int = CHUNK) -> np.ndarray:
    """Scattering features of a whole dataset (float32 (n, C, H, W) -> (n, C·K, H', W')), computed once, in chunks."""
    import torch

    j = scatter_scale(images.shape[1:]) if scale is None else int(scale)
    shape = scatter_shape(images.shape[1:], j)
    out = np.empty((len(images), *shape), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(images), chunk):
            batch = torch.from_numpy(np.ascontiguousarray(images[start:start + chunk])).to(device)
            out[start:start + len(batch)] = scatter_batch(batch, j).cpu().numpy()
    return out


__all__ = ["ANGLES", "scatter_batch", "scatter_features", "scatter_scale", "scatter_shape", "scattering"]
