"""Authorized reversal (SPEC §3, ``privprep decrypt``): turn ``encrypt``, ``tokenize`` and Parquet
column-encrypted columns of a run directory back into values, for a holder of the keys, as a new run
directory written atomically.

The run is read file by file and batch by batch (memory is bounded by ``batch_rows``) and written
part for part under the same names. Columns asked for come back in their original type; the others
stay as they were: ciphertexts and tokens unchanged, column-encrypted columns encrypted again under
the same keyring keys. A column-encrypted column whose key the keyring does not hold cannot be
carried and is left out (a warning, and ``omitted_columns`` in the report). Every key is checked
before anything is written; a missing key is one line naming the column and key id (exit 2).

>>> import tempfile, pathlib
>>> from privprep.pipeline.keys.keyring import Keyring
>>> from privprep.transforms import Encrypt
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> ring = Keyring.create(folder / "k.keyring")
>>> table = Encrypt(columns=["dx"], key=ring.resolve("encrypt", None)).apply(pa.table({"dx": ["flu"], "n": [1]}))
>>> (folder / "run" / "data").mkdir(parents=True)
>>> pq.write_table(table, folder / "run" / "data" / "part-00000.parquet")
>>> _ = (folder / "run" / "report.json").write_text("{}")
>>> result = decrypt_run(folder / "run", keyring=ring, columns=["dx"])
>>> pq.read_table(result.run_dir / "data").to_pylist(), result.run_dir.name
([{'dx': 'flu', 'n': 1}], 'run-decrypted')
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from privprep.schemas.errors import DataError, InputError, KeyringError, OutputError, UsageError
from privprep.schemas.suggest import did_you_mean_any
from privprep.transforms.encrypt import decrypt_column
from privprep.transforms.protected import Protection
from privprep.transforms.recipient import SEALED_KEY_PREFIX
from privprep.transforms.tokenize import detokenize_column

from .column_encryption import METADATA_KEY, ColumnEncryption, EncryptedFile, open_file
from ..engines.progress import Progress
from ..files.rundir import MARKER
from ..files.runtarget import check_run_output, open_run, run_target
from ..files.storage import StoreOptions, is_uri, location
from .keyring import Keyring
from ..reports.report import REPORT_VERSION, privprep_version, write_report

log = logging.getLogger(__name__)


@dataclass
class DecryptResult:
    """The new run directory and its report."""

    run_dir: Path
    report: dict[str, Any]


@dataclass
class _Plan:
    """What to do with each column, decided from the first file and checked against the keyring."""

    names: list[str]
    requested: list[str]
    protections: dict[str, Protection | None]
    carried: list[str]
    omitted: dict[str, str]
    keys_used: list[str] = field(default_factory=list)


def decrypt_run(
    run_dir: str | os.PathLike[str],
    *,
    keyring: Keyring | str | os.PathLike[str],
    columns: Sequence[str],
    output: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    batch_rows: int = 65_536,
    progress: Progress | None = None,
    storage: StoreOptions | None = None,
) -> DecryptResult:
    """Decrypt ``columns`` of the run at ``run_dir`` into a new run directory (default: ``<run_dir>-decrypted``).
    Either may be an object store URI (``s3://bucket/run``; a run there is read through its manifest)."""
    started = time.perf_counter()
    where = location(run_dir, storage)
    if isinstance(keyring, str) and is_uri(keyring):
        raise KeyringError(f"--keyring '{keyring}' is in an object store; the keyring must be a local file")
    requested = list(dict.fromkeys(c.strip() for c in columns if c.strip()))
    if not requested:
        raise UsageError("--columns names no column; give the columns to decrypt, e.g. --columns diagnosis,patient_id")
    target = location(output, storage) if output is not None else where.with_name(where.name + "-decrypted")
    if target.resolve() == where.resolve() or where.resolve() in target.resolve().parents:
        raise OutputError(f"output '{target}' lies inside the run '{where}'; choose another output")
    check_run_output(target, overwrite=overwrite)
    ring = keyring if isinstance(keyring, Keyring) else Keyring.load(keyring)
    with open_run(where) as source:
        files = _data_files(source, where)
        plan = _plan(open_file(files[0], keyring=ring), ring, requested)
        progress = progress or Progress(quiet=True)
        rows = 0
        written: list[Path] = []
        with run_target(target, overwrite=overwrite) as out:
            (out.path / "data").mkdir()
            with progress.task("decrypting", None) as advance:
                for path in files:
                    count = _decrypt_file(path, source, out.path / "data" / path.name, ring, plan, batch_rows, advance)
                    rows += count
                    written.append(out.path / "data" / path.name)
            report = _report(source, plan, rows, written, time.perf_counter() - started, named=where)
            write_report(out.path, report)
            committed = out.commit()
    log.info("decrypted %s of %s rows into %s", ", ".join(plan.requested), f"{rows:,}", committed)
    return DecryptResult(run_dir=committed, report=report)  # type: ignore[arg-type]


def _data_files(source: Path, named: Any = None) -> list[Path]:
    if not (source / MARKER).is_file() or not (source / "data").is_dir():
        raise InputError(f"'{named or source}' is not a privprep run directory (no {MARKER} and data/)")
    files = sorted(p for p in (source / "data").iterdir() if p.suffix == ".parquet" and not p.name.startswith((".", "_")))
    if not files:
        raise InputError(f"run directory '{named or source}' holds no data/*.parquet files")
    return files


def _plan(first: EncryptedFile, ring: Keyring, requested: list[str]) -> _Plan:
    schema = first.schema
    unknown = [c for c in requested if c not in schema.names]
    if unknown:
        raise UsageError(f"column(s) not in run files: {', '.join(unknown)}{did_you_mean_any(unknown, schema.names)} "
                         f"(columns: {', '.join(schema.names)})")
    protections = {c: Protection.from_field(schema.field(c)) for c in requested}
    plain = [c for c, p in protections.items() if p is None and c not in first.column_keys]
    if plain:
        raise UsageError(f"column(s) {', '.join(plain)} are not encrypted, tokenized or column-encrypted; nothing to decrypt")
    missing = first.unreadable(requested)
    if missing:
        column, key_id = next(iter(missing.items()))
        raise KeyringError(
            f"column '{column}' is column-encrypted with key '{key_id}', which keyring '{ring.path}' does not hold"
        )
    used: list[str] = []
    for column, protection in protections.items():
        if protection is not None:
            purpose, key_id = _key_of(protection)
            try:
                used.append(ring.resolve(purpose, key_id).id)
            except KeyringError as exc:
                raise KeyringError(f"column '{column}' needs {purpose} key '{key_id}': {exc}") from None
    omitted = {c: k for c, k in first.unreadable(schema.names).items() if c not in requested}
    for column, key_id in omitted.items():
        log.warning("column '%s' is left out: it is column-encrypted with key '%s', which the keyring does not hold", column, key_id)
    carried = [c for c in schema.names if c not in omitted]
    note = _note(schema.metadata)
    pme_keys = [note.get("footer_key")] + [k for c, k in first.column_keys.items() if c in carried]
    used += [k for k in pme_keys if k]
    return _Plan(list(schema.names), requested, protections, carried, omitted, list(dict.fromkeys(used)))


def _key_of(protection: Protection) -> tuple[str, str]:
    if protection.scheme == "tokenize":
        return "tokenize", protection.key_id or ""
    if protection.recipient is not None:
        return "recipient", protection.recipient
    return "encrypt", protection.key_id or ""


def _decrypt_file(
    path: Path, source: Path, target: Path, ring: Keyring, plan: _Plan, batch_rows: int, advance: Any
) -> int:
    """Decrypt one part into ``target``; returns its row count."""
    opened = open_file(path, keyring=ring)
    where = f"file '{path.relative_to(source)}', "
    if opened.schema.names != plan.names:
        raise InputError(f"{where}columns differ from the run's first file")
    refused = opened.unreadable(plan.carried)
    if refused:
        column, key_id = next(iter(refused.items()))
        raise KeyringError(f"{where}column '{column}' is column-encrypted with key '{key_id}', which the keyring does not hold")
    metadata = opened.schema.metadata or {}
    schema = _output_schema(opened.schema, plan)
    encryption = _re_encryption(opened, ring, plan, metadata)
    kept = {k: v for k, v in metadata.items() if _keep_metadata(k, plan)}
    if encryption is not None:
        kept.update({k.encode(): v.encode() for k, v in encryption.file_metadata().items()})
    properties = encryption.properties() if encryption is not None else None
    rows = 0
    with pq.ParquetWriter(target, schema.with_metadata(kept), compression="zstd", encryption_properties=properties) as writer:
        for batch in opened.file.iter_batches(batch_size=batch_rows, columns=plan.carried):
            table = pa.Table.from_batches([batch])
            for column in plan.requested:
                index = table.schema.get_field_index(column)
                values = _reverse(table.column(index), column, plan.protections[column], ring, metadata, where, rows)
                table = table.set_column(index, schema.field(column), values)
            writer.write_table(table.cast(schema))
            rows += table.num_rows
            advance(table.num_rows)
    return rows


def _reverse(
    values: pa.ChunkedArray, column: str, protection: Protection | None, ring: Keyring, metadata: Any, where: str, row: int
) -> pa.Array:
    if protection is None:  # column encryption only: reading it with the key was the reversal
        return values.combine_chunks()
    if protection.scheme == "tokenize":
        return detokenize_column(
            values, domain=protection.domain or column, keys=ring.resolve, original_type=protection.original_type,
            column=column, context=where, row_offset=row,
        )
    return decrypt_column(
        values, column=column, keys=ring.resolve, original_type=protection.original_type,
        file_metadata=metadata, context=where, row_offset=row,
    )


def _output_schema(schema: pa.Schema, plan: _Plan) -> pa.Schema:
    fields = []
    for name in plan.carried:
        source_field = schema.field(name)
        protection = plan.protections.get(name)
        if name in plan.requested and protection is not None:
            fields.append(pa.field(name, protection.original_type))
        else:
            fields.append(source_field)
    return pa.schema(fields)


def _re_encryption(opened: EncryptedFile, ring: Keyring, plan: _Plan, metadata: Any) -> ColumnEncryption | None:
    """Columns that stay column-encrypted: those not asked for, under the same keys and footer key."""
    remaining = {c: k for c, k in opened.column_keys.items() if c in plan.carried and c not in plan.requested}
    if not remaining:
        return None
    note = _note(metadata)
    return ColumnEncryption.build(ring, columns=remaining, footer_key=note.get("footer_key"))


def _note(metadata: Any) -> dict[str, Any]:
    """privprep's note in a part's key-value metadata; a damaged one is an error, never ignored."""
    try:
        note = json.loads((metadata or {}).get(METADATA_KEY.encode(), b"{}"))
    except (ValueError, RecursionError):
        note = None
    if not isinstance(note, dict):
        raise DataError(f"the privprep metadata ('{METADATA_KEY}') of the run's Parquet parts is damaged; "
                        "decrypt a copy of the run as it was written")
    return note


def _keep_metadata(key: bytes, plan: _Plan) -> bool:
    name = key.decode("utf-8", "replace")
    if name == METADATA_KEY or name.startswith("ARROW:"):
        return False  # rewritten for the new file
    if name.startswith(SEALED_KEY_PREFIX):
        column = name[len(SEALED_KEY_PREFIX) :]
        return column in plan.carried and column not in plan.requested
    return True


def _report(source: Path, plan: _Plan, rows: int, files: list[Path], seconds: float, *, named: Any) -> dict[str, Any]:
    try:
        earlier = json.loads((source / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        earlier = {}
    if not isinstance(earlier, dict):  # a damaged report.json: the decrypted run just does not carry its sha
        earlier = {}
    return {
        "report_version": REPORT_VERSION,
        "privprep_version": privprep_version(),
        "kind": "decrypt",
        "config_sha256": earlier.get("config_sha256"),
        "status": "success",
        "source": {"run_dir": str(named), "config_sha256": earlier.get("config_sha256")},
        "input": {"path": str(named), "files": len(files), "rows": rows},
        "output": {
            "rows": rows,
            "rows_removed": 0,
            "files": [f"data/{p.name}" for p in files],
            "columns": list(plan.carried),
        },
        "keys_used": plan.keys_used,
        "timings": {"total_seconds": round(seconds, 4)},
        "stages": [
            {
                "name": "decrypt",
                "kind": "map",
                "columns": plan.requested,
                "omitted_columns": plan.omitted,
                "rows_in": rows,
                "rows_out": rows,
                "seconds": round(seconds, 4),
            }
        ],
        "warnings": [f"column '{c}' left out: key '{k}' not in the keyring" for c, k in plan.omitted.items()],
    }


__all__ = ["DecryptResult", "decrypt_run"]
