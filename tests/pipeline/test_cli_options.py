"""The CLI's option surface (issues 22 and 23): --version, help text and an example for every command,
--output everywhere (--out kept), choices shown and checked as choices, one result line per run, and a
progress bar that estimates the time left."""

from __future__ import annotations

import io
import json
from importlib import metadata

import pytest

from privprep.pipeline.cli import _command
from privprep.pipeline.engines.progress import Progress, configure_logging


def commands(group=None, path=("privprep",)):
    """Every leaf command of the CLI with its path, e.g. (("privprep", "keys", "new"), command)."""
    group = group or _command()
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):
            yield from commands(command, path + (name,))
        else:
            yield path + (name,), command


def options(command):
    return [p for p in command.params if p.param_type_name == "option" and "--help" not in p.opts]


def test_version_comes_from_the_package_metadata(cli) -> None:
    result = cli("--version")
    assert result.code == 0 and result.out == f"privprep {metadata.version('privprep')}\n"
    assert metadata.version("privprep") == "0.1.0"


@pytest.mark.parametrize("path", [path for path, _ in commands()], ids=lambda p: " ".join(p[1:]))
def test_every_command_help_explains_each_option_and_shows_an_example(cli, path) -> None:
    command = dict(commands())[path]
    missing = [p.opts[0] for p in options(command) if not (p.help or "").strip()]
    assert missing == [], f"{' '.join(path)}: options without help: {missing}"
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    assert [p.name for p in arguments if not (p.help or "").strip()] == []
    result = cli(*path[1:], "--help")
    assert result.code == 0
    text = " ".join(result.out.replace("│", " ").split())
    for argument in arguments:  # shown too (typer <= 0.20 under click >= 8.5 dropped it; the CLI puts it back)
        assert " ".join(argument.help.split()[:3]) in text, argument.name
    assert "Examples:" in text and f"{' '.join(path)} " in text.split("Examples:", 1)[1], text[-400:]
    for option in options(command):
        assert option.opts[0] in text


def test_top_level_help_lists_commands_and_an_example(cli) -> None:
    text = " ".join(cli("--help").out.split())
    for name in ("run", "init", "sample", "check", "decrypt", "report", "keys", "federate", "--version"):
        assert name in text
    assert "Examples:" in text and "privprep init " in text


@pytest.mark.parametrize(("path", "option", "shown"), [
    (("run",), "--engine", "[streaming|dask]"),
    (("run",), "--log-format", "[text|json]"),
    (("keys", "new"), "--purpose", "[pseudonymize|tokenize|encrypt|recipient]"),
    (("keys", "rotate"), "--purpose", "[pseudonymize|tokenize|encrypt|recipient]"),
    (("federate", "simulate"), "--partition", "[iid|label-skew]"),
])
def test_choices_show_as_choices_and_a_bad_one_fails_in_one_line(cli, monkeypatch, path, option, shown) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich's width: wide enough not to wrap the choices
    help_text = cli(*path, "--help").out
    assert shown.strip("[]") in help_text  # [a|b] (typer with click) or <a|b> (typer with its own click)
    row = next(line for line in cli(*path, "--help").out.splitlines() if option in line)
    assert " TEXT " not in row and "<str>" not in row
    args = {"run": ["x.yaml"], "keys": ["k.keyring"] if path[-1] == "rotate" else ["--output", "k.keyring"],
            "federate": ["x.yaml", "--sites", "3"]}[path[0]]
    result = cli(*path, *args, option, "nope")
    choices = shown.strip("[]").replace("|", ", ")
    assert result.code == 2 and result.err == f"privprep: error: {option} must be one of {choices} (see 'privprep {' '.join(path)} --help')\n"


def test_output_is_accepted_everywhere_and_out_is_kept(cli, tmp_path) -> None:
    for path, command in commands():
        names = {name for p in options(command) for name in p.opts}
        if "--out" in names:
            assert "--output" in names, path
    assert cli("sample", "--rows", "5", "--output", tmp_path / "a", "--quiet").code == 0
    assert cli("sample", "--rows", "5", "--out", tmp_path / "b", "--quiet").code == 0
    assert (tmp_path / "a" / "patients.parquet").read_bytes() == (tmp_path / "b" / "patients.parquet").read_bytes()
    assert cli("keys", "new", "--output", tmp_path / "a.keyring").code == 0
    assert cli("keys", "new", "--out", tmp_path / "b.keyring").code == 0
    assert (tmp_path / "a.keyring").is_file() and (tmp_path / "b.keyring").is_file()


def test_a_bad_flag_is_one_line_with_exit_2(cli) -> None:
    result = cli("run", "x.yaml", "--bogus")
    assert result.code == 2 and result.err.count("\n") == 1
    assert result.err.startswith("privprep: error: ") and "--bogus" in result.err and "privprep run --help" in result.err
    assert cli().code == 2  # no command: the help, exit 2 as before


def test_a_run_prints_its_result_once(workspace, cli) -> None:
    result = cli("run", workspace.config())
    assert result.code == 0, result.err
    lines = [line for line in result.err.splitlines() if str(workspace.out) in line]
    assert lines == [f"privprep: wrote 8 rows (0 removed) to {workspace.out} in " + lines[0].rsplit(" in ", 1)[1]]
    try:
        result = cli("run", workspace.config(), "--overwrite", "--log-format", "json")
        events = [json.loads(line) for line in result.err.splitlines()]
    finally:
        configure_logging(quiet=True)
    done = [e for e in events if str(workspace.out) in e["message"]]
    assert [e["event"] for e in done] == ["run_done"] and done[0]["rows"] == 8 and done[0]["rows_removed"] == 0


def test_progress_bar_estimates_the_time_left_where_the_total_is_known() -> None:
    from rich.console import Console

    def rendered(total):
        out = io.StringIO()
        progress = Progress(terminal=True, console=Console(file=out, force_terminal=True, width=140))
        with progress.task("writing", total) as advance:
            advance(5)
        return out.getvalue()

    assert "left" in rendered(10)
    assert "left" not in rendered(None)
