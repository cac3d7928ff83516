"""The run directory (SPEC §4), written atomically.

Everything goes to a hidden temporary directory beside the target; :meth:`RunDirectory.commit`
renames it into place only when the whole run succeeded. An earlier run at the target is replaced
only with ``overwrite=True``, and only at commit; a failed run removes its temporary directory and
leaves the earlier run untouched.

A killed run (``kill -9``) cannot clean up: its temporary directory stays, hidden, beside the target.
A run holds an ``flock`` on its temporary directory while it lives, so the next run over the same
target removes the leftovers nobody holds (and never a live run's). The earlier run is replaced by
one atomic exchange of the two directories (Linux ``renameat2(RENAME_EXCHANGE)``), so a kill at any
point leaves the earlier run or the new one at the target, never neither; where the exchange is not
available, two renames are used and the next run puts an earlier run left aside back in place.
"""

from __future__ import annotations

import ctypes
import errno
import fnmatch
import glob
import json
import os
import secrets
import shutil
import sys
from pathlib import Path
from types import TracebackType

from privprep.schemas.errors import OutputError

from .fsutil import _fsync_dir
from .storage import is_uri

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

MARKER = "report.json"


class RunDirectory:
    """A run directory under construction: write into :attr:`path`, then :meth:`commit`."""

    def __init__(self, target: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        self.target = Path(target)
        self.overwrite = overwrite
        check_output(self.target, overwrite=overwrite)
        self.path = self.target.parent / f".{self.target.name}.privprep-tmp-{secrets.token_hex(4)}"
        self.committed = False
        self._lock: int | None = None

    def __enter__(self) -> "RunDirectory":
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            clean_leftovers(self.target)
            self.path.mkdir()
            self._lock = _lock_dir(self.path)
        except OSError as exc:
            raise OutputError(
                f"output '{self.target}' cannot be created ({exc.strerror or type(exc).__name__}); "
                "choose an output in a writable folder"
            ) from None
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self.committed:
            shutil.rmtree(self.path, ignore_errors=True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def commit(self) -> Path:
        """Move the finished run into place, replacing an earlier run only now."""
        check_output(self.target, overwrite=self.overwrite)
        old = None
        if self.target.exists() and _exchange(self.path, self.target):  # one step: the old run is now at self.path
            self.committed = True
            _fsync_dir(self.target.parent)
            shutil.rmtree(self.path, ignore_errors=True)
            return self.target
        if self.target.exists():
            old = self.target.parent / f".{self.target.name}.privprep-old-{secrets.token_hex(4)}"
            os.replace(self.target, old)
        try:
            os.replace(self.path, self.target)
            _fsync_dir(self.target.parent)
        except OSError:
            if old is not None:
                os.replace(old, self.target)
            raise
        self.committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.target


def check_output(target: Path, *, overwrite: bool) -> None:
    """Refuse an existing output unless ``overwrite``, and never replace something that is not a run."""
    if not target.exists():
        return
    if not target.is_dir():
        raise OutputError(f"output '{target}' exists and is not a directory; choose another output")
    if not overwrite:
        raise OutputError(f"output directory '{target}' already exists; pass --overwrite to replace it once this run succeeds")
    if not _is_run(target) and any(target.iterdir()):
        raise OutputError(
            f"output directory '{target}' is not empty and holds no privprep run (no {MARKER} written by privprep); "
            "refusing to replace it, choose another output"
        )


def _is_run(folder: Path) -> bool:
    """``folder`` holds a run: a report.json that privprep wrote (another tool's report.json is not enough
    to have a folder replaced)."""
    try:
        document = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(document, dict) and "privprep_version" in document


def check_no_overlap(output: Path, inputs: list[Path], spec: str | None = None) -> None:
    """The output must not be, contain, or lie inside the input (its files, its directory, or where its
    glob would find files), after resolving symlinks: the input is never touched, and a next run over the
    input must not read this run's output."""
    out = output.resolve()
    for file in inputs:
        resolved = file.resolve()
        if out == resolved or out in resolved.parents:
            raise OutputError(f"output '{output}' contains the input file '{file}'; choose an output outside the input")
    if spec is None:
        return
    if is_uri(spec) or not isinstance(output, Path):  # an object store: refuse any prefix overlap (no symlinks there)
        root = str(spec).split("*")[0].split("?")[0].split("[")[0].rstrip("/")
        target = str(output).rstrip("/")
        if is_uri(spec) and not isinstance(output, Path) and (target == root or target.startswith(root + "/")):
            raise OutputError(f"output '{output}' lies inside the input '{spec}'; choose an output outside the input")
        return
    root = Path(spec).expanduser()
    if root.is_dir():
        root = root.resolve()
        if out == root or root in out.parents:
            raise OutputError(f"output '{output}' lies inside the input directory '{spec}'; choose an output outside the input")
    elif glob.has_magic(spec):
        base = Path(spec.split("*")[0].split("?")[0].split("[")[0] or ".").expanduser()
        base = (base if base.is_dir() else base.parent).resolve()
        written = out / "data" / "part-00000.parquet"  # would the pattern find this run's output?
        pattern = os.path.join(str(base), os.path.relpath(os.path.abspath(os.path.expanduser(spec)), base))
        if (out == base or base in out.parents) and fnmatch.fnmatch(str(written), pattern.replace("**/", "*")):
            raise OutputError(f"output '{output}' lies where the input pattern '{spec}' finds files; choose an output outside the input")


def clean_leftovers(target: Path) -> list[Path]:
    """Remove what killed runs left beside ``target`` (temporary directories no live run holds); put an
    earlier run that a killed commit had set aside back in place. Returns what was removed."""
    removed = []
    if not target.parent.is_dir():
        return removed
    prefix = f".{target.name}.privprep-"
    for leftover in sorted(target.parent.glob(glob.escape(prefix) + "*")):
        kind = leftover.name[len(prefix):].split("-")[0]
        if kind not in ("tmp", "old") or not leftover.is_dir():
            continue
        try:
            lock = _lock_dir(leftover, wait=False)
        except OSError:  # a live run holds it, or it went away meanwhile
            continue
        try:
            if kind == "old" and not target.exists() and (leftover / MARKER).is_file():
                os.replace(leftover, target)
                continue
            shutil.rmtree(leftover, ignore_errors=True)
            removed.append(leftover)
        finally:
            os.close(lock)
    return removed


def _lock_dir(path: Path, *, wait: bool = True) -> int:
    """An open descriptor of directory ``path`` holding an exclusive ``flock`` (released when the process dies)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError:
        os.close(fd)
        raise
    return fd


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap directories ``a`` and ``b`` (Linux ``renameat2`` with ``RENAME_EXCHANGE``);
    False where the system or file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))

