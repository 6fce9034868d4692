"""Cross-target equivalence: every plugin's objects do what the state means, request by request.

Run on every discovered plugin that provides a data-plane evaluator (contract version 2), the
third-party fixture included. For states generated within each plugin's declared capabilities
(the contract suite's generator) and for requests built from the state's matches on the
plugin's own sample requests, the resulting objects are routed with the plugin's evaluator and
judged by the core's equivalence machinery (:mod:`routers.simulate.equivalence`):

* a request a plain split sends to canary (a *managed* scope) gets the state's meaning: 100%
  canary when a header route matches, the weighted split otherwise (within the plugin's
  declared precision), plus the mirror share of a matching mirror route;
* any other request (foreign services, no route) is routed exactly as after a cleanup.

Besides the plugin's example, ``tests/contract/equivalence/<plugin>/<case>/`` hold deliberately
tricky live objects: foreign routes placed first, several rules with their own path matches,
catch-all rules, longer foreign prefixes in other routes, other hosts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from routers.contract import evaluator_of
from routers.errors import UnsupportedError, WeightFitError
from routers.explain import equivalence, probe_split
from routers.model import Cleanup, TrafficState
from routers.planning.objects import LiveObjects
from routers.simulate.equivalence import Finding
from tests.contract.test_contract import CASES, Case, Loaded, load, property_test, states, step

FIXTURES = Path(__file__).parent / "equivalence"


def _setups() -> Iterator[Any]:
    for case in CASES:
        dirs = [case.example, *sorted(p for p in (FIXTURES / case.name).glob("*") if p.is_dir())]
        evaluator = evaluator_of(case.registry.load(case.name))
        for d in dirs:
            label = f"{case.name}:example" if d == case.example else f"{case.name}:{d.name}"
            marks = []
            if evaluator is None:
                marks.append(pytest.mark.skip(reason=f"{case.name} provides no evaluator"))
            yield pytest.param(Case(case.name, case.registry, d), id=label, marks=marks)


SETUPS = list(_setups())


@pytest.fixture(params=SETUPS)
def loaded(request: pytest.FixtureRequest) -> Loaded:
    return load(request.param)


def test_every_builtin_plugin_and_the_thirdparty_fixture_are_covered() -> None:
    """No plugin of this repository silently drops out of the property."""
    covered = {p.values[0].name for p in SETUPS if not p.marks}
    assert {"istio", "gatewayapi", "nginx", "smi", "traefik", "configmap"} <= covered


def check(
    loaded: Loaded,
    state: TrafficState,
    before: LiveObjects,
    probe: LiveObjects,
    after: LiveObjects,
) -> tuple[list[Finding], int]:
    """``before``: the cleanup result; ``probe``: a plain split, which shows the managed scope."""
    binding = loaded.bindings[0]
    assert evaluator_of(binding.plugin) is not None
    return equivalence(binding, loaded.routing, state, (before, probe, after), loaded.caps)


def _baselines(loaded: Loaded, state: TrafficState) -> tuple[LiveObjects, LiveObjects]:
    before, _ = step(loaded, loaded.live, Cleanup())
    probe, _ = probe_split(lambda s: step(loaded, loaded.live, s), state.total)
    return before, probe


def _report(state: TrafficState, bad: list[Finding]) -> str:
    return (
        f"state {state.dump()}\n"
        + "\n".join(str(m) for m in bad[:6])
        + (f"\n... {len(bad) - 6} more" if len(bad) > 6 else "")
    )


@property_test(30)
@given(data=st.data())
def test_objects_route_as_the_state_means(loaded: Loaded, data: st.DataObject) -> None:
    state = data.draw(states(loaded), label="state")
    try:
        after, _ = step(loaded, loaded.live, state)
    except (UnsupportedError, WeightFitError):
        assume(False)  # beyond the capabilities, or more than foreign destinations leave
        return
    before, probe = _baselines(loaded, state)
    bad, checked = check(loaded, state, before, probe, after)
    assert not bad, _report(state, bad)
    assert checked, "no request reached the managed routes: the request generator is broken"


def test_example_state(loaded: Loaded) -> None:
    """The example's own state, as a readable regression case."""
    after, _ = step(loaded, loaded.live, loaded.example_state)
    before, probe = _baselines(loaded, loaded.example_state)
    bad, checked = check(loaded, loaded.example_state, before, probe, after)
    assert not bad, _report(loaded.example_state, bad)
    assert checked
