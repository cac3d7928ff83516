"""Federated DP training across data holders (sites): ``privprep federate simulate`` and the Flower apps.

* :mod:`.split` — one input split into disjoint site datasets (IID or label-skewed);
* :mod:`.site` — a site's description and its work in a round (no Flower);
* :mod:`.sites` — sanitizing at each site with the config's stages, each site with its own ledger;
* :mod:`.app` — Flower's ServerApp (FedAvg, optional client-level DP) and ClientApp (a site), for both engines;
* :mod:`.engine` — the in-process Simulation Engine, quiet and cleaned up;
* :mod:`.results` — the model card and the report entry;
* :mod:`.simulate` — the whole ``federate simulate`` run.

Importing this package imports neither flwr nor torch; :mod:`.app` and :mod:`.engine` need flwr.
"""

from .split import PARTITIONS, assign_sites

__all__ = ["PARTITIONS", "assign_sites"]
