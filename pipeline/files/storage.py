"""Where data lives: local paths, or objects in a store (``s3://``, ``gs://``, ``abfs://`` ...) through
pyarrow filesystems.

A URI with a scheme (other than ``file://``) becomes an :class:`ObjectPath`: a small, picklable
stand-in for :class:`pathlib.Path` with just what the pipeline asks of an input file (``name``,
``stat().st_size``, ``open("rb")``, ``parent``, ``relative_to``). It pickles as its URI and
:class:`StoreOptions` only, never as an open filesystem or a credential, so Dask workers rebuild
their own filesystem from their own environment.

Credentials come from the standard environment (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/
``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, instance roles: the AWS SDK's chain); the endpoint from
``io.storage_options.endpoint``, else ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``; the region
from ``io.storage_options.region``, else ``AWS_REGION``, else ``AWS_DEFAULT_REGION``. Other schemes
go through ``pyarrow.fs.FileSystem.from_uri`` (gs://, abfs://, hdfs://), else fsspec when installed.

>>> is_uri("s3://bucket/prefix/"), is_uri("data/patients"), is_uri("file:///tmp/x")
(True, False, False)
>>> p = ObjectPath.from_uri("s3://bucket/runs/out/")
>>> str(p), p.name, str(p.parent), str(p / "data" / "part-00000.parquet")
('s3://bucket/runs/out', 'out', 's3://bucket/runs', 's3://bucket/runs/out/data/part-00000.parquet')
>>> a = ObjectPath.from_uri("abfs://data@account.dfs.core.windows.net/in/a.parquet")
>>> a.path, str(a.parent), str(a.at("data/in/b.parquet"))
('data/in/a.parquet', 'abfs://data@account.dfs.core.windows.net/in', 'abfs://data@account.dfs.core.windows.net/in/b.parquet')
>>> scrub("denied for key AKIAEXAMPLE", secrets=["AKIAEXAMPLE"])
'denied for key ***'
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Iterable, Union
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import pyarrow.fs as pafs
else:
    class _LazyFs:
        """``pyarrow.fs``, imported on first use: ``keys`` and ``--help`` import this module's URI helpers only."""

        def __getattr__(self, name: str) -> Any:
            import pyarrow.fs

            return getattr(pyarrow.fs, name)

    pafs = _LazyFs()

from privprep.schemas.errors import ConfigError, InputError, UsageError

_RUN_FOLDER = re.compile(r"^run-\d{8}T\d{6}Z-[0-9a-f]{8}/")  # see manifest.RUN_PREFIX, runtarget
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN")


def is_uri(spec: Any) -> bool:
    """True for a location in an object store (a URI with a scheme other than ``file``)."""
    if isinstance(spec, ObjectPath):
        return True
    match = _URI.match(str(spec)) if isinstance(spec, str) else None
    return bool(match) and match.group(1).lower() != "file"


def local_path(spec: str) -> str:
    """``file:///x`` as ``/x``; anything else as given."""
    return spec[len("file://"):] if spec.lower().startswith("file://") else spec


@dataclass(frozen=True)
class StoreOptions:
    """What ``io.storage_options`` says (no credentials: those come from the environment)."""

    endpoint: str | None = None
    region: str | None = None
    anonymous: bool = False
    scheme: str | None = None

    @classmethod
    def of(cls, config: Any) -> "StoreOptions":
        """From the config's ``io.storage_options`` (a pydantic model or None)."""
        if config is None:
            return cls()
        if isinstance(config, StoreOptions):
            return config
        return cls(endpoint=config.endpoint, region=config.region, anonymous=config.anonymous, scheme=config.scheme)


@dataclass(frozen=True)
class _Stat:
    st_size: int


