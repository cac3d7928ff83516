"""Every shell block of README.md and docs/*.md runs as written (issue 23: the Quick start failed).

The blocks run in one temporary folder holding a copy of ``sample_data/``, as a user at the
repository's root would run them: README.md first (its Quick start makes the keyring, ``data/`` and
``out/sample/`` that later blocks use), then docs/*.md in name order, each block in the order it
appears, with ``privprep`` on PATH from this interpreter's environment. Each must exit 0.

A block whose first line is ``# not-tested: <reason>`` is skipped, visibly: it installs packages,
needs a cluster, or runs for minutes elsewhere in the suite. A block that installs (``pip install``,
``python -m venv``) without that marker fails here instead of installing.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(bash|sh|shell|console)[ \t]*\n(.*?)^```", re.M | re.S)
MARKER = "# not-tested:"
INSTALLS = re.compile(r"\bpip3? install\b|-m venv\b")
BIN = Path(sys.executable).parent
TIMEOUT_S = 300  # one block; a hung command fails the test instead of the suite


@dataclass
class Block:
    document: Path
    line: int
    script: str

    @property
    def where(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"

    @property
    def reason(self) -> str | None:
        """Why the block is not run (its ``# not-tested:`` first line), or None."""
        first = next((line.strip() for line in self.script.splitlines() if line.strip()), "")
        return first[len(MARKER):].strip() if first.startswith(MARKER) else None


def blocks() -> list[Block]:
    found = []
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            script = match.group(2)
            if match.group(1) == "console":  # a transcript: the commands are the '$ ' lines
                script = "\n".join(line[2:] for line in script.splitlines() if line.startswith("$ "))
            found.append(Block(document, text.count("\n", 0, match.start()) + 1, script))
    return found


def test_the_documents_have_blocks_and_few_exclusions_each_with_a_reason() -> None:
    found = blocks()
    excluded = [b for b in found if b.reason is not None]
    assert any(b.document.name == "README.md" and "privprep run" in b.script and b.reason is None for b in found)
    assert all(b.reason for b in excluded), [b.where for b in excluded if not b.reason]
    assert len(excluded) <= len(found) // 2, [b.where for b in excluded]
    for block in found:
        if block.reason is None:
            assert not INSTALLS.search(block.script), (
                f"{block.where} installs packages: start it with '{MARKER} <reason>', or move the install out of it"
            )


@pytest.mark.skipif(not (BIN / "privprep").exists(), reason=f"the privprep console script is not installed in {BIN}")
@pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("torch", "opacus")),
                    reason="the Quick start's sample pipeline trains a model: needs the train extra (torch, opacus)")
def test_every_shell_block_runs_as_written(tmp_path: Path) -> None:
    work = tmp_path / "repo"
    work.mkdir()
    shutil.copytree(ROOT / "sample_data", work / "sample_data")
    # The README's first set-up command makes .venv/ with privprep in it; blocks after it call .venv/bin/...
    (work / ".venv" / "bin").mkdir(parents=True)
    for name in ("privprep", "python"):
        wrapper = work / ".venv" / "bin" / name
        wrapper.write_text(f'#!/bin/sh\nexec "{BIN / name}" "$@"\n')
        wrapper.chmod(0o755)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    env.pop("PRIVPREP_KEYRING", None)
    ran = []
    for block in blocks():
        if block.reason is not None:
            continue
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", block.script], cwd=work, env=env, capture_output=True, text=True,
            timeout=TIMEOUT_S,
        )
        assert done.returncode == 0, (
            f"{block.where} exited {done.returncode}:\n{block.script}\n--- stdout\n{done.stdout[-2000:]}\n--- stderr\n{done.stderr[-4000:]}"
        )
        ran.append(block.where)
    assert (work / "out" / "sample" / "report.json").is_file() and (work / "out" / "sample-clear" / "report.json").is_file()
    assert any(where.startswith("README.md") for where in ran) and any(where.startswith("docs/") for where in ran)
