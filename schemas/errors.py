"""The one exception hierarchy of privprep.

Every error a user can cause derives from :class:`PrivprepError` and carries the exit code the CLI
uses for it (SPEC §3): 2 for usage, configuration, input-file and key problems, 1 for handled
failures (data violating the declared schema, a privacy criterion that cannot be met, a budget that
would be exceeded). Messages name files, columns, config paths and counts, never cell values or keys.

>>> try:
...     raise ConfigError("stages[0].pseudonymize.columns: column 'x' is not declared")
... except PrivprepError as exc:
...     (exc.exit_code, str(exc))
(2, "stages[0].pseudonymize.columns: column 'x' is not declared")
"""

from __future__ import annotations


class PrivprepError(Exception):
    """Base of every error privprep raises on purpose."""

    exit_code: int = 2


class UsageError(PrivprepError):
    """A bad command-line flag or combination of flags."""


class ConfigError(PrivprepError):
    """The pipeline config is invalid (YAML syntax, unknown key, bad value, unknown column)."""


class InputError(PrivprepError):
    """An input file is missing, unreadable, not Parquet/CSV, or truncated."""


class OutputError(PrivprepError):
    """The output location cannot be used (exists without --overwrite, overlaps the input)."""


class KeyringError(PrivprepError):
    """A keyring is missing or malformed, or a key id / purpose is not in it."""


class DataError(PrivprepError):
    """The data violate the declared schema (undeclared column, declared column missing, bad type)."""

    exit_code = 1


class PrivacyError(PrivprepError):
    """A privacy criterion cannot be met within the configured limits."""

    exit_code = 1


class BudgetError(PrivacyError):
    """A release would take the privacy budget over its total."""


class FederationError(PrivprepError):
    """A federated training did not complete: a site or the server failed during the rounds."""

    exit_code = 1


class NotAvailableError(ConfigError):
    """A stage or feature that the config schema knows but this version does not implement yet."""


__all__ = [
    "BudgetError",
    "ConfigError",
    "DataError",
    "FederationError",
    "InputError",
    "KeyringError",
    "NotAvailableError",
    "OutputError",
    "PrivacyError",
    "PrivprepError",
    "UsageError",
]