@dataclass(frozen=True)
class ObjectPath:
    """An object (or a prefix) in a store, named by its URI, e.g. ``s3://bucket/prefix/part.parquet``."""

    uri: str
    options: StoreOptions = field(default_factory=StoreOptions, compare=False)

    @classmethod
    def from_uri(cls, uri: str, options: StoreOptions | None = None) -> "ObjectPath":
        parts = urlsplit(uri)
        if not parts.netloc:
            raise ConfigError(f"'{uri}' names no bucket or container; write it as {parts.scheme}://bucket/prefix/")
        key = re.sub(r"/+", "/", parts.path).strip("/")
        return cls(f"{parts.scheme.lower()}://{parts.netloc}" + (f"/{key}" if key else ""), options or StoreOptions())

    # -- what Path offers ----------------------------------------------------------------------------
    @property
    def scheme(self) -> str:
        return self.uri.split("://", 1)[0]

    @property
    def _netloc(self) -> str:
        return self.uri.split("://", 1)[1].split("/", 1)[0]

    @property
    def _key(self) -> str:
        rest = self.uri.split("://", 1)[1]
        return rest.split("/", 1)[1] if "/" in rest else ""

    @property
    def path(self) -> str:
        """The path inside the filesystem: ``bucket/key`` (for ``abfs://container@account/key``: ``container/key``)."""
        container = self._netloc.split("@", 1)[0]
        return f"{container}/{self._key}" if self._key else container

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.path).suffix

    @property
    def parent(self) -> "ObjectPath":
        head = self._key.rsplit("/", 1)[0] if "/" in self._key else ""
        return ObjectPath(f"{self.scheme}://{self._netloc}" + (f"/{head}" if head else ""), self.options)

    @property
    def parents(self) -> tuple["ObjectPath", ...]:
        found, here = [], self
        while here._key:
            here = here.parent
            found.append(here)
        return tuple(found)

    def at(self, path: str) -> "ObjectPath":
        """The object at ``path`` (a path inside this object's filesystem, as a listing gives it)."""
        container = self.path.split("/", 1)[0]
        key = path[len(container):].strip("/")
        return ObjectPath(f"{self.scheme}://{self._netloc}" + (f"/{key}" if key else ""), self.options)

    def __truediv__(self, other: str) -> "ObjectPath":
        return ObjectPath(f"{self.uri}/{str(other).strip('/')}", self.options)

    def __str__(self) -> str:
        return self.uri

    def resolve(self) -> "ObjectPath":
        return self

    def relative_to(self, other: "ObjectPath") -> PurePosixPath:
        return PurePosixPath(self.path).relative_to(PurePosixPath(other.path))

    def with_name(self, name: str) -> "ObjectPath":
        return self.parent / name

    @property
    def filesystem(self) -> pafs.FileSystem:
        return filesystem(self.scheme, self._netloc, self.options)

    def info(self) -> pafs.FileInfo:
        try:
            return self.filesystem.get_file_info(self.path)
        except OSError as exc:
            raise InputError(f"'{self.uri}' cannot be reached ({short(exc)})") from None

    def stat(self) -> _Stat:
        return _Stat(int(self.info().size or 0))

    def exists(self) -> bool:
        return self.info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self.info().type == pafs.FileType.File

    def is_dir(self) -> bool:
        return self.info().type == pafs.FileType.Directory

    def open(self, mode: str = "rb") -> Any:
        """A pyarrow input file (seekable, a context manager); read-only."""
        if mode != "rb":
            raise ValueError("ObjectPath.open reads only ('rb'); writes go through a RunTarget")
        return self.filesystem.open_input_file(self.path)

    def read_bytes(self) -> bytes:
        with self.open() as handle:
            return handle.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)


AnyPath = Union[Path, ObjectPath]


def location(spec: str | os.PathLike[str] | ObjectPath, options: StoreOptions | None = None) -> AnyPath:
    """A local :class:`Path` or an :class:`ObjectPath`, as ``spec`` says."""
    if isinstance(spec, (ObjectPath, Path)):
        return spec
    text = os.fspath(spec)
    if is_uri(text):
        return ObjectPath.from_uri(text, options)
    return Path(local_path(text))


def open_source(file: AnyPath) -> Any:
    """What pyarrow readers take: the local path itself, or an open input file of an object."""
    return file.open("rb") if isinstance(file, ObjectPath) else file


def arrow_location(file: AnyPath) -> tuple[str, pafs.FileSystem | None]:
    """``(path, filesystem)`` for pyarrow's ``filesystem=`` arguments (``None`` for a local file)."""
    if isinstance(file, ObjectPath):
        return file.path, file.filesystem
    return str(file), None


# -- filesystems ------------------------------------------------------------------------------------
def filesystem(scheme: str, netloc: str, options: StoreOptions) -> pafs.FileSystem:
    """The filesystem of ``scheme`` (and, for Azure, the account in ``netloc``); cached per process,
    credentials from the environment."""
    return _filesystem(scheme, netloc, options, _environment())


def _environment() -> tuple[str | None, ...]:
    names = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", *SECRET_VARIABLES)
    return tuple(os.environ.get(name) for name in names)  # a changed environment gets a new filesystem


