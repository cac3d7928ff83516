"""A starting pipeline config for a table of one's own (``privprep init INPUT``).

Only the input's schema is read (column names and types: a Parquet footer, a CSV header), never a cell
value, so nothing in the written file comes from the data. Each column gets a role guessed from its name
(and, for dates, its type), marked ``# review``; numeric sensitive columns get no ``bounds`` (DP statistics
refuse such a column until the user declares its range: bounds read from the data would leak it). The
stages protect every identifier and k-anonymize the quasi-identifiers, so the file validates as written.

>>> import pyarrow as pa
>>> schema = pa.schema([("patient_id", pa.string()), ("age", pa.int64()), ("diagnosis", pa.string()),
...                     ("income", pa.float64()), ("visits", pa.int32())])
>>> [(c.name, c.role) for c in guess_columns(schema)]
[('patient_id', 'identifier'), ('age', 'quasi_identifier'), ('diagnosis', 'sensitive'), ('income', 'sensitive'), ('visits', 'insensitive')]
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from privprep.schemas.errors import UsageError

from ..files.io import InputSource

ROLES = ("identifier", "quasi_identifier", "sensitive", "insensitive")
# Name tokens (lower case, split on non-letters and camelCase) that suggest a role; the first role that matches wins.
_IDENTIFIER = {"id", "uuid", "guid", "ssn", "nin", "passport", "email", "mail", "phone", "mobile", "tel", "telephone",
               "fax", "name", "firstname", "lastname", "surname", "fullname", "username", "login", "address", "street",
               "ip", "iban", "account", "card", "mrn", "licence", "license", "national", "social"}
_QUASI = {"age", "birth", "birthday", "dob", "born", "zip", "zipcode", "postcode", "postal", "plz", "sex", "gender",
          "race", "ethnicity", "ethnic", "marital", "city", "town", "county", "district", "region", "state", "country",
          "nationality", "occupation", "job", "profession", "education", "date", "year", "month", "height", "weight"}
_SENSITIVE = {"diagnosis", "diagnoses", "disease", "condition", "icd", "treatment", "medication", "drug", "prescription",
              "symptom", "symptoms", "hiv", "health", "medical", "sick", "sickness", "disability", "pregnancy", "genetic",
              "biometric", "income", "salary", "wage", "wages", "pay", "earnings", "balance", "debt", "religion",
              "politics", "political", "union", "sexuality", "orientation", "criminal", "conviction"}
# A last name token that makes the name an identifier when something precedes it: emp_no, case_number, member_key.
_IDENTIFIER_SUFFIX = {"no", "nr", "num", "number", "key"}


@dataclass(frozen=True)
class GuessedColumn:
    name: str
    type: pa.DataType
    role: str
    why: str

    @property
    def numeric(self) -> bool:
        return pa.types.is_integer(self.type) or pa.types.is_floating(self.type) or pa.types.is_decimal(self.type)

    @property
    def temporal(self) -> bool:
        return pa.types.is_date(self.type) or pa.types.is_timestamp(self.type)


def name_tokens(name: str) -> list[str]:
    """``patientId`` -> ``['patient', 'id']``; ``e-mail`` -> ``['e', 'mail']``; ``icd10`` -> ``['icd', '10']``."""
    spaced = re.sub(r"([a-z0-9])([A-Z])|([A-Za-z])([0-9])", lambda m: " ".join(g for g in m.groups() if g), name)
    return [t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t]


def guess_role(name: str, kind: pa.DataType) -> tuple[str, str]:
    """A role for a column from its name and type, and the reason (a name token or the type)."""
    tokens = name_tokens(name)
    joined = "".join(tokens)
    if len(tokens) > 1 and tokens[-1] in _IDENTIFIER_SUFFIX:
        return "identifier", f"name '{tokens[-1]}'"
    for role, words in (("identifier", _IDENTIFIER), ("sensitive", _SENSITIVE), ("quasi_identifier", _QUASI)):
        hit = next((t for t in tokens if t in words), joined if joined in words else None)
        if hit is not None:
            return role, f"name '{hit}'"
    if pa.types.is_date(kind) or pa.types.is_timestamp(kind):
        return "quasi_identifier", "a date"
    return "insensitive", "no rule matched"


def guess_columns(schema: pa.Schema) -> list[GuessedColumn]:
    return [GuessedColumn(f.name, f.type, *guess_role(f.name, f.type)) for f in schema]


def write_starting_config(input: str, output: Path, *, force: bool = False, delimiter: str = ",") -> list[GuessedColumn]:
    """Write the starting config for ``input`` to ``output`` (refusing an existing file unless ``force``);
    the file is validated before it is renamed into place. Returns the guessed columns."""
    if output.exists() and not force:
        raise UsageError(f"'{output}' exists; pass --force to replace it (or --output to write elsewhere)")
    if output.is_dir():
        raise UsageError(f"'{output}' is a directory; give --output a file name such as pipeline.yaml")
    source = InputSource.open(input, delimiter=delimiter)
    columns = guess_columns(source.schema)
    base = output.parent.resolve()
    text = render(columns, input=_relative(input, base), stem=_stem(source.files[0]), delimiter=delimiter, name=output.name)
    _validate(text, output)
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(f".{output.name}.privprep-tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, output)
    return columns


def render(columns: list[GuessedColumn], *, input: str, stem: str, delimiter: str = ",", name: str = "pipeline.yaml") -> str:
    """The config's YAML text, with a ``# review`` comment on every guess."""
    by_role = {role: [c for c in columns if c.role == role] for role in ROLES}
    identifiers, quasi = by_role["identifier"], by_role["quasi_identifier"]
    numeric_sensitive = [c for c in by_role["sensitive"] if c.numeric]
    width = max([len(_scalar(c.name)) for c in columns] + [10]) + 1
    lines = [
        "# A starting config written by `privprep init` from the input's column names and types (no values were read).",
        "# Review every line marked '# review': the roles are guesses. Then, in this file's folder:",
        f"#   privprep keys new --output keys/{stem}.keyring --exist-ok",
        f"#   privprep run {name} --dry-run      # validate config, keys and input schema; writes nothing",
        "# Relative paths are relative to this file's folder. Reference: docs/config.md",
        "version: 1",
        f"input: {_scalar(input)}",
        f"output: {_scalar(f'out/{stem}')}",
    ]
    if identifiers:
        lines.append(f"keyring: {_scalar(f'keys/{stem}.keyring')}")
    lines.append("columns:                 # every input column, with its privacy role")
    for c in columns:
        entry = f"  {(_scalar(c.name) + ':').ljust(width)} {{role: {c.role}}}"
        note = f"# review: {c.role} ({c.why}; type {c.type})"
        if c.role == "sensitive" and c.numeric:
            note += "; DP statistics refuse it until you add bounds: [LOW, HIGH] from domain knowledge, never from the data"
        lines.append(f"{entry.ljust(width + 32)} {note}")
    lines.append("stages:                  # run in order" if identifiers or quasi else
                 "stages: []               # review: no column was guessed to need protection; add stages (docs/config.md)")
    if identifiers:
        names = ", ".join(_scalar(c.name) for c in identifiers)
        lines.append(f"  - pseudonymize: {{columns: [{names}]}}   # review: keyed pseudonyms; or drop, mask, tokenize (reversible), encrypt")
    if quasi:
        lines += [
            "  - k_anonymity:           # review: k and the suppression limit are policy decisions",
            "      k: 5",
            "      suppression_limit: 0.02",
            "      hierarchies:         # review: one per quasi-identifier; ARX csv: files or map: fit categories best",
        ]
        lines += [f"        {_scalar(c.name)}: {_hierarchy(c)}" for c in quasi]
    if numeric_sensitive:
        first = _scalar(numeric_sensitive[0].name)
        lines += [
            "  # DP statistics need a budget and declared bounds (see docs/dp_stats.md), e.g.:",
            "  # - dp_stats: {epsilon: 1.0, queries: [{column: " + first + ", stat: mean}]}",
            "# budget: {epsilon: 4.0, ledger: ledgers/" + stem + ".json}",
        ]
    if delimiter != ",":
        lines.append(f"io: {{csv_delimiter: {json.dumps(delimiter)}}}")
    return "\n".join(lines) + "\n"


