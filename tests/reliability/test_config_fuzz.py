"""Config fuzzing (issue 16): random mutations of a valid config (wrong types, unknown keys, numbers out
of range, bad hierarchy specs, unicode and odd paths, YAML anchors, aliases, alias bombs and deep
nesting, flipped and truncated bytes) give exit 0, or 1/2 with one clear line and nothing written;
never a traceback, never an internal error, never a partial run directory, never a touched input."""

from __future__ import annotations

import copy
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privprep.pipeline.keys.keyring import Keyring
from tests.conftest import small_table, tree_digest
from tests.reliability.support import assert_clean_failure, tally

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

VALID: dict[str, Any] = {
    "version": 1,
    "input": "in.parquet",
    "output": "out",
    "keyring": "keys/test.keyring",
    "budget": {"epsilon": 1000.0, "delta": 1.0e-5, "ledger": "ledger.json"},
    "columns": {
        "patient_id": {"role": "identifier"},
        "name": {"role": "identifier"},
        "zip": {"role": "quasi_identifier"},
        "age": {"role": "quasi_identifier", "bounds": [0, 120]},
        "diagnosis": {"role": "sensitive", "categories": ["flu", "cold", "asthma"]},
        "income": {"role": "sensitive", "bounds": [0, 500000]},
    },
    "stages": [
        {"pseudonymize": {"columns": ["patient_id"], "domain": "patients"}},
        {"drop": {"columns": ["name"]}},
        {"k_anonymity": {"k": 2, "suppression_limit": 0.5, "hierarchies": {
            "zip": {"mask": {"char": "*"}},
            "age": {"interval": {"widths": [10, 20], "bottom": 20, "top": 70}},
        }}},
        {"encrypt": {"columns": ["diagnosis"]}},
        {"dp_stats": {"epsilon": 0.5, "queries": [
            {"column": "income", "stat": "mean"},
            {"column": "age", "stat": "histogram", "bins": 4},
            {"column": "diagnosis", "stat": "histogram"},
        ]}},
    ],
    "io": {"batch_rows": 3, "rows_per_file": 5},
}

ODD_PATHS = ["", " ", ".", "..", "../elsewhere", "in.parquet/x", "/dev/null", "/dev/null/x", "/proc/nonexistent/x",
             "~nobody-here/x", "Zoë Ørsted/☃.parquet", "a" * 300, "out\nnext", "tab\there", "*", "[", "**/*.parquet",
             "keys", "keys/test.keyring", "ledger.json", "out/../out", "./in.parquet", "in.parquet\x00"]
JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(ODD_PATHS),
    st.lists(st.one_of(st.integers(-3, 3), st.text(max_size=4), st.floats()), max_size=3),
    st.dictionaries(st.text(max_size=6), st.one_of(st.integers(-3, 3), st.text(max_size=4)), max_size=2),
    st.sampled_from([0, -1, 1, 2**31, 2**63, 1e308, -0.0, float("nan"), float("inf"), 0.999999, 1e-320, "1", "yes"]),
)
MUTATION = st.tuples(st.sampled_from(["replace", "delete", "add", "rename"]), st.integers(0, 10_000), JUNK,
                     st.text(min_size=1, max_size=12))


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, prefix + (index,))
    return found


def mutate(document: dict[str, Any], mutations: list[tuple]) -> dict[str, Any]:
    doc = copy.deepcopy(document)
    for op, pick, junk, name in mutations:
        paths = _paths(doc)[1:]
        if not paths:
            break
        path = paths[pick % len(paths)]
        parent: Any = doc
        for part in path[:-1]:
            parent = parent[part]
        last = path[-1]
        if op == "replace":
            parent[last] = junk
        elif op == "delete":
            del parent[last]
        elif op == "add" and isinstance(parent, dict):
            parent[name] = junk
        elif op == "add" and isinstance(parent, list):
            parent.append(junk)
        elif op == "rename" and isinstance(parent, dict):
            parent[name] = parent.pop(last)
    return doc


