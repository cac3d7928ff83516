"""The reference data the tests use lives in the repository (tests/data/), so a clone with nothing beside
it passes; its README names each file's source, licence and checksum (issue 22)."""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

import pytest

from tests.conftest import DEFAULT_SHARED_DATA, SHARED_DATA, TEST_DATA, shared_data_root

MANIFEST = re.compile(r"^\| `([^`]+)` \| `([0-9a-f]{64})` \|$", re.M)


def plain_bytes(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()


def manifest() -> dict[str, str]:
    return dict(MANIFEST.findall((TEST_DATA / "README.md").read_text(encoding="utf-8")))


def test_every_shipped_file_is_in_the_readme_with_its_checksum() -> None:
    listed = manifest()
    shipped = sorted(str(p.relative_to(TEST_DATA)) for p in TEST_DATA.rglob("*") if p.is_file() and p.name != "README.md")
    assert sorted(listed) == shipped
    for name, digest in listed.items():
        assert hashlib.sha256(plain_bytes(TEST_DATA / name)).hexdigest() == digest, name
    readme = (TEST_DATA / "README.md").read_text(encoding="utf-8")
    for folder in {name.split("/")[0] for name in listed}:
        assert re.search(rf"^\| `{folder}/` \| .+ \| .*(Apache-2\.0|CC BY 4\.0).* \|$", readme, re.M), folder


def test_shipped_copies_equal_the_shared_reference_data() -> None:
    if SHARED_DATA is None:
        pytest.skip("../shared/data not present (or hidden by PRIVPREP_SHARED_DATA): nothing to compare the copies with")
    for name in manifest():
        source = SHARED_DATA / name.removesuffix(".gz")
        assert plain_bytes(TEST_DATA / name) == source.read_bytes(), name


def test_shared_data_location_is_overridable(tmp_path: Path) -> None:
    assert shared_data_root({"PRIVPREP_SHARED_DATA": ""}) is None
    assert shared_data_root({"PRIVPREP_SHARED_DATA": "None"}) is None
    assert shared_data_root({"PRIVPREP_SHARED_DATA": str(tmp_path)}) == tmp_path
    assert shared_data_root({"PRIVPREP_SHARED_DATA": str(tmp_path / "absent")}) is None
    assert shared_data_root({}) == (DEFAULT_SHARED_DATA if DEFAULT_SHARED_DATA.is_dir() else None)


def test_no_test_reads_the_shared_folder_directly() -> None:
    """Every path outside the repository goes through conftest's SHARED_DATA (which can be hidden)."""
    tests = Path(__file__).resolve().parent
    offenders = [str(p.relative_to(tests)) for p in tests.rglob("*.py")
                 if p.name != "conftest.py" and re.search(r"[\"']shared[\"']|SPEC\.md|\.\./shared", p.read_text(encoding="utf-8"))
                 and p != Path(__file__).resolve()]
    assert offenders == []
