"""DP-SGD training on the sanitized output: the ``train`` sink stage (SPEC §2, §4, §7).

Importing this package needs no torch: data checks, the budget check and the stage class are plain
Python; torch and opacus (the ``train`` extra) are imported when training starts.

* :mod:`.data` — image and label columns to arrays, the held-out split, the default δ;
* :mod:`.budget` — checking the target against the ledger, recording the spend;
* :mod:`.settings` — the DP-SGD settings, and the model and settings chosen from the data when left out;
* :mod:`.model` — the small tanh CNN and the ScatterNet heads (torch); :mod:`.scatter` — the ScatterNet features;
* :mod:`.dpsgd` — Opacus DP-SGD with Poisson sampling and PRV accounting (torch);
* :mod:`.bookkeeping` and :mod:`.ghost_conv` — per-example clipping from one backward pass (torch);
* :mod:`.user_level` — DP-SGD at the level of people (torch);
* :mod:`.card` — ``model/weights.pt`` and ``model/model_card.json``;
* :mod:`.stage` — the :class:`Train` stage and its Python API.

>>> from privprep.transforms.train import Train, default_delta
>>> Train.name, Train.kind, default_delta(3000)
('train', 'sink', 0.0001)
"""

from .card import load_model, read_card
from .data import default_delta
from .stage import Train, TrainResult, require_training_extra

__all__ = ["Train", "TrainResult", "default_delta", "load_model", "read_card", "require_training_extra"]
