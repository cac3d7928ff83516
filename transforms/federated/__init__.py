"""Federated DP training as plain functions: no Flower, no files, no engine.

The Flower apps (:mod:`privprep.pipeline.federated.app`) and the plain-Python reference loop
(:mod:`.loop`) run the same functions, so the two give the same model at the same seeds.

* :mod:`.fedavg` — the FedAvg weighted mean of site updates;
* :mod:`.accounting` — a site's schedule, its noise calibrated once for the whole training, and its
  cumulative (ε, δ) over the rounds it took part in (needs opacus);
* :mod:`.local` — one local DP-SGD round at a site, and evaluating weights (needs torch and opacus);
* :mod:`.loop` — the whole algorithm as a plain loop (the reference the Flower run is tested against).

>>> import numpy as np
>>> from privprep.transforms.federated import fedavg
>>> fedavg([{"w": np.array([1.0, 2.0])}, {"w": np.array([3.0, 4.0])}], [1, 3])["w"].tolist()
[2.5, 3.5]
"""

from .fedavg import fedavg

__all__ = ["fedavg"]
