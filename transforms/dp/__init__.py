"""Differentially private statistics: the ``dp_stats`` release stage and its parts.

* :mod:`.columns` — Arrow columns to clipped values and category codes, per batch;
* :mod:`.queries` — one class per statistic: exact sufficient statistics, then one noisy release;
* :mod:`.mechanisms` — diffprivlib's mechanisms with scales and 95% error bounds;
* :mod:`.account` — what a release spends from (a :class:`PrivacyAccount`: the pipeline's ledger, or :class:`SpendLog`);
* :mod:`.stage` — :class:`DpStats`, registered as ``dp_stats``.

>>> import pyarrow as pa
>>> stage = DpStats(epsilon=0.5, queries=[{"column": "age", "stat": "count"}],
...                 columns={"age": {"role": "quasi_identifier"}}, seed=1)
>>> stage.observe(pa.table({"age": list(range(100))}))
>>> [(r["stat"], r["mechanism"], r["noise_scale"]) for r in stage.release(SpendLog())]
[('count', 'GeometricTruncated', 2.0)]
"""

from .account import Account, PlannedSpend, PrivacyAccount, SpendLog
from .stage import DpStats

__all__ = ["Account", "DpStats", "PlannedSpend", "PrivacyAccount", "SpendLog"]
