"""Reports the fuzz campaigns' sizes in the terminal summary, whatever the capture mode."""

from __future__ import annotations

import sys

import pytest

CAMPAIGNS = {
    "tests.fuzz.test_fuzz_cli": ("fuzz campaign (CLI)", "in the CLI", "exit codes"),
    "tests.fuzz.test_fuzz_argo": (
        "fuzz campaign (argo-plugin)",
        "in the bridge's calls",
        "cases with refused calls (1) / none (0)",
    ),
}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for module_name, (title, where, codes_label) in CAMPAIGNS.items():
        stats = getattr(sys.modules.get(module_name), "STATS", None)
        if stats is None or not stats.cases:
            continue
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(stats.exit_codes.items()))
        terminalreporter.write_sep("-", title)
        terminalreporter.write_line(
            f"{title}: {stats.cases} cases over {len(stats.scenarios)} scenarios in "
            f"{stats.seconds:.1f} s {where} ({stats.cpu_seconds:.1f} s CPU; {codes_label} "
            f"{codes}); {stats.markers_checked} foreign markers and "
            f"{stats.annotations_checked} emitted annotation values checked"
        )
