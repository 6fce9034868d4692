"""Golden scenarios: each directory under golden/ is planned through the installed entry point,
compared with its expected.yaml, and planned again to prove the result is a fixed point."""

from __future__ import annotations

from pathlib import Path

import pytest

from routers.io import load_one
from routers.testing import run_scenario

GOLDEN = Path(__file__).parent / "golden"
SCENARIOS = sorted(p for p in GOLDEN.iterdir() if p.is_dir())
CRD_SETS = {"gateway-standard-v1.6", "gateway-experimental-v1.6", "gateway-standard-v1.2"}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_golden(scenario: Path) -> None:
    meta = load_one(str(scenario / "meta.yaml"))
    assert meta["crdSet"] in CRD_SETS, f"{scenario.name}: unknown crdSet {meta['crdSet']!r}"
    assert meta.get("description"), f"{scenario.name}: meta.yaml needs a description"
    run_scenario(scenario)


def test_every_crd_set_is_covered() -> None:
    used = {load_one(str(p / "meta.yaml"))["crdSet"] for p in SCENARIOS}
    assert used == CRD_SETS
