"""The registry of stages by their config name; the pipeline knows stages only through it.

>>> from privprep.transforms import registry
>>> registry.get("drop").__name__
'Drop'

A stage from outside privprep is one class: ``@register`` makes its ``name`` a valid ``stages:``
entry validated by its ``Params`` model (a :class:`~privprep.schemas.stages.StageParams` saying the
stage's kind and planned spend), and the runner dispatches on its base class.
"""

from __future__ import annotations

from typing import TypeVar

from privprep.schemas.errors import NotAvailableError
from privprep.schemas.stages import STAGE_PARAMS, register_params, unregister_params
from privprep.schemas.suggest import did_you_mean

from .base import STAGE_BASES, Stage

_STAGES: dict[str, type[Stage]] = {}
S = TypeVar("S", bound=type[Stage])


def register(cls: S) -> S:
    """Class decorator: make a stage available under its ``name`` (a new name brings its ``Params``)."""
    if not issubclass(cls, STAGE_BASES):
        raise TypeError(f"stage class {cls.__qualname__} must subclass MapStage, GlobalStage, ReleaseStage or SinkStage")
    params = STAGE_PARAMS.get(cls.name) or getattr(cls, "Params", None)
    if params is None:
        raise ValueError(f"stage name '{cls.name}' has no params model in privprep.schemas.stages")
    declared = getattr(params, "kind", None)
    if declared != cls.kind:
        raise ValueError(f"stage '{cls.name}' is a {cls.kind} stage, but its params model says {declared}")
    register_params(cls.name, params)  # a new name becomes a valid ``stages:`` entry
    _STAGES[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove a stage registered from outside privprep, and its params model (privprep's own stay)."""
    if name in _STAGES and not _STAGES[name].__module__.startswith("privprep."):
        del _STAGES[name]
    unregister_params(name)


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
