"""How a run goes: reading and writing Parquet (streaming, atomic output), keys, running stages in
order, reports and the CLI.

>>> from privprep.pipeline import run, plan  # doctest: +SKIP

Names are imported on first use, so ``privprep --help`` and ``privprep keys`` load no data libraries.
"""

from __future__ import annotations

from typing import Any

__all__ = ["__version__", "plan", "run"]


def __getattr__(name: str) -> Any:
    if name in ("plan", "run"):
        from . import api

        return getattr(api, name)
    if name == "__version__":
        from .reports.report import privprep_version

        return privprep_version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