@lru_cache(maxsize=16)
def _filesystem(scheme: str, netloc: str, options: StoreOptions, _env: tuple[str | None, ...]) -> pafs.FileSystem:
    if scheme in ("s3", "s3a"):
        return _s3(options)
    try:
        fs, _ = pafs.FileSystem.from_uri(f"{scheme}://{netloc}/")
        return fs
    except (ValueError, OSError, ImportError) as exc:  # pa.ArrowInvalid is a ValueError
        arrow_error = short(exc)
    try:
        import fsspec  # optional: fsspec's filesystems (gcsfs, adlfs ...) through pyarrow's handler
        from pyarrow.fs import FSSpecHandler, PyFileSystem
    except ImportError:
        raise ConfigError(f"'{scheme}://' is not supported by this pyarrow ({arrow_error}); use s3://, or install fsspec "
                          "with the filesystem for this scheme") from None
    try:
        return PyFileSystem(FSSpecHandler(fsspec.filesystem(scheme)))
    except (ValueError, ImportError) as exc:
        raise ConfigError(f"'{scheme}://' is not supported ({short(exc)})") from None


def _s3(options: StoreOptions) -> pafs.FileSystem:
    endpoint = options.endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    scheme = options.scheme
    if endpoint and "://" in endpoint:
        given, endpoint = endpoint.split("://", 1)
        scheme = scheme or given
    region = options.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    # background_writes off: an upload's write waits for its part, so memory holds a part per object in
    # flight instead of the whole object (runtarget uploads several objects at once instead)
    kwargs: dict[str, Any] = {"anonymous": options.anonymous, "background_writes": False}
    if endpoint:
        kwargs["endpoint_override"] = endpoint.rstrip("/")
    if scheme:
        kwargs["scheme"] = scheme
    if region:
        kwargs["region"] = region
    return pafs.S3FileSystem(**kwargs)


# -- listing an input -------------------------------------------------------------------------------
def discover_objects(spec: str, options: StoreOptions | None, suffixes: tuple[str, ...]) -> list[ObjectPath]:
    """The input objects named by ``spec``: one object, every object under a prefix (hidden and ``_``
    names skipped; under a committed run's prefix, the data objects its manifest lists), or a glob
    over keys; sorted; none found is an error."""
    from .manifest import MANIFEST, parse

    root = ObjectPath.from_uri(spec, options)
    fs = root.filesystem
    if glob.has_magic(root.path):
        fixed = root.path[: min(root.path.find(c) for c in "*?[" if c in root.path)].rsplit("/", 1)[0]
        listed = _list(fs, fixed, spec)
        pattern = root.path
        found = [p for p in listed if fnmatch.fnmatchcase(p, pattern)]
        if not found:
            raise InputError(f"input pattern '{spec}' matches no objects")
        return [root.at(p) for p in sorted(found)]
    info = root.info()
    if info.type == pafs.FileType.File:
        return [root]
    if info.type == pafs.FileType.NotFound:
        raise InputError(f"input '{spec}' not found; give a Parquet or CSV object, a prefix holding them or a glob")
    listed = _list(fs, root.path, spec)
    if f"{root.path}/{MANIFEST}" in listed:  # a committed run: its data objects as its manifest lists them
        document = parse((root / MANIFEST).read_bytes(), str(root))
        return [root / document["root"] / f["path"] for f in document["files"]
                if f["path"].startswith("data/") and f["path"].lower().endswith(suffixes)]
    pending = [p for p in listed if _RUN_FOLDER.match(PurePosixPath(p).relative_to(root.path).as_posix())]
    if pending:
        raise InputError(f"input '{spec}' holds a privprep run that was never committed (no {MANIFEST}); "
                         "point the input at committed data")
    found = [
        p for p in listed
        if p.lower().endswith(suffixes)
        and not any(part.startswith((".", "_")) for part in PurePosixPath(p).relative_to(root.path).parts)
    ]
    if not found:
        raise InputError(f"input prefix '{spec}' holds no .parquet or .csv objects")
    return [root.at(p) for p in sorted(found)]


def _list(fs: pafs.FileSystem, prefix: str, spec: str) -> list[str]:
    try:
        infos = fs.get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
    except OSError as exc:
        raise InputError(f"input '{spec}' cannot be listed ({short(exc)})") from None
    return [i.path for i in infos if i.type == pafs.FileType.File]


def require_local(output: Any, command: str) -> None:
    """Refuse an object store output for a command that writes local folders only."""
    if is_uri(output):
        raise UsageError(f"{command} writes to a local folder; output '{output}' is in an object store "
                         "(write locally, then copy; privprep run and decrypt write to object stores)")


# -- messages ---------------------------------------------------------------------------------------
def scrub(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` with every credential of the environment (or ``secrets``) replaced by ``***``."""
    values = list(secrets) if secrets is not None else [os.environ.get(n) for n in SECRET_VARIABLES]
    for value in values:
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def short(exc: BaseException) -> str:
    """The first line of a library error, shortened, with no credential in it."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return scrub(text)[:200]


__all__ = [
    "AnyPath", "ObjectPath", "StoreOptions", "arrow_location", "discover_objects", "filesystem", "is_uri",
    "local_path", "location", "open_source", "require_local", "scrub", "short",
]
