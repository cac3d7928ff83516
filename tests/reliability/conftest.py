"""The reliability suite prints what it tried: cases, clear errors, runs that succeeded, by family."""

from __future__ import annotations

from tests.reliability.support import TALLY


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    if not TALLY:
        return
    terminalreporter.section("reliability cases")
    for (family, outcome), count in sorted(TALLY.items()):
        terminalreporter.write_line(f"{family:<16} {outcome:<32} {count}")
