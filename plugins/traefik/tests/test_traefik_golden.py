"""Golden scenarios through the installed entry point: expected objects, then idempotence."""

from __future__ import annotations

from pathlib import Path

import pytest

from routers.testing import load_scenario, run_scenario

SCENARIOS = sorted(p for p in (Path(__file__).parent / "golden").iterdir() if p.is_dir())


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name)
def test_golden(scenario: Path) -> None:
    """Each scenario says why it exists and which CRD set the e2e tier applies it with."""
    meta = load_scenario(scenario).meta
    assert (meta.get("crdSet"), bool(meta.get("description"))) == ("traefik", True)
    run_scenario(scenario)
