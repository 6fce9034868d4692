"""Golden scenarios: planned through the installed ``smi`` entry point, compared with
expected.yaml, then planned again to prove the result needs no further change."""

from __future__ import annotations

from pathlib import Path

import pytest

from routers.io import load_one
from routers.testing import run_scenario

GOLDEN = Path(__file__).parent / "golden"
SCENARIOS = sorted(p for p in GOLDEN.iterdir() if p.is_dir())
CRD_SETS = {"smi-linkerd", "smi-sdk", "none"}


def test_there_are_scenarios() -> None:
    assert len(SCENARIOS) >= 10


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name)
def test_golden(scenario: Path) -> None:
    meta = load_one(str(scenario / "meta.yaml"))
    assert meta["crdSet"] in CRD_SETS, "meta.yaml names the CRD set the e2e tier installs"
    assert meta["description"].strip()
    run_scenario(scenario)
