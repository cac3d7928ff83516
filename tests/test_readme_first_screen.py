"""The README's first screen (issues 22 and 23): three lines on what privprep does, for whom and what a run
produces; exactly two set-up commands with their measured wall times; command 1 installs what the report's
plots need."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def first_screen() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text[: text.index("\n## ")]


def setup_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", first_screen(), re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_three_lines_say_what_for_whom_and_what_a_run_produces() -> None:
    bullets = [line for line in first_screen().splitlines() if line.startswith("- **")]
    assert [re.match(r"- \*\*(.+?)\*\*", b).group(1) for b in bullets] == ["What it does", "For whom", "What a run produces"]


def test_exactly_two_setup_commands_with_their_wall_times() -> None:
    commands = setup_commands()
    assert len(commands) == 2
    assert "privprep run sample_data/pipeline.yaml" in commands[0] and "pytest" in commands[1]
    assert re.search(r"command 1 \*\*\d+ min \d+ s\*\*", first_screen()) and re.search(r"command 2 \*\*\d+ min \d+ s\*\*", first_screen())


def test_command_1_installs_what_the_report_plots_need() -> None:
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    named = re.search(r"pip install '\.\[([a-z,]+)\]'", setup_commands()[0]).group(1).split(",")
    installed = [dep for name in named for dep in extras[name]]
    assert any(dep.startswith("matplotlib") for dep in installed), named  # else report.html says plots are missing
    assert any(dep.startswith("torch") for dep in installed)  # the sample pipeline trains
