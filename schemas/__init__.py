"""What the data are and what is asked of them: pydantic models of the config, keyring and report,
their exported JSON Schemas, and the one exception hierarchy. Validation only: no I/O, no transforms."""

from typing import Any

from .errors import (
    BudgetError,
    ConfigError,
    DataError,
    InputError,
    KeyringError,
    NotAvailableError,
    OutputError,
    PrivacyError,
    PrivprepError,
    UsageError,
)

__all__ = [
    "BudgetError",
    "ColumnSpec",
    "ConfigError",
    "DataError",
    "InputError",
    "KeyringError",
    "NotAvailableError",
    "OutputError",
    "PipelineConfig",
    "PrivacyError",
    "PrivprepError",
    "UsageError",
    "check_references",
    "format_validation_error",
]

_CONFIG_NAMES = ("ColumnSpec", "PipelineConfig", "check_references", "format_validation_error")


def __getattr__(name: str) -> Any:
    """The config models on first use: ``privprep --help`` needs the errors only, not pydantic."""
    if name in _CONFIG_NAMES:
        from . import config

        return getattr(config, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
