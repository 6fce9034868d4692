"""The shared contract suite, run over every discovered plugin (plus the example third-party one).

Each plugin is exercised on its ``examples/<name>/`` objects with states generated *within the
capabilities it declares* for that config. For every state:

* the plan applies cleanly (guards included) and planning again yields an empty plan;
* ``observe`` of the result verifies against the state (within the declared precision);
* fields we do not know survive, and live objects handed to the plugin are never mutated;
* cleanup afterwards removes every managed route and every object we created, and is itself
  idempotent.
"""

from __future__ import annotations

import copy
import string
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from routers.contract import Capabilities, ClusterFacts, MatchLimits, MirrorSupport, RouterPlugin
from routers.engine import (
    Binding,
    bind,
    facts_from_manifests,
    gather,
    observe_all,
    plan_all,
    verify,
)
from routers.errors import UnsupportedError, WeightFitError
from routers.io import load_documents, load_one
from routers.model import Cleanup, Desired, RoutingConfig, TrafficState
from routers.planning.objects import JSON, LiveObjects
from routers.planning.offline import apply_plans
from routers.registry import Registry
from tests.conftest import ROOT, THIRDPARTY, entry

FOREIGN = "xForeignField"


@dataclass
class Case:
    name: str
    registry: Registry
    example: Path


def _cases() -> Iterator[Case]:
    installed = Registry()
    for name in installed.names():
        yield Case(name, installed, ROOT / "examples" / name)
    yield Case("configmap", _thirdparty_registry(), THIRDPARTY / "example")


def _thirdparty_registry() -> Registry:
    import sys

    if str(THIRDPARTY) not in sys.path:
        sys.path.insert(0, str(THIRDPARTY))
    return Registry(
        lambda: [entry("configmap", "routers_example_configmap:ConfigMapPlugin")], disabled=()
    )  # type: ignore[list-item]


CASES = list(_cases())


@dataclass
class Loaded:
    routing: RoutingConfig
    bindings: list[Binding]
    live: LiveObjects
    manifests: list[JSON]
    facts: ClusterFacts
    example_state: TrafficState
    caps: Capabilities


def load(case: Case) -> Loaded:
    ex = case.example
    if not (ex / "routing.yaml").exists():
        pytest.fail(
            f"plugin {case.name!r} has no example at {ex} (routing.yaml, live.yaml, state.yaml)"
        )
    routing = RoutingConfig.from_document(load_one(str(ex / "routing.yaml")))
    manifests = load_documents([str(ex / "live.yaml")])
    facts = facts_from_manifests(manifests)
    bindings = bind(routing, case.registry)
    objects = [d for d in manifests if d.get("kind") != "CustomResourceDefinition"]
    pool = LiveObjects.from_manifests(objects, routing.namespace or "default")
    live = gather(bindings, pool.get)
    state = TrafficState.parse(load_one(str(ex / "state.yaml")))
    (binding,) = [b for b in bindings if b.name == case.name]
    return Loaded(
        routing,
        bindings,
        live,
        manifests,
        facts,
        state,
        binding.plugin.capabilities(binding.config, facts),
    )


# -- generating states within declared capabilities ------------------------------------------

header_names = st.text(alphabet=string.ascii_letters + "-", min_size=1, max_size=10).filter(
    lambda s: s[0] != "-" and s[-1] != "-"
)
values = st.text(alphabet=string.ascii_letters + string.digits + "-.", min_size=1, max_size=10)
regexes = st.sampled_from(["[a-z]+", "beta-[0-9]+", "(alpha|beta)", "v[0-9]\\.[0-9]+"])


def string_match(kinds: frozenset[str], path: bool = False) -> st.SearchStrategy[dict[str, str]]:
    def build(kind: str, v: str, rx: str) -> dict[str, str]:
        if kind == "regex":
            return {"regex": ("/" if path else "") + rx}
        return {kind: ("/" + v) if path else v}

    return st.builds(build, st.sampled_from(sorted(kinds)), values, regexes)


@st.composite
def request_match(draw: st.DrawFn, caps: MatchLimits) -> dict[str, Any]:
    match: dict[str, Any] = {}
    if caps.header_match:
        limit = min(caps.max_headers_per_match or 2, 2)
        names = draw(st.lists(header_names, min_size=1, max_size=limit, unique_by=str.lower))
        match["headers"] = [{"name": n, **draw(string_match(caps.header_match))} for n in names]
    if caps.path_match and draw(st.booleans()):
        match["path"] = draw(string_match(caps.path_match, path=True))
    if caps.method_match and draw(st.booleans()):
        match["method"] = draw(st.sampled_from(["GET", "POST"]))
    if caps.query_match and draw(st.booleans()):
        match["queryParams"] = [{"name": "variant", **draw(string_match(caps.query_match))}]
    assume(match)
    return match


