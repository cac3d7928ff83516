"""How a run goes: reading and writing Parquet (streaming, atomic output), keys, running stages in
order, reports and the CLI.

>>> from privprep.pipeline import run, plan  # doctest: +SKIP
"""

from .api import plan, run
from .report import privprep_version

__version__ = privprep_version()
__all__ = ["__version__", "plan", "run"]
