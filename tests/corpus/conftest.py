"""Prints the Argo corpus' acceptance fraction at the end of a run that included it."""

from __future__ import annotations

from typing import Any


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from tests.corpus import test_argo_corpus as corpus

    results = corpus.RESULTS
    if not results:
        return
    total = len(corpus.CASES)
    accepted = sum(1 for r in results.values() if r == "accepted")
    refused = sum(1 for r in results.values() if r == "refused as Argo refuses")
    failed = sorted(k for k, r in results.items() if r == "FAILED")
    ran = len(results)
    terminalreporter.write_sep("-", "Argo Rollouts corpus (issue 12)")
    terminalreporter.write_line(
        f"{accepted + refused}/{ran} upstream Rollouts handled as Argo handles them "
        f"({100 * (accepted + refused) / ran:.1f}%): {accepted} accepted, {refused} refused "
        f"exactly where Argo refuses, {len(failed)} not"
        + ("" if ran == total else f" ({ran} of {total} cases ran)")
    )
    counts = corpus.COUNTS
    terminalreporter.write_line(
        f"accepted ones: {counts['states']} states planned (each planned again: no operation), "
        f"{counts['requests']} requests routed through the results and compared with the states"
    )
    for case in failed:
        terminalreporter.write_line(f"  not as Argo: {case}")
