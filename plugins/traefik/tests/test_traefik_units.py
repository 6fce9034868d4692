"""The Traefik plugin's config, capabilities, refusals, guards and observation."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from routers.contract import ClusterFacts, MirrorSupport
from routers.engine import bind, check_capabilities, plan_offline
from routers.errors import ConfigError, PlanError, TargetNotFoundError, UnsupportedError
from routers.model import Cleanup, RoutingConfig, TrafficState
from routers.planning.objects import LiveObjects
from routers.planning.ownership import LEDGER
from routers.registry import Registry
from routers.testing import rollout_document

CONFIG = {
    "stableService": "web-stable",
    "canaryService": "web-canary",
    "namespace": "shop",
    "managedRoutes": [{"name": "shadow"}],
    "traefik": {"weightedTraefikServiceName": "web"},
}
MIRROR = {"name": "shadow", "percentage": 10, "matches": [{"path": {"prefix": "/"}}]}


def ts(name: str, spec: dict[str, Any], **annotations: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "shop", "resourceVersion": "1"}
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "TraefikService",
        "metadata": meta,
        "spec": spec,
    }


def weighted(*services: dict[str, Any]) -> dict[str, Any]:
    return ts("web", {"weighted": {"services": list(services)}})


STABLE = {"name": "web-stable", "port": 8080, "weight": 100}
CANARY = {"name": "web-canary", "port": 8080, "weight": 0}
FRONT = ts("argo-mirror-web", {"mirroring": {"name": "web", "kind": "TraefikService"}})


def routing(**traefik: Any) -> RoutingConfig:
    return RoutingConfig.parse({**CONFIG, "traefik": {**CONFIG["traefik"], **traefik}})


def plan(objects: list[dict[str, Any]], state: dict[str, Any] | Cleanup, **traefik: Any) -> Any:
    desired = state if isinstance(state, Cleanup) else TrafficState.parse(state)
    return plan_offline(routing(**traefik), desired, objects)


def after(result: Any, name: str) -> dict[str, Any]:
    (obj,) = [o for r, o in result.after.items() if r.name == name and o is not None]
    return obj  # type: ignore[no-any-return]


# -- config --------------------------------------------------------------------------------


def test_argo_rollout_config_is_accepted_and_the_mirror_name_follows_argo() -> None:
    rollout = rollout_document(
        {
            "stableService": "web-stable",
            "canaryService": "web-canary",
            "trafficRouting": {"traefik": {"weightedTraefikServiceName": "web"}},
        },
        name="demo",
        namespace="shop",
    )
    (b,) = bind(RoutingConfig.from_document(rollout))
    assert (b.config.weighted.name, b.config.mirror.name) == ("web", "argo-mirror-web")
    (b,) = bind(routing(mirrorTraefikServiceName="front"))
    assert b.config.mirror.name == "front"


@pytest.mark.parametrize(
    ("section", "where"),
    [
        ({"weightedTraefikServiceName": "web", "routes": []}, "traefik.routes"),
        ({}, "traefik.weightedTraefikServiceName"),
        (
            {"weightedTraefikServiceName": "web", "mirrorTraefikServiceName": "web"},
            "traefik",
        ),
        ({"weightedTraefikServiceName": "Web_1"}, "traefik.weightedTraefikServiceName"),
        ({"weightedTraefikServiceName": "w" * 250}, "traefik.weightedTraefikServiceName"),
    ],
)
def test_config_errors_name_the_field(section: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as exc:
        bind(RoutingConfig.parse({**CONFIG, "traefik": section}))
    assert where in {p.path for p in exc.value.problems}


# -- capabilities: what a TraefikService can and cannot express -------------------------------


def test_capabilities_no_header_routes_whole_percent_mirrors_of_everything() -> None:
    plugin = Registry().load("traefik")
    caps = plugin.capabilities()
    assert not caps.header_routes
    assert caps.mirror is MirrorSupport.PERCENT
    assert caps.limits(mirror=True).path_match == {"prefix"}
    assert caps.max_routes == 1 and caps.max_total is None and caps.additional_destinations


def test_header_routes_are_refused_with_the_reason() -> None:
    (b,) = bind(routing())
    header = {"name": "shadow", "matches": [{"headers": [{"name": "X-Canary", "exact": "1"}]}]}
    with pytest.raises(UnsupportedError, match="header-based routing") as exc:
        check_capabilities(b, TrafficState.parse({"headerRoutes": [header]}), ClusterFacts())
    assert exc.value.hint is not None and "IngressRoute" in exc.value.hint


def test_mirror_routes_must_cover_every_request_and_whole_percent() -> None:
    live = [weighted(STABLE, CANARY), FRONT]
    narrow = {**MIRROR, "matches": [{"path": {"prefix": "/api"}}]}
    with pytest.raises(UnsupportedError, match="only match it can express is path prefix /"):
        plan(live, {"mirrorRoutes": [narrow]})
    with pytest.raises(UnsupportedError, match="whole percentages"):
        plan(live, {"mirrorRoutes": [{**MIRROR, "percentage": 12.5}]})
    with pytest.raises(UnsupportedError, match="method matches"):
        plan(live, {"mirrorRoutes": [{**MIRROR, "matches": [{"method": "GET"}]}]})


# -- planning -------------------------------------------------------------------------------


def test_every_weight_edit_is_guarded_by_the_entry_name() -> None:
    result = plan([weighted(STABLE, CANARY)], {"weight": 25})
    ((op,),) = [list(p) for p in result.plans]
    assert op.ops == (
        {"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
        {"op": "test", "path": "/spec/weighted/services/0/name", "value": "web-stable"},
        {"op": "replace", "path": "/spec/weighted/services/0/weight", "value": 75},
        {"op": "test", "path": "/spec/weighted/services/1/name", "value": "web-canary"},
        {"op": "replace", "path": "/spec/weighted/services/1/weight", "value": 25},
        # This owner's claim on the round robin: guarded to be the first ledger written.
        {"op": "test", "path": "/metadata/annotations", "value": None},
        {
            "op": "add",
            "path": "/metadata/annotations",
            "value": {
                LEDGER: '{"owners":{"shop/web-canary":{"split":'
                '{"canary":"shop/web-canary","stable":"shop/web-stable"}}},"v":2}'
            },
        },
    )


def test_an_omitted_foreign_weight_counts_as_traefiks_default_of_one() -> None:
    legacy = {"name": "web-legacy", "port": 8080}  # weight omitted: 1 in Traefik
    out = after(plan([weighted({**STABLE, "weight": 3}, legacy)], {"weight": 50}), "web")
    services = out["spec"]["weighted"]["services"]
    # legacy keeps its 1/4 (an omitted weight is Traefik's 1); the canary gets 50% of all the
    # traffic (2 of 4) and stable the remaining 1/4.
    assert [(s["name"], s.get("weight")) for s in services] == [
        ("web-stable", 1),
        ("web-legacy", None),
        ("web-canary", 2),
    ]


@pytest.mark.parametrize(
    ("objects", "state", "error", "message"),
    [
        ([], {"weight": 5}, TargetNotFoundError, "weightedTraefikServiceName"),
        (
            [ts("web", {"mirroring": {"name": "x"}})],
            {"weight": 5},
            PlanError,
            "has no spec.weighted.services",
        ),
        ([weighted(CANARY)], {"weight": 5}, PlanError, "no entry for the stable Service"),
        ([weighted(STABLE, STABLE)], {"weight": 5}, PlanError, "more than once"),
        (
            [weighted(STABLE, {"name": "exp", "port": 1})],
            {"additionalDestinations": [{"service": "exp", "weight": 5}]},
            PlanError,
            "only weights entries it added",
        ),
        (
            [weighted(STABLE)],
            {"additionalDestinations": [{"service": "web-canary", "weight": 5}]},
            ConfigError,
            "stable or canary Service",
        ),
        (
            [weighted({**STABLE, "weight": 0}, {"name": "legacy", "weight": 4})],
            {"weight": 5},
            PlanError,
            "keep 100% of it: at most 0% fits",
        ),
        (
            [weighted(STABLE, CANARY)],
            {"mirrorRoutes": [MIRROR]},
            TargetNotFoundError,
            "argo-mirror",
        ),
        (
            [weighted(STABLE, CANARY), ts("argo-mirror-web", {"mirroring": {"name": "other"}})],
            {"mirrorRoutes": [MIRROR]},
            PlanError,
            "does not serve TraefikService 'web'",
        ),
        (
            [
                weighted(STABLE, CANARY),
                ts(
                    "argo-mirror-web",
                    {
                        "mirroring": {
                            "name": "web",
                            "kind": "TraefikService",
                            "mirrors": [{"name": "web-canary", "percent": 50}],
                        }
                    },
                ),
            ],
            {"mirrorRoutes": [MIRROR]},
            PlanError,
            "already mirrors to the canary Service",
        ),
    ],
)
def test_refusals_name_the_object_and_the_reason(
    objects: list[dict[str, Any]], state: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        plan(objects, state)


def test_nothing_to_do_without_a_mirroring_service_when_no_mirror_is_asked() -> None:
    result = plan([weighted(STABLE, CANARY)], {"weight": 0})
    assert [op.ref.name for p in result.plans for op in p] == ["web"]  # the claim only
    result = plan([weighted(STABLE, CANARY)], Cleanup())
    assert all(p.empty for p in result.plans)


def test_live_objects_are_never_mutated() -> None:
    live = [weighted(STABLE, CANARY), copy.deepcopy(FRONT)]
    before = copy.deepcopy(live)
    plan(live, {"weight": 30, "mirrorRoutes": [MIRROR]})
    assert live == before


# -- observing ------------------------------------------------------------------------------


def _observe(objects: list[dict[str, Any]]) -> Any:
    (b,) = bind(routing())
    live = LiveObjects.from_manifests(objects, "shop")
    return b.plugin.observe(b.config, live, ClusterFacts())


def test_observe_reports_weights_mirror_and_what_someone_removed() -> None:
    state = {
        "weight": 30,
        "additionalDestinations": [{"service": "exp", "weight": 10}],
        "mirrorRoutes": [MIRROR],
    }
    result = plan([weighted(STABLE), FRONT], state)
    objects = [o for o in result.after.values() if o is not None]
    obs = _observe(objects)
    (w,) = obs.weights
    assert (w.stable, w.canary, w.additional) == (60, 30, (("exp", 10),))
    assert obs.mirror_routes == {"shadow": 10.0}
    assert not obs.problems
    # Someone deletes the canary entry and the canary mirror: both are reported.
    for o in objects:
        spec = o["spec"]
        if "weighted" in spec:
            spec["weighted"]["services"] = [
                s for s in spec["weighted"]["services"] if s["name"] != "web-canary"
            ]
        else:
            spec["mirroring"]["mirrors"] = []
    problems = " ".join(_observe(objects).problems)
    assert "Service 'web-canary' is missing" in problems
    assert "mirror route 'shadow' has no mirrors entry" in problems


def test_cleanup_gives_a_rescaled_foreign_service_its_weight_back() -> None:
    """legacy holds 1 of 2; 20% to the canary needs a finer sum (legacy 5 of 10): the ledger
    keeps its 1 (and our sum) and cleanup restores the list as it was."""
    legacy = {"name": "web-legacy", "port": 8080, "weight": 1}
    out = after(plan([weighted({**STABLE, "weight": 1}, legacy)], {"weight": 20}), "web")
    pairs = [(s["name"], s.get("weight")) for s in out["spec"]["weighted"]["services"]]
    assert pairs == [("web-stable", 3), ("web-legacy", 5), ("web-canary", 2)]
    cleaned = after(plan([out], Cleanup()), "web")
    pairs = [(s["name"], s.get("weight")) for s in cleaned["spec"]["weighted"]["services"]]
    assert pairs == [("web-stable", 1), ("web-legacy", 1)]
    assert LEDGER not in (cleaned["metadata"].get("annotations") or {})
    # Changed by someone else meanwhile: theirs; stable takes what we held (3 + 2).
    edited = copy.deepcopy(out)
    edited["spec"]["weighted"]["services"][1]["weight"] = 2
    kept = after(plan([edited], Cleanup()), "web")
    pairs = [(s["name"], s.get("weight")) for s in kept["spec"]["weighted"]["services"]]
    assert pairs == [("web-stable", 5), ("web-legacy", 2)]
