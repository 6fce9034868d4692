"""Sequences of states on the example objects: every step converges in one plan, verifies, keeps
what is not ours, and cleanup from any point restores the original routes and subsets."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routers.engine import bind, gather, observe_all, plan_all, verify
from routers.io import load_documents, load_one
from routers.model import Cleanup, Desired, RoutingConfig, TrafficState
from routers.planning.objects import LiveObjects
from routers.planning.offline import apply_plans

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "istio"
ROUTING = RoutingConfig.from_document(load_one(str(EXAMPLE / "routing.yaml")))
MANIFESTS = load_documents([str(EXAMPLE / "live.yaml")])
NAMES = ["canary-header", "canary-mirror"]

matches = st.sampled_from(
    [
        [{"headers": [{"name": "x-canary", "exact": "always"}]}],
        [{"path": {"prefix": "/api/"}, "method": "GET"}],
        [
            {"queryParams": [{"name": "beta", "regex": "[0-9]+"}]},
            {"headers": [{"name": "x-b", "prefix": "v1."}]},
        ],
    ]
)


@st.composite
def states(draw: st.DrawFn) -> TrafficState:
    weight = draw(st.integers(0, 80))
    doc: dict[str, Any] = {
        "weight": weight,
        "canaryHash": draw(st.sampled_from(["h1", "h2"])),
        "stableHash": "h0",
    }
    extras = draw(st.lists(st.sampled_from(["exp-a", "exp-b"]), unique=True, max_size=2))
    doc["additionalDestinations"] = [
        {
            "service": s,
            "weight": draw(st.integers(0, (100 - weight) // 2)),
            **({"podTemplateHash": "e" + s[-1]} if draw(st.booleans()) else {}),
        }
        for s in extras
    ]
    doc["headerRoutes"], doc["mirrorRoutes"] = [], []
    for name in draw(st.lists(st.sampled_from(NAMES), unique=True)):
        route = {"name": name, "matches": draw(matches)}
        if draw(st.booleans()):
            doc["headerRoutes"].append(route)
        else:
            doc["mirrorRoutes"].append(
                {**route, "percentage": draw(st.sampled_from([1.5, 50.0, 100.0]))}
            )
    return TrafficState.parse(doc)


def step(bindings: Any, live: LiveObjects, desired: Desired) -> LiveObjects:
    plans = plan_all(bindings, live, desired, _facts(), routing=ROUTING)
    after = apply_plans(plans, live)
    out = LiveObjects((r, o) for r, o in after.items() if o is not None)
    again = plan_all(bindings, out, desired, _facts(), routing=ROUTING)
    assert not [e for p in again for e in p.to_data()], "second plan is not empty"
    return out


def _facts() -> Any:
    from routers.contract import ClusterFacts

    return ClusterFacts()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequence=st.lists(states(), min_size=1, max_size=4), mirrors=st.booleans())
def test_state_sequences_converge_and_clean_up(sequence: list[TrafficState], mirrors: bool) -> None:
    routing = ROUTING
    if mirrors:
        section = routing.sections[0]
        body = {**section.body, "mirrorField": "mirrors"}
        routing = routing.model_copy(
            update={"sections": (section.model_copy(update={"body": body}),)}
        )
    bindings = bind(routing)
    pool = LiveObjects.from_manifests(MANIFESTS, "shop")
    original = gather(bindings, pool.get)
    live = LiveObjects((r, copy.deepcopy(o)) for r, o in original.items())
    for desired in sequence:
        live = step(bindings, live, desired)
        report = verify(bindings, observe_all(bindings, live, _facts()), desired, _facts())
        assert report.ok, report.mismatches
        vs = next(o for r, o in live.items() if r.kind == "VirtualService")
        names = [r.get("name") for r in vs["spec"]["http"]]
        wanted = [
            r.name
            for r in sorted(
                [*desired.header_routes, *desired.mirror_routes], key=lambda r: NAMES.index(r.name)
            )
        ]
        # Every match drawn overlaps both selected routes: one copy before each.
        assert names == ["admin", *wanted, "mobile", *(f"{n}.2" for n in wanted), "primary"]
    live = step(bindings, live, Cleanup())
    for ref, obj in original.items():
        got = live[ref]
        if ref.kind == "VirtualService":
            assert got["spec"]["http"][0] == obj["spec"]["http"][0]
            assert [r["name"] for r in got["spec"]["http"]] == ["admin", "mobile", "primary"]
            for route in got["spec"]["http"][1:]:
                assert [d["weight"] for d in route["route"]] == [100, 0]
        else:
            assert [s["name"] for s in got["spec"]["subsets"]] == [
                s["name"] for s in obj["spec"]["subsets"]
            ]
            assert got["spec"]["subsets"][2] == obj["spec"]["subsets"][2]
        assert (
            "annotations" not in got["metadata"]
            or "canary-routers.io/managed" not in got["metadata"]["annotations"]
        )
