"""Issue 12: Argo's route selectors (``httpRouteSelector``, ``grpcRouteSelector``,
``tcpRouteSelector``, ``tlsRouteSelector``) through the core's selector targets.

As Argo's plugin does (pkg/plugin ``discoverRoutesBySelector``): every route of the kind in the
config's namespace whose labels match is added with ``useHeaderRoutes: false``, next to the
named ones. Where it differs, on purpose: a route both named and selected is weighted once and
keeps its named entry, and a selector that matches nothing is an error rather than a no-op.
"""

from __future__ import annotations

from typing import Any

import pytest
from gatewayapi_helpers import (
    NO_FACTS,
    NS,
    PLUGIN,
    config,
    live,
    route,
    rules_of,
    state,
    weights_of,
)

from routers.engine import bind, gather, offline_lister, plan_offline
from routers.errors import TargetNotFoundError, UnsupportedError
from routers.model import Cleanup, RoutingConfig
from routers.planning.objects import LiveObjects
from routers.planning.offline import apply_plans

SELECTOR = {"matchLabels": {"app": "web"}}
HEADER = {"name": "h", "matches": [{"headers": [{"name": "X-Canary", "exact": "1"}]}]}


def labelled(name: str, **labels: str) -> dict[str, Any]:
    return route(name=name, labels=labels)


def listed(cfg: Any, *objs: dict[str, Any]) -> LiveObjects:
    """What the core hands the plugin: the selectors listed over ``objs``."""
    pool = live(*objs)

    class _B:
        plugin = PLUGIN
        config = cfg

    return gather([_B()], pool.get, list_objects=offline_lister(pool))  # type: ignore[list-item]


def test_selected_routes_are_weighted_and_others_are_not_read() -> None:
    cfg = config({"httpRouteSelector": SELECTOR})
    objs = listed(
        cfg, labelled("a", app="web"), labelled("b", app="web"), labelled("c", app="other")
    )
    assert sorted(r.name for r in objs) == ["a", "b"]
    plan = PLUGIN.plan(cfg, objs, state(weight=30), NO_FACTS)
    assert sorted(op.ref.name for op in plan) == ["a", "b"]


def test_named_and_selected_route_is_weighted_once_and_keeps_its_header_routes() -> None:
    cfg = config({"httpRoute": "a", "httpRouteSelector": SELECTOR})
    objs = listed(cfg, labelled("a", app="web"), labelled("b", app="web"))
    desired = state(weight=10, headerRoutes=[HEADER])
    out = PLUGIN.plan(cfg, objs, desired, NO_FACTS)
    assert sorted(op.ref.name for op in out) == ["a", "b"]
    after = LiveObjects((r, o) for r, o in apply_plans([out], objs).items() if o is not None)
    # Only the named route (singular httpRoute: useHeaderRoutes) carries the header rule.
    assert [r.get("name") for r in rules_of(after, name="a")] == ["h", None]
    assert [r.get("name") for r in rules_of(after, name="b")] == [None]
    assert weights_of(rules_of(after, name="b")[0]) == {"web-stable": 90, "web-canary": 10}


def test_selector_routes_take_no_header_routes_as_in_argo() -> None:
    cfg = config({"httpRouteSelector": SELECTOR})
    objs = listed(cfg, labelled("a", app="web"))
    with pytest.raises(UnsupportedError, match="useHeaderRoutes"):
        PLUGIN.plan(cfg, objs, state(headerRoutes=[HEADER]), NO_FACTS)


def test_a_selector_matching_nothing_is_an_error_and_a_note_on_cleanup() -> None:
    cfg = config({"httpRouteSelector": SELECTOR})
    objs = listed(cfg, labelled("c", app="other"))
    with pytest.raises(
        TargetNotFoundError, match=r"no HTTPRoute in namespace shop has labels app=web"
    ):
        PLUGIN.plan(cfg, objs, state(weight=10), NO_FACTS)
    notes = PLUGIN.plan(cfg, objs, Cleanup(), NO_FACTS).notes
    assert any("nothing to clean up" in n.message for n in notes)
    assert any("app=web" in p for p in PLUGIN.observe(cfg, objs, NO_FACTS).problems)


def test_rbac_adds_list_only_where_a_selector_needs_it() -> None:
    cfg = config({"grpcRoute": "g", "httpRouteSelector": SELECTOR})
    perms = {p.resource: p.verbs for p in PLUGIN.permissions(cfg)}
    assert perms == {"grpcroutes": ("get", "patch"), "httproutes": ("get", "list", "patch")}


def test_every_route_kind_has_a_selector() -> None:
    cfg = config(
        {
            "httpRouteSelector": SELECTOR,
            "grpcRouteSelector": SELECTOR,
            "tcpRouteSelector": SELECTOR,
            "tlsRouteSelector": SELECTOR,
        }
    )
    refs = PLUGIN.targets(cfg, LiveObjects())
    assert sorted(r.kind for r in refs) == ["GRPCRoute", "HTTPRoute", "TCPRoute", "TLSRoute"]
    assert all(r.namespace == NS for r in refs)


def test_offline_plan_selects_among_the_manifests() -> None:
    routing = RoutingConfig.from_document(
        {
            "stableService": "web-stable",
            "canaryService": "web-canary",
            "namespace": NS,
            "plugins": {"argoproj-labs/gatewayAPI": {"httpRouteSelector": SELECTOR}},
        }
    )
    docs = [labelled("a", app="web"), labelled("z", app="zzz")]
    result = plan_offline(routing, state(weight=40), docs)
    assert [ref.name for ref in result.changed] == ["a"]
    assert weights_of(rules_of(LiveObjects(result.after.items()), name="a")[0]) == {
        "web-stable": 60,
        "web-canary": 40,
    }
    (binding,) = bind(routing)
    assert binding.name == "gatewayapi"
