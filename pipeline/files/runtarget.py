"""Where a run is committed: a local run directory (atomic rename, :mod:`rundir`) or a prefix in an
object store (upload, then a manifest, :mod:`manifest`). The runner and ``decrypt`` write a run the
same way into either: into the local folder :attr:`path`, then :meth:`commit`.

An object store run is staged in a local temporary folder (so every writer, the Parquet parts, the
report, a trained model, works as it does locally), then at commit uploaded under
``<prefix>/run-<run id>/`` with a SHA-256 of every object; the manifest is written last. Only then are
the objects of an earlier run at the prefix (``--overwrite``) and of runs that failed there removed.
A failure before the manifest leaves no manifest, so nothing readable as a run; see docs/storage.md.

Readers of a run (:func:`open_run`) check the manifest and fetch the run's objects, verifying sizes and
SHA-256, into a local temporary folder; a local run directory is read where it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Iterator

import pyarrow.fs as pafs

from privprep.schemas.errors import InputError, OutputError

from .manifest import MANIFEST, RUN_PREFIX, dumps, manifest_document, parse
from .rundir import RunDirectory, check_output
from .storage import AnyPath, ObjectPath, StoreOptions, location, short

log = logging.getLogger(__name__)
CHUNK = 8 << 20
UPLOADS = 4  # objects in flight at once (each buffers its multipart parts in memory)


def run_target(target: AnyPath, *, overwrite: bool = False) -> "RunDirectory | ObjectRunTarget":
    """A run under construction at ``target``: a local :class:`RunDirectory` or an :class:`ObjectRunTarget`."""
    if isinstance(target, ObjectPath):
        return ObjectRunTarget(target, overwrite=overwrite)
    return RunDirectory(target, overwrite=overwrite)


def check_run_output(target: AnyPath, *, overwrite: bool) -> None:
    """Refuse an output that holds a run (without ``overwrite``) or something that is not a run."""
    if isinstance(target, ObjectPath):
        _check_prefix(target, overwrite=overwrite)
    else:
        check_output(Path(target), overwrite=overwrite)


class ObjectRunTarget:
    """A run for an object store prefix: staged locally in :attr:`path`, uploaded and committed by :meth:`commit`."""

    def __init__(self, target: ObjectPath, *, overwrite: bool = False) -> None:
        self.target = target
        self.overwrite = overwrite
        _check_prefix(target, overwrite=overwrite)
        self.run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(4)
        self.root = target / (RUN_PREFIX + self.run_id)
        self.path = Path(".")
        self.committed = False
        self._staging: str | None = None
        self._uploading = False

    def __enter__(self) -> "ObjectRunTarget":
        self._staging = tempfile.mkdtemp(prefix="privprep-run-")
        self.path = Path(self._staging) / "run"
        self.path.mkdir()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
        if self._uploading and not self.committed:
            with contextlib.suppress(OSError):  # best effort; the next run at this prefix removes what is left
                self.target.filesystem.delete_dir(self.root.path)

    def commit(self) -> ObjectPath:
        """Upload the staged run, write the manifest, then remove earlier runs' objects."""
        _check_prefix(self.target, overwrite=self.overwrite)  # another run may have committed meanwhile
        fs = self.target.filesystem
        files = sorted(p for p in self.path.rglob("*") if p.is_file())
        self._uploading = True
        try:
            with ThreadPoolExecutor(UPLOADS) as pool:
                entries = list(pool.map(lambda p: self._upload(fs, p), files))
            with fs.open_output_stream((self.target / MANIFEST).path) as out:
                out.write(dumps(manifest_document(self.run_id, entries)))
        except OSError as exc:
            raise OutputError(f"could not write the run to '{self.target}' ({short(exc)}); no run was committed") from None
        self.committed = True
        try:
            removed = remove_stale(self.target, keep=self.root.name)
        except OutputError as exc:  # committed all the same; the next run at this prefix removes what is left
            log.warning("run committed, but earlier runs' objects were not removed: %s", exc)
            removed = 0
        log.info("committed run %s to %s (%d objects; %d stale run folder(s) removed)", self.run_id, self.target,
                 len(entries), removed)
        return self.target

    def _upload(self, fs: pafs.FileSystem, file: Path) -> dict[str, Any]:
        """Upload one staged file under the run's root; its manifest entry."""
        relative = file.relative_to(self.path).as_posix()
        digest = hashlib.sha256()
        size = 0
        with open(file, "rb") as source, fs.open_output_stream((self.root / relative).path) as out:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
        return {"path": relative, "size": size, "sha256": digest.hexdigest()}


