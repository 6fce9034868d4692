"""Golden scenarios: plan through the installed entry point, compare, check idempotence."""

from __future__ import annotations

from pathlib import Path

import pytest

from routers.io import load_one
from routers.testing import run_scenario

GOLDEN = Path(__file__).parent / "golden"
SCENARIOS = sorted(p for p in GOLDEN.iterdir() if p.is_dir())


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_golden(scenario: Path) -> None:
    meta = load_one(str(scenario / "meta.yaml"))
    assert meta["crdSet"] == "builtin"
    assert meta["description"]
    run_scenario(scenario)