class Sandbox:
    """A fresh folder per example: the input, a keyring, and the config written there."""

    def __init__(self, root: Path, ring: Path) -> None:
        self.dir = Path(tempfile.mkdtemp(dir=root))
        pq.write_table(small_table(), self.dir / "in.parquet")
        (self.dir / "keys").mkdir()
        shutil.copy(ring, self.dir / "keys" / "test.keyring")
        self.digest = tree_digest(self.dir / "in.parquet")

    def check(self, result: Any, root: Path) -> None:
        assert tree_digest(self.dir / "in.parquet") == self.digest, "the input was modified"
        temps = [str(p) for p in root.rglob("*") if "privprep-tmp" in p.name or "privprep-old" in p.name]
        assert temps == [], temps
        if result.code == 0:
            return
        line = assert_clean_failure(result, (1, 2))
        written = [str(p) for p in self.dir.rglob("*") if p.name == "report.json" or p.name.startswith("part-")]
        assert written == [], f"{line}: {written}"
        if result.code == 2 and line.startswith("privprep: error: config file"):
            assert "pipeline.yaml" in line, line


@pytest.fixture
def ring(tmp_path: Path) -> Path:
    path = tmp_path / "template.keyring"
    Keyring.create(path)
    return path


def _run(cli, tmp_path: Path, ring: Path, text: str | bytes) -> None:
    box = Sandbox(tmp_path, ring)
    config = box.dir / "pipeline.yaml"
    config.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    result = cli("run", config, "--quiet")
    tally("config", "ran (exit 0)" if result.code == 0 else f"clear error (exit {result.code})")
    try:
        box.check(result, tmp_path)
    finally:
        shutil.rmtree(box.dir, ignore_errors=True)
        shutil.rmtree(tmp_path / "elsewhere", ignore_errors=True)


def test_the_valid_config_runs(cli, tmp_path, ring) -> None:
    box = Sandbox(tmp_path, ring)
    config = box.dir / "pipeline.yaml"
    config.write_text(yaml.safe_dump(VALID, sort_keys=False))
    result = cli("run", config, "--quiet")
    assert result.code == 0, result.err
    assert (box.dir / "out" / "report.json").is_file()


@SETTINGS
@given(mutations=st.lists(MUTATION, min_size=1, max_size=3))
def test_mutated_configs_fail_cleanly(cli, tmp_path, ring, mutations) -> None:
    try:
        text = yaml.safe_dump(mutate(VALID, mutations), sort_keys=False, allow_unicode=True)
    except (yaml.YAMLError, UnicodeEncodeError):
        return
    _run(cli, tmp_path, ring, text)


@settings(SETTINGS, max_examples=40)
@given(data=st.data())
def test_flipped_and_truncated_config_bytes_fail_cleanly(cli, tmp_path, ring, data) -> None:
    raw = bytearray(yaml.safe_dump(VALID, sort_keys=False).encode())
    for _ in range(data.draw(st.integers(1, 4), label="flips")):
        at = data.draw(st.integers(0, len(raw) - 1), label="at")
        raw[at] = data.draw(st.sampled_from(b"\x00\xff:-[]{}&*!|>'\"#% \t\n0a\xc3"), label="byte")
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[: data.draw(st.integers(0, len(raw)), label="length")]
    _run(cli, tmp_path, ring, bytes(raw))