def remove_stale(target: ObjectPath, *, keep: str) -> int:
    """Remove every ``run-*`` folder at ``target`` but ``keep`` (an earlier run, failed runs); their count."""
    fs = target.filesystem
    removed = 0
    for info in _entries(target):
        name = info.path.rsplit("/", 1)[-1]
        if name.startswith(RUN_PREFIX) and name != keep and info.type == pafs.FileType.Directory:
            try:
                fs.delete_dir(info.path)
                removed += 1
            except OSError as exc:  # the run is committed; what is left is removed by the next run
                log.warning("could not remove the stale run folder %s (%s)", info.path, short(exc))
    return removed


def read_manifest(target: ObjectPath) -> dict[str, Any]:
    """The manifest of the run at ``target``; none, or an incomplete one, is an :class:`InputError`."""
    manifest = target / MANIFEST
    try:
        raw = manifest.read_bytes()
    except FileNotFoundError:
        raise InputError(
            f"'{target}' holds no committed privprep run (no {MANIFEST}): the run failed, is still being written, "
            "or this is not a run; nothing was read"
        ) from None
    except OSError as exc:
        raise InputError(f"'{target}' cannot be read ({short(exc)})") from None
    return parse(raw, str(target))


@contextlib.contextmanager
def open_run(spec: str | AnyPath, options: StoreOptions | None = None) -> Iterator[Path]:
    """A run to read as a local folder: a local run directory as it is; a run in an object store
    after its manifest is checked, fetched into a temporary folder with every size and SHA-256 verified."""
    where = location(spec, options)
    if not isinstance(where, ObjectPath):
        yield where
        return
    document = read_manifest(where)
    root = where / document["root"]
    staging = tempfile.mkdtemp(prefix="privprep-read-")
    try:
        local = Path(staging) / where.name
        with ThreadPoolExecutor(UPLOADS) as pool:
            list(pool.map(lambda entry: _download(root, entry, local), document["files"]))
        yield local
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _download(root: ObjectPath, entry: dict[str, Any], local: Path) -> None:
    source = root / entry["path"]
    target = local / entry["path"]
    if not target.resolve().is_relative_to(local.resolve()):
        raise InputError(f"the manifest of '{root.parent}' names '{entry['path']}', outside the run")
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    try:
        with source.open() as handle, open(target, "wb") as out:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
    except FileNotFoundError:
        raise InputError(f"'{source}' is listed in the run's manifest but missing; the run cannot be read") from None
    except OSError as exc:
        raise InputError(f"'{source}' cannot be read ({short(exc)})") from None
    if size != entry["size"] or digest.hexdigest() != entry["sha256"]:
        raise InputError(f"'{source}' differs from the run's manifest (size or sha256); the run cannot be read")


def update_run(target: ObjectPath, local: Path, names: list[str]) -> None:
    """Replace the objects ``names`` (paths relative to the run, e.g. ``report.html``) of the committed
    run at ``target`` by the files under ``local``, then rewrite the manifest with their new digests."""
    document = read_manifest(target)
    root = target / document["root"]
    fs = target.filesystem
    staged = ObjectRunTarget.__new__(ObjectRunTarget)
    staged.root, staged.path = root, local
    try:
        updated = {entry["path"]: entry for entry in (staged._upload(fs, local / name) for name in names)}
        files = [updated.pop(f["path"], f) for f in document["files"]] + list(updated.values())
        with fs.open_output_stream((target / MANIFEST).path) as out:
            out.write(dumps({**document, "files": sorted(files, key=lambda f: f["path"])}))
    except OSError as exc:
        raise OutputError(f"could not update the run at '{target}' ({short(exc)})") from None


def _entries(target: ObjectPath) -> list[pafs.FileInfo]:
    try:
        return target.filesystem.get_file_info(pafs.FileSelector(target.path, recursive=False, allow_not_found=True))
    except OSError as exc:
        raise OutputError(f"output '{target}' cannot be listed ({short(exc)})") from None


def _check_prefix(target: ObjectPath, *, overwrite: bool) -> None:
    """The object store counterpart of :func:`rundir.check_output`."""
    try:
        kind = target.filesystem.get_file_info(target.path).type
    except OSError as exc:
        raise OutputError(f"output '{target}' cannot be reached ({short(exc)})") from None
    if kind == pafs.FileType.File:
        raise OutputError(f"output '{target}' is an object, not a prefix; choose another output")
    if kind == pafs.FileType.NotFound:
        return
    names = [info.path.rsplit("/", 1)[-1] for info in _entries(target)]
    foreign = [n for n in names if n != MANIFEST and not n.startswith(RUN_PREFIX)]
    if foreign:
        raise OutputError(
            f"output '{target}' holds objects that are not a privprep run (e.g. '{foreign[0]}'); "
            "refusing to write there, choose another output"
        )
    if MANIFEST in names and not overwrite:
        raise OutputError(f"output '{target}' already holds a run; pass --overwrite to replace it once this run succeeds")


__all__ = ["ObjectRunTarget", "check_run_output", "open_run", "read_manifest", "remove_stale", "run_target", "update_run"]