@st.composite
def states(draw: st.DrawFn, loaded: Loaded) -> TrafficState:
    caps = loaded.caps
    if loaded.routing.max_traffic_weight:
        total = loaded.routing.max_traffic_weight
    else:
        total = draw(
            st.sampled_from(
                [100, 1000, 1_000_000] if caps.max_total is None else [100, caps.max_total]
            )
        )
    weight = draw(st.integers(0, total)) if caps.weight else 0
    doc: dict[str, Any] = {"weight": weight, "total": total}
    extra = [d.service for d in loaded.example_state.additional_destinations]
    if extra and caps.additional_destinations:
        left = total - weight
        dests = []
        for service in extra:
            w = draw(st.integers(0, left))
            left -= w
            dests.append({"service": service, "weight": w})
        doc["additionalDestinations"] = dests
    managed = [r.name for r in loaded.routing.managed_routes] or [
        "canary-header",
        "canary-beta",
        "canary-mirror",
        "canary-shadow",
    ]
    budget = min(caps.max_routes if caps.max_routes is not None else 3, 3, len(managed))
    names = draw(st.lists(st.sampled_from(managed), unique=True, max_size=budget))
    header_limits, mirror_limits = caps.header_limits, caps.limits(mirror=True)
    per_route = min(header_limits.max_matches_per_route or 2, 2)
    per_mirror = min(mirror_limits.max_matches_per_route or 2, 2)
    headers, mirrors = [], []
    for name in names:
        can_mirror = caps.mirror is not MirrorSupport.NONE
        if caps.header_routes and (not can_mirror or draw(st.booleans())):
            headers.append(
                {
                    "name": name,
                    "matches": draw(
                        st.lists(request_match(header_limits), min_size=1, max_size=per_route)
                    ),
                }
            )
        elif can_mirror:
            pct = {
                MirrorSupport.FULL_ONLY: st.sampled_from([5.0, 100.0])
                if caps.mirror_round_up
                else st.just(100.0),
                MirrorSupport.PERCENT: st.integers(1, 100).map(float),
                MirrorSupport.FRACTION: st.sampled_from([0.5, 12.5, 50.0, 100.0]),
            }[caps.mirror]
            mirrors.append(
                {
                    "name": name,
                    "matches": draw(
                        st.lists(request_match(mirror_limits), min_size=1, max_size=per_mirror)
                    ),
                    "percentage": draw(pct),
                }
            )
    if headers and not caps.header_routes_with_weight:
        doc["weight"] = 0
        for d in doc.get("additionalDestinations", []):
            d["weight"] = 0
    doc["headerRoutes"] = headers
    doc["mirrorRoutes"] = mirrors
    return TrafficState.parse(doc)


# -- helpers ------------------------------------------------------------------------------------


def inject_foreign(obj: JSON) -> JSON:
    """Mark fields we do not own: annotations, and an unknown key in every object inside spec lists."""
    out = copy.deepcopy(obj)
    out.setdefault("metadata", {}).setdefault("annotations", {})["example.com/foreign"] = "keep"

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for item in node:
                if isinstance(item, dict):
                    item[FOREIGN] = {"keep": True}
                walk(item)

    spec = out.get("spec")
    if isinstance(spec, dict):
        spec[FOREIGN] = {"keep": True}
        walk(spec)
    return out


def count_foreign(node: Any) -> int:
    if isinstance(node, dict):
        return (FOREIGN in node) + sum(count_foreign(v) for v in node.values())
    if isinstance(node, list):
        return sum(count_foreign(v) for v in node)
    return 0


def step(loaded: Loaded, live: LiveObjects, desired: Desired) -> tuple[LiveObjects, list[Any]]:
    before = copy.deepcopy(dict(live.items()))
    plans = plan_all(loaded.bindings, live, desired, loaded.facts, routing=loaded.routing)
    assert dict(live.items()) == before, "plan() mutated the live objects it was given"
    after = apply_plans(plans, live)
    return LiveObjects((r, o) for r, o in after.items() if o is not None), plans


