"""Issue 12: Argo Rollouts' Istio configs accepted as Argo accepts them.

Facts from Argo's code (rollout/trafficrouting/istio, pkg/apis/rollouts/validation): a Rollout
needs stableService and canaryService unless ``istio.destinationRule`` is set (then the two
subsets are the versions); http routes are processed only when the VirtualService has
``spec.http`` (so ``routes: [primary]`` next to ``tlsRoutes`` on a TLS-only VirtualService is
ignored, e2e fixture ``istio-host-only-tls-split``); a named http route that does not exist in a
VirtualService with http routes is an error; a tls/tcp route the config does not select is
weighted too.
"""

from __future__ import annotations

from typing import Any

import pytest
from istio_helpers import (
    FACTS,
    PLUGIN,
    dest,
    dr,
    get,
    live,
    plan,
    route,
    run,
    state,
    vs,
    weights_of,
)

from routers.engine import bind
from routers.errors import ConfigError, PlanError, TargetNotFoundError, UnsupportedError
from routers.model import RoutingConfig
from routers.testing import rollout_document

HEADER = {"name": "h", "matches": [{"headers": [{"name": "X-Canary", "exact": "yes"}]}]}


def rollout(canary: dict[str, Any]) -> dict[str, Any]:
    return rollout_document(canary, name="app", namespace="app")


def bound(doc: dict[str, Any]) -> Any:
    (binding,) = bind(RoutingConfig.from_document(doc))
    return binding.config


def tls(port: int, sni: str, *dests: dict[str, Any]) -> dict[str, Any]:
    return {"match": [{"port": port, "sniHosts": [sni]}], "route": list(dests)}


def test_subset_level_split_needs_no_stable_or_canary_service() -> None:
    cfg = bound(
        rollout(
            {
                "trafficRouting": {
                    "istio": {
                        "virtualService": {"name": "app", "routes": ["primary"]},
                        "destinationRule": {
                            "name": "app",
                            "stableSubsetName": "stable",
                            "canarySubsetName": "canary",
                        },
                    }
                }
            }
        )
    )
    objs = live(
        vs("app", route("primary", dest("svc", 100, "stable"), dest("svc", 0, "canary"))), dr()
    )
    after = run(cfg, objs, state(weight=30, stableHash="s1", canaryHash="c1"))
    assert weights_of(get(after)["spec"]["http"][0]) == [70, 30]
    subsets = get(after, "DestinationRule")["spec"]["subsets"]
    assert [s["labels"]["rollouts-pod-template-hash"] for s in subsets] == ["s1", "c1"]


def test_host_level_split_still_needs_both_services() -> None:
    doc = rollout(
        {"canaryService": "c", "trafficRouting": {"istio": {"virtualService": {"name": "app"}}}}
    )
    with pytest.raises(ConfigError) as info:
        bind(RoutingConfig.from_document(doc))
    (problem,) = info.value.problems
    assert problem.path == "istio.destinationRule"
    assert "stableService" in problem.message and "subset-level" in problem.message


def test_other_targets_still_need_both_services() -> None:
    doc = rollout({"trafficRouting": {"nginx": {"stableIngress": "web"}}})
    with pytest.raises(ConfigError) as info:
        bind(RoutingConfig.from_document(doc))
    assert [p.path for p in info.value.problems] == ["stableService", "canaryService"]


def _tls_only_config() -> Any:
    # The shape of Argo's e2e fixture istio-host-only-tls-split: routes names `primary`, the
    # VirtualService has only a tls route.
    return bound(
        rollout(
            {
                "stableService": "svc",
                "canaryService": "svc-canary",
                "trafficRouting": {
                    "istio": {
                        "virtualService": {
                            "name": "app",
                            "routes": ["primary"],
                            "tlsRoutes": [{"port": 3000, "sniHosts": ["app"]}],
                        }
                    }
                },
            }
        )
    )


def test_tls_only_virtual_service_ignores_named_http_routes_as_argo_does() -> None:
    cfg = _tls_only_config()
    objs = live(vs("app", tls=[tls(3000, "app", dest("svc", 100), dest("svc-canary", 0))]))
    p = plan(cfg, objs, state(weight=10))
    assert any("has no http routes" in n.message for n in p.notes)
    after = run(cfg, objs, state(weight=10))
    assert weights_of(get(after)["spec"]["tls"][0]) == [90, 10]
    observed = PLUGIN.observe(cfg, after, FACTS)
    assert [(w.location, w.canary) for w in observed.weights] == [
        ("VirtualService app/app tls[0]", 10)
    ]


def test_tls_only_virtual_service_refuses_header_routes_like_argo() -> None:
    objs = live(vs("app", tls=[tls(3000, "app", dest("svc", 100), dest("svc-canary", 0))]))
    with pytest.raises(UnsupportedError, match="tls/tcp routes"):
        plan(_tls_only_config(), objs, state(headerRoutes=[HEADER]))


def test_named_http_route_missing_from_existing_http_routes_is_an_error_like_argo() -> None:
    objs = live(
        vs(
            "app",
            route("other", dest("svc", 100), dest("svc-canary", 0)),
            tls=[tls(3000, "app", dest("svc", 100), dest("svc-canary", 0))],
        )
    )
    with pytest.raises(TargetNotFoundError, match="http route 'primary'"):
        plan(_tls_only_config(), objs, state(weight=10))


def test_unselected_tls_route_reaching_our_services_is_weighted_too() -> None:
    cfg = bound(
        rollout(
            {
                "stableService": "svc",
                "canaryService": "svc-canary",
                "trafficRouting": {
                    "istio": {"virtualService": {"name": "app", "routes": ["primary"]}}
                },
            }
        )
    )
    foreign_tls = tls(443, "other", dest("other", 100))
    objs = live(
        vs(
            "app",
            route("primary", dest("svc", 100), dest("svc-canary", 0)),
            tls=[foreign_tls, tls(3000, "app", dest("svc", 100), dest("svc-canary", 0))],
        )
    )
    after = get(run(cfg, objs, state(weight=25)))
    assert weights_of(after["spec"]["http"][0]) == [75, 25]
    assert weights_of(after["spec"]["tls"][1]) == [75, 25]
    assert after["spec"]["tls"][0] == foreign_tls


def test_a_virtual_service_with_nothing_to_weight_is_an_error() -> None:
    cfg = _tls_only_config()
    cfg_doc = vs("app", tls=[tls(3000, "app", dest("svc", 100), dest("svc-canary", 0))])
    cfg_doc["spec"]["tls"][0]["match"][0]["port"] = 3001
    with pytest.raises(TargetNotFoundError, match="no tls route with port 3000"):
        plan(cfg, live(cfg_doc), state(weight=10))
    nothing = bound(
        rollout(
            {
                "stableService": "svc",
                "canaryService": "svc-canary",
                "trafficRouting": {"istio": {"virtualService": {"name": "app"}}},
            }
        )
    )
    empty = vs("app", tcp=[{"match": [{"port": 5432}], "route": [dest("db", 100)]}])
    with pytest.raises(PlanError, match="no route to weight"):
        plan(nothing, live(empty), state(weight=10))
