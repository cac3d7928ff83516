"""What the data are and what is asked of them: pydantic models of the config, keyring and report,
their exported JSON Schemas, and the one exception hierarchy. Validation only: no I/O, no transforms."""

from .config import ColumnSpec, PipelineConfig, check_references, format_validation_error
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
