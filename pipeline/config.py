"""Reading a pipeline config file: YAML in, a validated :class:`PipelineConfig` out, every error a
one-line :class:`ConfigError` naming the config path. Relative paths in the config are resolved
against the config file's folder; paths given on the command line against the working directory.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from privprep.schemas.config import PipelineConfig, check_references, format_validation_error
from privprep.schemas.errors import ConfigError

from .keyring import ENV_VAR, keyring_path
from .storage import AnyPath, StoreOptions, is_uri, local_path, location


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config with its resolved paths and the SHA-256 of the file as written."""

    config: PipelineConfig
    path: Path
    sha256: str
    input: str
    output: AnyPath  # a local Path, or a storage.ObjectPath for s3:// (gs://, abfs://) outputs
    keyring: Path | None

    @property
    def base_dir(self) -> Path:
        return self.path.parent


def load_config(path: str | Path, *, input: str | None = None, output: str | None = None) -> LoadedConfig:
    """Read, parse and validate ``path``; ``input``/``output`` override the config's (CLI flags)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' not found")
    raw = path.read_bytes()
    try:
        document = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise ConfigError(f"config file '{path}' is not valid YAML{where}: {problem}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"config file '{path}' must be a YAML mapping with keys version, input, output, columns, stages")
    try:
        config = PipelineConfig.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(f"config file '{path}': {format_validation_error(exc)}") from None
    problems = check_references(config)
    if problems:
        more = f" (and {len(problems) - 1} more: {'; '.join(problems[1:])})" if len(problems) > 1 else ""
        raise ConfigError(f"config file '{path}': {problems[0]}{more}")
    base = path.parent
    ring = keyring_path(local_path(config.keyring) if config.keyring else None)  # file:///x is /x
    _check_local(config)
    store = StoreOptions.of(config.io.storage_options)
    out = output if output is not None else config.output
    return LoadedConfig(
        config=config,
        path=path,
        sha256=hashlib.sha256(raw).hexdigest(),
        input=local_path(input) if input is not None else _resolve_pattern(base, config.input),
        output=location(out, store) if is_uri(out) else Path(os.path.normpath(
            local_path(out) if output is not None else base / local_path(config.output))),
        keyring=Path(os.path.normpath(base / ring if config.keyring else ring)) if ring else None,
    )


def _check_local(config: PipelineConfig) -> None:
    """The keyring and the ledger stay on this machine: a URI for either is refused."""
    for name, value in (("keyring", config.keyring or os.environ.get(ENV_VAR)),
                        ("budget.ledger", config.budget.ledger if config.budget else None)):
        if value and is_uri(value):
            raise ConfigError(f"{name} '{value}' is in an object store; {name} must be a local file "
                              "(copy it here with the store's own tools, then name the local path)")


def _resolve_pattern(base: Path, value: str) -> str:
    if is_uri(value):
        return value
    value = local_path(value)
    path = Path(value).expanduser()
    return os.path.normpath(path if path.is_absolute() else base / path)
