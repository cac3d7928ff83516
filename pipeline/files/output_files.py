"""What each output part gets besides its rows: Parquet column encryption (``output_encryption:``) and
key-value metadata, including the per-file data keys of recipient encryption, sealed.

Stages that key per file (an ``encrypt`` stage in recipient mode: ``per_file`` is true) must see every
part start: :meth:`OutputFiles.batches` then cuts the input batches at part boundaries, so each piece
is transformed after its part was started (and its data key made) and lands in that part alone.

>>> import pyarrow as pa
>>> plain = OutputFiles(encryption=None, per_file=[])
>>> [t.num_rows for t in plain.batches(iter([pa.table({"a": [1, 2, 3]})]), writer=None)]
[3]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import pyarrow as pa

from privprep.transforms.base import Stage

from .io import PartWriter, WriterSpec
from ..keys.column_encryption import ColumnEncryption, for_output

if TYPE_CHECKING:  # plan imports what imports this module
    from ..engines.plan import Plan


@dataclass
class OutputFiles:
    """Per-part encryption properties and metadata of a run's output."""

    encryption: ColumnEncryption | None
    per_file: list[Stage]

    @classmethod
    def for_plan(cls, plan: Plan) -> "OutputFiles":
        """From a plan: resolves the output encryption keys now, so a missing key fails before writing."""
        config = plan.loaded.config
        encryption = for_output(plan.loaded.keyring, config.output_encryption, plan.output_schema)
        return cls(encryption=encryption, per_file=[stage for stage in plan.row_stages if stage.per_file])

    def open_writer(self, spec: WriterSpec, directory: Path, *, prefix: str = "part") -> PartWriter:
        """A writer of parts under ``directory`` that get this output's encryption and metadata."""
        return spec.open(directory, encryption=self.properties, file_metadata=self.metadata, prefix=prefix)

    @property
    def properties(self) -> Callable[[], Any] | None:
        """Factory of fresh encryption properties per part, or None."""
        return self.encryption.properties if self.encryption is not None else None

    @property
    def metadata(self) -> Callable[[], dict[str, str]] | None:
        """Called when a part starts: its key-value metadata (and new data keys for per-file stages)."""
        if self.encryption is None and not self.per_file:
            return None

        def start_part() -> dict[str, str]:
            entries: dict[str, str] = {}
            for stage in self.per_file:
                entries.update(stage.begin_file())
            if self.encryption is not None:
                entries.update(self.encryption.file_metadata())
            return entries

        return start_part

    def batches(self, batches: Iterable[pa.Table], writer: PartWriter | None) -> Iterator[pa.Table]:
        """The input batches, cut at part boundaries when a stage keys per file (lazily: a part starts
        only when the runner asks for the next piece, after it wrote the previous one)."""
        for batch in batches:
            if self.per_file and writer is not None:
                yield from writer.pieces(batch)
            else:
                yield batch

    def keys_used(self) -> list[str]:
        return self.encryption.keys_used() if self.encryption is not None else []

    def update_report(self, report: dict[str, Any]) -> None:
        """Add the output encryption (key ids only) to a run's report."""
        if self.encryption is None:
            return
        report["keys_used"] = list(dict.fromkeys([*report.get("keys_used", []), *self.keys_used()]))
        report.setdefault("output", {})["encryption"] = self.encryption.describe()


__all__ = ["OutputFiles"]
