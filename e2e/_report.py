"""Figures the e2e tests want in the CI output even when they pass (``pytest -q`` hides prints).

``report(section, line)`` collects; ``e2e/conftest.py`` prints every section in the terminal
summary (convergence times, request and retry counts of the traffic tests, build times).
"""

from __future__ import annotations

__all__ = ["LINES", "report"]

LINES: dict[str, list[str]] = {}


def report(section: str, line: str) -> None:
    LINES.setdefault(section, []).append(line)
    print(line)  # also visible with -s, in order with the test's own output
