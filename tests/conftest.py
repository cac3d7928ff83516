"""Shared fixtures: a keyring, a small patients table, a config writer and an in-process CLI runner."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from privprep.pipeline.cli import main
from privprep.pipeline.keys.keyring import Keyring

#: Reference data the repository ships (small copies; sources and licences in tests/data/README.md).
TEST_DATA = Path(__file__).resolve().parent / "data"
#: Where the larger reference data lives when it is there (``../shared/data`` beside the checkout).
DEFAULT_SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data_root(environ: Any = os.environ) -> Path | None:
    """The reference-data folder outside the repository, or None when it is hidden or absent.

    ``PRIVPREP_SHARED_DATA`` overrides the default ``../shared/data``: a path, or empty / ``none`` to hide
    it (CI runs the suite once that way, to prove a clone with nothing beside it passes).

    >>> shared_data_root({"PRIVPREP_SHARED_DATA": "none"}) is None
    True
    """
    value = environ.get("PRIVPREP_SHARED_DATA")
    if value is None:
        path = DEFAULT_SHARED_DATA
    elif value.strip().lower() in ("", "none"):
        return None
    else:
        path = Path(value).expanduser()
    return path if path.is_dir() else None


#: None when there is no reference data outside the repository: a test that needs it skips, naming it.
SHARED_DATA = shared_data_root()


def shared_data(name: str) -> Path:
    """``SHARED_DATA / name``, or a skip naming what is missing (for data too large to ship in tests/data)."""
    if SHARED_DATA is None or not (SHARED_DATA / name).exists():
        where = SHARED_DATA if SHARED_DATA is not None else "../shared/data (or PRIVPREP_SHARED_DATA)"
        pytest.skip(f"reference data '{name}' not present in {where}")
    return SHARED_DATA / name

COLUMNS = {
    "patient_id": {"role": "identifier"},
    "name": {"role": "identifier"},
    "zip": {"role": "quasi_identifier"},
    "age": {"role": "quasi_identifier"},
    "diagnosis": {"role": "sensitive"},
    "income": {"role": "sensitive", "bounds": [0, 500000]},
}


def small_table() -> pa.Table:
    """Eight rows with the awkward cases: nulls, empty strings, long and non-ASCII identifiers."""
    return pa.table(
        {
            "patient_id": ["P1", "P2", None, "P4", "", "P1", "Zoë-Ørsted-Łukasz", "x" * 5000],
            "name": ["Ann", "Bob", "Cy", None, "Dee", "Ann", "Zoë", "Long"],
            "zip": ["10001", "10002", "10001", "10003", "10002", "10001", "10004", "10005"],
            "age": pa.array([31, 45, 27, 62, 38, 31, 50, 44], pa.int64()),
            "diagnosis": ["flu", "cold", "flu", "asthma", "flu", "flu", "cold", "asthma"],
            "income": pa.array([50_000, 62_000, None, 41_000, 75_000, 50_000, 88_000, 30_000], pa.int64()),
        }
    )


def base_config(input_path: str, output_path: str, keyring: str | None = None, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "version": 1,
        "input": input_path,
        "output": output_path,
        "columns": dict(COLUMNS),
        "stages": [
            {"pseudonymize": {"columns": ["patient_id"], "domain": "patients"}},
            {"drop": {"columns": ["name"]}},
        ],
    }
    if keyring is not None:
        config["keyring"] = keyring
    config.update(overrides)
    return config


@dataclass
class Workspace:
    """A temporary folder with an input file, a keyring and helpers to write configs and run the CLI."""

    root: Path
    input: Path
    keyring: Path

    def config(self, name: str = "pipeline.yaml", **overrides: Any) -> Path:
        overrides.setdefault("keyring", str(self.keyring))
        document = base_config(str(self.input), str(self.root / "out"), **overrides)
        path = self.root / name
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    def write_config_text(self, text: str, name: str = "pipeline.yaml") -> Path:
        path = self.root / name
        path.write_text(text)
        return path

    @property
    def out(self) -> Path:
        return self.root / "out"


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    data = tmp_path / "in.parquet"
    pq.write_table(small_table(), data)
    keyring = tmp_path / "keys" / "test.keyring"
    Keyring.create(keyring)
    return Workspace(root=tmp_path, input=data, keyring=keyring)


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def tree_digest(path: Path) -> str:
    """A digest of every file under ``path`` (names, modes and bytes), to prove an input was not touched."""
    digest = hashlib.sha256()
    paths = [path] if path.is_file() else sorted(p for p in path.rglob("*"))
    for p in paths:
        digest.update(str(p).encode())
        if p.is_file():
            digest.update(oct(os.stat(p).st_mode).encode())
            digest.update(p.read_bytes())
    return digest.hexdigest()


# -- every report.json the suite writes matches the report schema (issue 7) ----------------------------------

REPORT_SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "report.schema.json"
_report_validator: list[Any] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "report_unchecked: the test writes report.json files that are not privprep reports on purpose")


def check_report_file(path: Path) -> dict[str, Any]:
    """``path`` (a run's report.json) matches the pydantic model and the committed JSON Schema, and has
    its report.html beside it."""
    import jsonschema

    from privprep.schemas.report import validate_report

    document = json.loads(path.read_text(encoding="utf-8"))
    validate_report(document)
    if not _report_validator:
        schema = json.loads(REPORT_SCHEMA.read_text(encoding="utf-8"))
        _report_validator.append(jsonschema.Draft202012Validator(schema))
    error = jsonschema.exceptions.best_match(_report_validator[0].iter_errors(document))
    assert error is None, f"{path}: schemas/report.schema.json: {error.message[:300]} at {list(error.absolute_path)}"
    assert (path.parent / "report.html").is_file(), f"{path.parent}: report.json without report.html"
    return document


@pytest.fixture(autouse=True)
def _reports_match_schema(request: pytest.FixtureRequest) -> Any:
    """After each test that has a tmp_path, check every report.json written under it (a few ms)."""
    root = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if root is None or request.node.get_closest_marker("report_unchecked") or not root.exists():
        return
    for path in sorted(root.rglob("report.json")):
        if not any(part.startswith(".") for part in path.relative_to(root).parts):  # not inside a hidden temp dir
            check_report_file(path)


@pytest.fixture
def torch() -> Any:
    """torch (and opacus) or a skip; one intra-op thread while the test runs (two were 20-35x slower here)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("opacus")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(before)
