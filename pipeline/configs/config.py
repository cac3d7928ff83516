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

from ..files.storage import AnyPath, StoreOptions, is_uri, local_path, location
from ..keys.keyring import ENV_VAR, keyring_path


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
    check_path(str(path), "config file")
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' not found")
    raw = path.read_bytes()
    try:
        document = yaml.load(raw, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise ConfigError(f"config file '{path}' is not valid YAML{where}: {problem}") from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise ConfigError(f"config file '{path}' nests collections too deeply to be a pipeline config") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise ConfigError(f"config file '{path}' holds a value that cannot be read ({_first_line(exc)})") from None
    if not isinstance(document, dict):
        raise ConfigError(f"config file '{path}' must be a YAML mapping with keys version, input, output, columns, stages")
    try:
        config = PipelineConfig.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(f"config file '{path}': {format_validation_error(exc)}") from None
    except RecursionError:
        raise ConfigError(f"config file '{path}' nests collections too deeply to be a pipeline config") from None
    for where, value in _path_values(document):
        check_path(value, f"config file '{path}': {where}")
    for flag, value in (("--input", input), ("--output", output)):
        if value is not None:
            check_path(value, flag)
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
            local_path(out) if output is not None else _resolve_pattern(base, config.output))),
        keyring=Path(_resolve_pattern(base, str(ring)) if config.keyring else os.path.normpath(ring)) if ring else None,
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


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:120]


#: Config keys whose string values are file system paths (at any depth).
PATH_KEYS = ("input", "output", "keyring", "ledger", "csv", "recipient")


def check_path(value: str, where: str) -> None:
    """Refuse a path the file system cannot take (a NUL byte, a name longer than the system allows, a
    ``~user`` that does not exist) with a one-line :class:`ConfigError` naming ``where``.

    >>> check_path("data/in.parquet", "input")
    >>> check_path("a" * 300, "input")
    Traceback (most recent call last):
    ...
    privprep.schemas.errors.ConfigError: input: a path component is longer than 255 bytes
    """
    if "\x00" in value:
        raise ConfigError(f"{where}: a path may not contain a NUL byte")
    try:
        expanded = os.path.expanduser(value)
    except RuntimeError:  # pragma: no cover - os.path.expanduser leaves an unknown ~user as it is
        expanded = value
    if value.startswith("~") and expanded == value and value[1:2] not in ("", "/"):
        raise ConfigError(f"{where}: '{value.split('/')[0]}' names no user whose home folder could be used")
    if any(len(os.fsencode(part)) > _NAME_MAX for part in Path(expanded).parts):
        raise ConfigError(f"{where}: a path component is longer than {_NAME_MAX} bytes")


_NAME_MAX = 255


def _path_values(node: object, where: str = "") -> list[tuple[str, str]]:
    """(config path, value) of every string under a :data:`PATH_KEYS` key of the raw document."""
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}.{key}" if where else str(key)
            if key in PATH_KEYS and isinstance(value, str):
                found.append((here, value))
            else:
                found += _path_values(value, here)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _path_values(value, f"{where}[{index}]")
    return found


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that repeats a key (PyYAML keeps the last one silently,
    so a second ``columns:`` or ``output:`` would quietly replace the first). Merge keys (``<<``) may
    still be overridden, as YAML says."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:  # type: ignore[override]
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.construct_object(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key '{str(key)[:60]}' appears twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
