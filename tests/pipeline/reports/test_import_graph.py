"""The report modules import each other in no circle: each HTML module imports first, alone, in a
fresh interpreter, and the graph of the package's own imports (function-level ones included) has
no cycle through an HTML module."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = "privprep.pipeline"


def modules() -> dict[str, Path]:
    """Every module of the pipeline package (subpackages included) and its file."""
    root = importlib.import_module(PACKAGE)
    found = {PACKAGE: Path(root.__file__)}  # type: ignore[arg-type]
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{PACKAGE}."):
        spec = importlib.util.find_spec(info.name)
        if spec is not None and spec.origin:
            found[info.name] = Path(spec.origin)
    return found


def html_modules() -> list[str]:
    return sorted(name for name in modules() if name.rsplit(".", 1)[-1].startswith("html"))


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's own modules that ``name`` imports anywhere in its file (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        out |= {t for t in targets if t in known and t != name and not name.startswith(t + ".")}
    return out  # a module's own packages are left out: they are imported before it, never through it


def test_html_modules_are_found() -> None:
    assert len(html_modules()) >= 5, html_modules()


@pytest.mark.parametrize("name", html_modules())
def test_each_html_module_imports_first_in_a_fresh_interpreter(name: str) -> None:
    done = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_no_import_cycle_runs_through_an_html_module() -> None:
    found = modules()
    graph = {name: imports(name, path, set(found)) for name, path in found.items()}
    for start in html_modules():
        stack, seen = [(start, [start])], {start}
        while stack:
            node, trail = stack.pop()
            for nxt in sorted(graph[node]):
                if nxt == start:
                    pytest.fail("import cycle: " + " -> ".join(trail + [start]))
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, trail + [nxt]))