def yaml_keyring(config: Path) -> str | None:
    """The keyring a written config names, as a path from the working directory (None: it needs none)."""
    import yaml

    ring = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("keyring")
    return os.path.relpath(config.parent / ring) if ring else None


def _hierarchy(column: GuessedColumn) -> str:
    tokens = set(name_tokens(column.name))
    if tokens & {"zip", "zipcode", "postcode", "postal", "plz"}:
        return '{mask: {char: "*"}}          # review: one more trailing digit hidden per level'
    if column.temporal:
        return "{date: [month, year, 5y, 10y]}"
    if column.numeric:
        return "{interval: {widths: [5, 10, 20, 40]}}   # review: band widths in the column's unit"
    return '{mask: {char: "*"}}          # review: a map: or csv: hierarchy fits categories better'


def _validate(text: str, output: Path) -> None:
    import yaml
    from pydantic import ValidationError

    from privprep.schemas.config import PipelineConfig, check_references, format_validation_error

    try:
        config = PipelineConfig.model_validate(yaml.safe_load(text))
    except ValidationError as exc:  # a bug of this module: never write a config that does not validate
        raise RuntimeError(f"privprep init made an invalid config: {format_validation_error(exc)}") from None
    problems = check_references(config)
    if problems:
        raise RuntimeError(f"privprep init made an inconsistent config for {output}: {'; '.join(problems)}")


def _scalar(text: str) -> str:
    """A YAML scalar for a name or path: plain when it reads back as the same string, else double-quoted (JSON)."""
    import yaml

    if re.fullmatch(r"[A-Za-z0-9_./-]+", text) and yaml.safe_load(text) == text:
        return text
    return json.dumps(text, ensure_ascii=False)


def _relative(input: str, base: Path) -> str:
    path = Path(input).expanduser()
    if any(ch in input for ch in "*?["):
        return input if path.is_absolute() else os.path.relpath(Path.cwd() / input, base)
    return os.path.relpath(path.resolve(), base)


def _stem(file: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", file.name.split(".")[0]).strip("-")
    return stem or "data"


__all__ = ["GuessedColumn", "guess_columns", "guess_role", "name_tokens", "render", "write_starting_config", "yaml_keyring"]
