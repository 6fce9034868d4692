"""Reports the fuzz campaign's size in the terminal summary, whatever the capture mode."""

from __future__ import annotations

import sys

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    module = sys.modules.get("tests.fuzz.test_fuzz_cli")
    stats = getattr(module, "STATS", None)
    if stats is None or not stats.cases:
        return
    codes = ", ".join(f"{code}: {n}" for code, n in sorted(stats.exit_codes.items()))
    terminalreporter.write_sep("-", "fuzz campaign")
    terminalreporter.write_line(
        f"fuzz campaign: {stats.cases} cases over {len(stats.scenarios)} scenarios in "
        f"{stats.seconds:.1f} s in the CLI ({stats.cpu_seconds:.1f} s CPU; exit codes {codes}); "
        f"{stats.markers_checked} foreign markers and {stats.annotations_checked} emitted "
        "annotation values checked"
    )