def _bomb(levels: int, width: int) -> str:
    lines = [f"x0: &x0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, levels):
        lines.append(f"x{level}: &x{level} [{', '.join([f'*x{level - 1}'] * width)}]")
    return "\n".join(lines)


YAML_CASES = {
    "anchors and aliases in valid places": "\n".join([
        "version: 1", "input: in.parquet", "output: out", "keyring: keys/test.keyring",
        "columns:", "  patient_id: &id {role: identifier}", "  name: *id",
        "  zip: &qi {role: quasi_identifier}", "  age: {<<: *qi}",
        "  diagnosis: {role: sensitive}", "  income: {role: sensitive}",
        "stages:", "  - pseudonymize: {columns: &cols [patient_id]}", "  - drop: {columns: [name]}",
    ]),
    "alias bomb under an unknown key": _bomb(9, 9) + "\n" + yaml.safe_dump(VALID, sort_keys=False),
    "alias bomb as categories": yaml.safe_dump(VALID, sort_keys=False).replace(
        "version: 1", _bomb(9, 9) + "\nversion: 1").replace("categories:\n", "categories: *x8\n  x-was:\n"),
    "alias bomb as a map hierarchy": _bomb(8, 9).replace("x", "h") + "\n" + yaml.safe_dump(VALID, sort_keys=False).replace(
        "      zip:\n        mask:\n          char: '*'", "      zip: {map: {'10001': *h7}}"),
    "merge key bomb": "\n".join([f"m{i}: &m{i} {{<<: [{', '.join(f'*m{j}' for j in range(i))}], k{i}: 1}}"
                                 if i else "m0: &m0 {k0: 1}" for i in range(30)]) + "\n" + yaml.safe_dump(VALID),
    "deep sequence": yaml.safe_dump(VALID) + "x: " + "[" * 50_000 + "]" * 50_000 + "\n",
    "deep mapping in a value": yaml.safe_dump(VALID).replace("version: 1", "version: " + "{a: " * 3000 + "1" + "}" * 3000),
    "python object tag": "!!python/object/apply:os.system ['echo pwned']\n",
    "binary and timestamp tags": yaml.safe_dump(VALID).replace("input: in.parquet", "input: !!binary aW4ucGFycXVldA=="),
    "duplicate key": yaml.safe_dump(VALID, sort_keys=False).replace("output: out", "output: out\noutput: out2"),
    "two documents": yaml.safe_dump(VALID) + "---\n" + yaml.safe_dump(VALID),
    "empty file": "",
    "only a comment": "# nothing\n",
    "a scalar": "42\n",
    "a list": "- version: 1\n",
    "utf-16 with BOM": None,
    "not utf-8": None,
    "huge number": yaml.safe_dump(VALID).replace("k: 2", "k: " + "9" * 5000),
    "huge string key": yaml.safe_dump(VALID).replace("version: 1", "version: 1\n" + "z" * 200_000 + ": 1"),
    "unicode column names": yaml.safe_dump(VALID, allow_unicode=True).replace("patient_id", "pätïent_ïd☃"),
}


@pytest.mark.parametrize("case", sorted(YAML_CASES))
def test_yaml_edge_cases_fail_cleanly_or_run(cli, tmp_path, ring, case) -> None:
    text: str | bytes | None = YAML_CASES[case]
    if case == "utf-16 with BOM":
        text = yaml.safe_dump(VALID).encode("utf-16")
    elif case == "not utf-8":
        text = yaml.safe_dump(VALID).replace("in.parquet", "in\xff.parquet").encode("latin-1")
    _run(cli, tmp_path, ring, text)


PATH_SLOTS = {
    "input": ("input",),
    "output": ("output",),
    "keyring": ("keyring",),
    "ledger": ("budget", "ledger"),
    "hierarchy csv": ("stages", 2, "k_anonymity", "hierarchies", "zip", "csv"),
    "recipient": ("stages", 3, "encrypt", "recipient"),
}


@settings(SETTINGS, max_examples=36)
@given(slot=st.sampled_from(sorted(PATH_SLOTS)), value=st.one_of(st.sampled_from(ODD_PATHS), st.text(min_size=1, max_size=12)))
def test_odd_paths_in_every_path_field_fail_cleanly(cli, tmp_path, ring, slot, value) -> None:
    doc = copy.deepcopy(VALID)
    *parents, last = PATH_SLOTS[slot]
    node: Any = doc
    for part in parents:
        node = node[part]
    if slot == "hierarchy csv":
        node = doc["stages"][2]["k_anonymity"]["hierarchies"]
        node["zip"] = {"csv": value}
    else:
        node[last] = value
    _run(cli, tmp_path, ring, yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
