"""The registry of stages by their config name; the pipeline knows stages only through it.

>>> from privprep.transforms import registry
>>> registry.get("drop").__name__
'Drop'
"""

from __future__ import annotations

from typing import TypeVar

from privprep.schemas.errors import NotAvailableError
from privprep.schemas.stages import STAGE_PARAMS
from privprep.schemas.suggest import did_you_mean

from .base import Stage

_STAGES: dict[str, type[Stage]] = {}
S = TypeVar("S", bound=type[Stage])


def register(cls: S) -> S:
    """Class decorator: make a stage available under its ``name``."""
    if cls.name not in STAGE_PARAMS:
        raise ValueError(f"stage name '{cls.name}' has no params model in privprep.schemas.stages")
    _STAGES[cls.name] = cls
    return cls


def get(name: str) -> type[Stage]:
    """The stage class registered under ``name``; a known but unimplemented stage is a clear error."""
    try:
        return _STAGES[name]
    except KeyError:
        if name in STAGE_PARAMS:
            raise NotAvailableError(
                f"stage '{name}' is not available yet in this version of privprep "
                f"(available: {', '.join(available())})"
            ) from None
        raise NotAvailableError(f"unknown stage '{name}'{did_you_mean(name, STAGE_PARAMS)}") from None


def available() -> list[str]:
    """Names of the implemented stages, in config order."""
    return [name for name in STAGE_PARAMS if name in _STAGES]
