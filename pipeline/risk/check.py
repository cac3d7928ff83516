"""``privprep check``: measure k, l-diversity, t-closeness and re-identification risk of any Parquet or
CSV input, streaming, without changing it. Missing values count as a category of their own.

Columns that privprep encrypted or tokenized (Arrow ``binary`` with the ciphertext header, see
:mod:`privprep.transforms.ciphertext`) are recognized by their field note or their values' header:
a randomized ciphertext (``encrypt``) makes every value distinct, so measuring over it is refused;
a deterministic token (``tokenize``) keeps equality, so k, classes, risk and l-diversity over tokens
are those of the original values, with a warning (``warnings`` in the result).

>>> import tempfile, pathlib, pyarrow as pa, pyarrow.parquet as pq
>>> path = pathlib.Path(tempfile.mkdtemp()) / "t.parquet"
>>> pq.write_table(pa.table({"zip": ["1", "1", "2", "2"], "dx": ["a", "b", "a", "a"]}), path)
>>> m = measure(str(path), ["zip"], ["dx"])
>>> m["k"], m["equivalence_classes"], m["l_diversity"], m["risk"]["prosecutor_max"]
(2, 2, 1, 0.5)
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pyarrow as pa

from privprep.schemas.errors import DataError, UsageError
from privprep.schemas.suggest import did_you_mean_any
from privprep.transforms.anonymity import measures
from privprep.transforms.anonymity.criteria import Criteria, Evaluator, sensitive_codes
from privprep.transforms.anonymity.tuples import TupleCounter
from privprep.transforms.ciphertext import FORMAT_TOKEN, split_by_header
from privprep.transforms.hierarchies import Hierarchy
from privprep.transforms.protected import Protection

from ..files.io import InputSource

log = logging.getLogger(__name__)


def measure(
    input: str,
    quasi_identifiers: list[str],
    sensitive: list[str] | None = None,
    *,
    k: int | None = None,
    batch_rows: int = 1_048_576,
    delimiter: str = ",",
) -> dict[str, Any]:
    """Privacy measures of the table at ``input`` for the given quasi-identifiers (and sensitive columns)."""
    sensitive = list(sensitive or [])
    if not quasi_identifiers:
        raise UsageError("--qi needs at least one column")
    overlap = set(quasi_identifiers) & set(sensitive)
    if overlap:
        raise UsageError(f"column(s) {', '.join(sorted(overlap))} given as both --qi and --sensitive")
    source = InputSource.open(input, delimiter=delimiter)
    columns = list(dict.fromkeys([*quasi_identifiers, *sensitive]))
    missing = [c for c in columns if c not in source.schema.names]
    if missing:
        raise UsageError(f"column(s) not in input '{input}': {', '.join(missing)}{did_you_mean_any(missing, source.schema.names)} "
                         f"(it has: {', '.join(source.schema.names)})")
    nested = [c for c in columns if pa.types.is_nested(source.schema.field(c).type)]
    if nested:
        raise DataError(f"column(s) of input '{input}' with nested types (lists, structs, maps) cannot be measured: "
                        f"{', '.join(nested)}; flatten or cast them first")
    warnings = _protected_columns(source, quasi_identifiers, sensitive, batch_rows)
    counter = TupleCounter(columns)
    for table in source.batches(columns, batch_rows=batch_rows, dictionary=True):
        counter.observe(table)
    tuples = counter.result()
    flat = {q: _identity(q, tuples.dictionaries[tuples.index(q)]) for q in quasi_identifiers}
    evaluator = Evaluator(tuples, flat, Criteria(k=1))
    classes, space = evaluator.classes(tuple(0 for _ in quasi_identifiers))
    sizes = measures.class_sizes(classes, tuples.counts, space)
    present = sizes > 0
    result: dict[str, Any] = {
        "input": input,
        "rows": tuples.rows,
        "quasi_identifiers": list(quasi_identifiers),
        "k": int(sizes[present].min()) if present.any() else 0,
        "equivalence_classes": int(present.sum()),
        "risk": measures.risk(sizes),
    }
    if warnings:
        result["warnings"] = warnings
    if k is not None:
        result["k_target"] = k
        result["rows_below_k"] = int(sizes[present & (sizes < k)].sum())
        result["meets_k"] = bool(result["k"] >= k or tuples.rows == 0)
    if sensitive:
        per_column = {}
        for name in sensitive:
            codes, ordered = sensitive_codes(tuples, name)
            pairs = measures.pair_counts(classes, tuples.counts, codes, space)  # once for the three measures
            distinct = measures.distinct_l(classes, tuples.counts, codes, space, pairs=pairs)[present]
            entropy = measures.entropy_l(classes, tuples.counts, codes, space, pairs=pairs)[present]
            if ordered:
                emd = measures.t_closeness(classes, tuples.counts, codes, space, ordered=True, pairs=pairs)[present]
            else:
                overall = np.bincount(codes, weights=tuples.counts, minlength=int(codes.max(initial=0)) + 1)
                emd = measures.t_closeness_equal(pairs, overall / max(overall.sum(), 1), space)[present]
            per_column[name] = {
                "distinct_l": int(distinct.min()) if len(distinct) else 0,
                "entropy_l": float(entropy.min()) if len(entropy) else 0.0,
                "t_closeness": float(emd.max()) if len(emd) else 0.0,
                "t_distance": "ordered" if ordered else "equal",
            }
        result["l_diversity"] = min(v["distinct_l"] for v in per_column.values())
        result["entropy_l_diversity"] = min(v["entropy_l"] for v in per_column.values())
        result["t_closeness"] = max(v["t_closeness"] for v in per_column.values())
        result["sensitive"] = per_column
    return result


def _identity(column: str, values: Any) -> Hierarchy:
    if pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type):  # tokens: classes need codes, not text
        values = pa.array(np.arange(len(values)), pa.int64(), mask=np.asarray(values.is_null()))
    return Hierarchy(column=column, values=values, levels=(pa.array(["*"] * len(values), pa.string()),))


def _protected_columns(source: InputSource, quasi_identifiers: list[str], sensitive: list[str], batch_rows: int) -> list[str]:
    """Refuse privprep ciphertext columns among the measured ones (exit 2); warnings for token columns."""
    binary = [c for c in dict.fromkeys([*quasi_identifiers, *sensitive])
              if pa.types.is_binary(source.schema.field(c).type) or pa.types.is_large_binary(source.schema.field(c).type)]
    if not binary:
        return []
    first = next(iter(source.batches(binary, batch_rows=min(batch_rows, 4096))), None)
    warnings = []
    for column in binary:
        scheme = _scheme(source.schema.field(column), first.column(column) if first is not None else None)
        flag = "--qi" if column in quasi_identifiers else "--sensitive"
        if scheme == "encrypt":
            measured = ("the other quasi-identifiers' k, classes and risk" if flag == "--qi"
                        else "k and risk over the --qi without it")
            raise UsageError(
                f"{flag} column '{column}' is encrypted (randomized privprep ciphertexts: every value differs, so "
                f"{'classes' if flag == '--qi' else 'l-diversity and t-closeness'} over it measure nothing); "
                f"measure {measured}, or decrypt it first: privprep decrypt RUN_DIR --keyring FILE --columns {column}"
            )
        if scheme == "tokenize":
            what = ("k, classes and risk are those of the original values" if flag == "--qi"
                    else "distinct and entropy l are those of the original values; t-closeness uses the equal distance "
                         "(the original order is hidden)")
            warnings.append(f"column '{column}' is tokenized: deterministic tokens keep equality, so {what} "
                            "(tokens under a rotated key split a value in two)")
    for line in warnings:
        log.warning("warning: %s", line)
    return warnings


def _scheme(field: pa.Field, values: pa.ChunkedArray | None) -> str | None:
    """``encrypt``, ``tokenize`` or ``None``: from the field's privprep note, else from the values' header."""
    try:
        note = Protection.from_field(field)
    except DataError:
        note = None
    if note is not None:
        return note.scheme
    if values is None or values.null_count == len(values):
        return None
    try:
        groups = split_by_header(values, column=field.name)
    except DataError:
        return None  # binary values that are not privprep ciphertexts: measured as they are
    return "tokenize" if all(g.format == FORMAT_TOKEN for g in groups) else "encrypt"


def format_text(result: dict[str, Any]) -> str:
    """The human-readable form of :func:`measure`'s result."""
    risk = result["risk"]
    lines = [
        f"rows                 {result['rows']:,}",
        f"quasi-identifiers    {', '.join(result['quasi_identifiers'])}",
        f"k                    {result['k']}",
        f"equivalence classes  {result['equivalence_classes']:,}",
        f"prosecutor risk      max {risk['prosecutor_max']:.4f}, average {risk['prosecutor_avg']:.4f}",
        f"sample uniques       {risk['sample_uniques']:.2%}",
    ]
    if "k_target" in result:
        verdict = "meets" if result["meets_k"] else f"fails ({result['rows_below_k']:,} rows in classes below k)"
        lines.append(f"k >= {result['k_target']:<15} {verdict}")
    for name, values in result.get("sensitive", {}).items():
        lines.append(
            f"sensitive {name}: distinct l {values['distinct_l']}, entropy l {values['entropy_l']:.3f}, "
            f"t-closeness {values['t_closeness']:.4f} ({values['t_distance']} distance)"
        )
    return "\n".join(lines)