def plan_is_empty(loaded: Loaded, live: LiveObjects, desired: Desired) -> None:
    again = plan_all(loaded.bindings, live, desired, loaded.facts, routing=loaded.routing)
    ops = [e for p in again for e in p.to_data()]
    assert not ops, f"second plan is not empty: {ops}"


# -- the suite ----------------------------------------------------------------------------------

ids = [c.name for c in CASES]


@pytest.fixture(params=CASES, ids=ids)
def loaded(request: pytest.FixtureRequest) -> Loaded:
    return load(request.param)


def test_plugin_declares_the_contract(loaded: Loaded) -> None:
    for b in loaded.bindings:
        assert isinstance(b.plugin, RouterPlugin)
        assert b.plugin.permissions(b.config), f"{b.name} declares no RBAC permissions"


def test_example_state_plans_and_verifies(loaded: Loaded) -> None:
    live, _ = step(loaded, loaded.live, loaded.example_state)
    plan_is_empty(loaded, live, loaded.example_state)
    report = verify(
        loaded.bindings,
        observe_all(loaded.bindings, live, loaded.facts),
        loaded.example_state,
        loaded.facts,
    )
    assert report.ok, report.mismatches


def property_test(examples: int) -> Any:
    """Hypothesis settings of the suite's property tests (fixtures are per-plugin, not per-case)."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
        ],
    )


@property_test(40)
@given(data=st.data())
def test_generated_states(loaded: Loaded, data: st.DataObject) -> None:
    state = data.draw(states(loaded))
    live0 = LiveObjects((r, inject_foreign(o)) for r, o in loaded.live.items())
    foreign0 = {r: count_foreign(o) for r, o in live0.items()}
    try:
        live1, _ = step(loaded, live0, state)
    except UnsupportedError:
        assume(False)  # a combination the capability model cannot describe; must be rare
        return
    except WeightFitError:
        assume(False)  # more canary than the example's foreign destinations leave room for
        return
    plan_is_empty(loaded, live1, state)
    report = verify(
        loaded.bindings,
        observe_all(loaded.bindings, live1, loaded.facts),
        state,
        loaded.facts,
        routing=loaded.routing,
    )
    assert report.ok, report.mismatches
    for ref, n in foreign0.items():
        assert ref in live1, f"{ref} disappeared"
        assert count_foreign(live1[ref]) >= n, f"{ref}: fields we do not own were lost"
        assert live1[ref]["metadata"]["annotations"]["example.com/foreign"] == "keep"

    # Cleanup: exact, complete and idempotent.
    live2, _ = step(loaded, live1, Cleanup())
    plan_is_empty(loaded, live2, Cleanup())
    assert set(live2) <= set(live0) | set(live1)
    created = set(live1) - set(live0)
    assert not (created & set(live2)), f"cleanup left objects we created: {created & set(live2)}"
    for obs in observe_all(loaded.bindings, live2, loaded.facts):
        assert not obs.header_routes and not obs.mirror_routes, (
            f"{obs.plugin}: managed routes left after cleanup"
        )
        for w in obs.weights:
            assert w.canary == 0, (
                f"{obs.plugin}: {w.location} still sends traffic to canary after cleanup"
            )
    for ref, n in foreign0.items():
        assert count_foreign(live2[ref]) == n, f"{ref}: foreign fields changed by cleanup"


def test_invalid_states_never_reach_plan(tmp_path: Path) -> None:
    """The model rejects invalid input before any plugin code runs."""
    calls: list[object] = []
    case = CASES[-1]
    loaded = load(case)
    plugin = loaded.bindings[0].plugin
    original = plugin.plan

    def spy(*args: object) -> Any:
        calls.append(args)
        return original(*args)  # type: ignore[arg-type]

    plugin.plan = spy  # type: ignore[method-assign]
    from routers import registry as registry_mod
    from routers.cli import main

    registry_mod._default = case.registry
    try:
        for bad in [
            "weight: 101",
            "weight: -5",
            "total: 0",
            "headerRoutes: [{name: h, matches: [{headers: [{name: 'a b', exact: x}]}]}]",
        ]:
            f = tmp_path / "s.yaml"
            f.write_text(bad)
            code = main(
                [
                    "plan",
                    "--config",
                    str(case.example / "routing.yaml"),
                    "--state",
                    str(f),
                    "-f",
                    str(case.example / "live.yaml"),
                ]
            )
            assert code == 1
        assert not calls
    finally:
        registry_mod._default = None
        plugin.plan = original  # type: ignore[method-assign]
