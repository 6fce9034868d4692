"""Issue 12 on a real kube-apiserver: Argo configs that need the cluster to answer.

* ``httpRouteSelector``: the cluster layer lists the routes with one LIST call carrying the
  label selector, as the user that holds exactly the Role ``routers rbac`` generates (which must
  contain ``list``); without ``list`` the error names the verb.
* Argo's e2e fixture ``istio-host-only-tls-split`` (a TLS-only VirtualService, ``routes:
  [primary]`` next to ``tlsRoutes``) planned from the whole Rollout, with the official Istio CRDs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from e2e.cluster import ControlPlane
from e2e.test_plugins_e2e import create_all, grant, kube_for
from routers.cluster import Router, WatchCache, rbac_manifests
from routers.errors import ForbiddenError
from routers.model import RoutingConfig, TrafficState
from routers.planning.objects import JSON, ObjectRef
from routers.registry import Registry
from tests.conftest import eventually
from tests.corpus.argo_corpus import CASES, load_case

pytestmark = pytest.mark.e2e

GROUP = "gateway.networking.k8s.io"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()


def http_route(name: str, labels: dict[str, str]) -> JSON:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "parentRefs": [{"name": "public"}],
            "rules": [
                {
                    "backendRefs": [
                        {"name": "web-stable", "port": 80, "weight": 100},
                        {"name": "web-canary", "port": 80, "weight": 0},
                    ]
                }
            ],
        },
    }


def weights(obj: JSON) -> list[int]:
    return [b["weight"] for b in obj["spec"]["rules"][0]["backendRefs"]]


def web_selector_config(ns: str) -> RoutingConfig:
    """Argo's selector form: every HTTPRoute labelled app=web except the internal tier."""
    return RoutingConfig.from_document(
        {
            "stableService": "web-stable",
            "canaryService": "web-canary",
            "namespace": ns,
            "plugins": {
                "argoproj-labs/gatewayAPI": {
                    "httpRouteSelector": {
                        "matchLabels": {"app": "web"},
                        "matchExpressions": [
                            {"key": "tier", "operator": "NotIn", "values": ["internal"]}
                        ],
                    }
                }
            },
        }
    )


def test_route_selector_is_one_list_call_with_the_generated_role(
    control_plane: Callable[..., ControlPlane], registry: Registry
) -> None:
    cp = control_plane(("gateway-standard-v1.6",))
    ns = cp.new_namespace("selector")
    admin = kube_for(cp, "admin")
    routes = [
        http_route("web", {"app": "web"}),
        http_route("web-mobile", {"app": "web", "tier": "public"}),
        http_route("web-internal", {"app": "web", "tier": "internal"}),
        http_route("other", {"app": "other"}),
    ]
    create_all(cp, admin, routes, ns)
    routing = web_selector_config(ns)
    manifests = rbac_manifests(routing, registry=registry)
    (role,) = [m for m in manifests if m["kind"] == "Role"]
    assert role["rules"] == [
        {"apiGroups": [GROUP], "resources": ["httproutes"], "verbs": ["get", "list", "patch"]}
    ]
    grant(cp, manifests, ns, user="routers-limited")
    router = Router(routing, kube=kube_for(cp, "routers-limited"), registry=registry)
    mark = cp.audit_mark()
    router.apply_state(TrafficState(weight=30))
    lists = cp.audit_events(mark, verbs=("list",), user="routers-limited", resource="httproutes")
    assert len(lists) == 1, cp.summarize(lists)
    assert "labelSelector" in lists[0]["requestURI"]
    for name, want in (
        ("web", [70, 30]),
        ("web-mobile", [70, 30]),
        ("web-internal", [100, 0]),
        ("other", [100, 0]),
    ):
        got = admin.get(ObjectRef(GROUP, "HTTPRoute", ns, name, "v1"))
        assert got is not None and weights(got) == want, name
    assert router.verify(TrafficState(weight=30)).ok
    mark = cp.audit_mark()
    assert router.apply_state(TrafficState(weight=30)).writes == 0
    assert cp.write_requests(since=mark, user="routers-limited") == []
    assert sorted(r.name for r in router.targets()) == ["web", "web-mobile"]

    # Without `list` the refusal names the verb and the resource.
    status, _ = cp.request(
        "PUT",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles/{role['metadata']['name']}",
        {
            **role,
            "metadata": {**role["metadata"], "namespace": ns},
            "rules": [{**role["rules"][0], "verbs": ["get", "patch"]}],
        },
    )
    assert status == 200
    with pytest.raises(ForbiddenError) as info:
        Router(routing, kube=kube_for(cp, "routers-limited"), registry=registry).apply_state(
            TrafficState(weight=40)
        )
    assert (info.value.verb, info.value.resource) == (
        "list",
        "httproutes.gateway.networking.k8s.io",
    )


def test_route_selector_from_a_watch_cache_sends_only_patches(
    control_plane: Callable[..., ControlPlane], registry: Registry
) -> None:
    """``httpRouteSelector`` over a WatchCache, as the user holding the ``--watch-cache`` Role:
    after the first list, steps send only their PATCHes (no LIST with the selector, no GET),
    and a route labelled later joins through the watch."""
    cp = control_plane(("gateway-standard-v1.6",))
    ns = cp.new_namespace("selector-cache")
    admin = kube_for(cp, "admin")
    routes = [
        http_route("web", {"app": "web"}),
        http_route("web-internal", {"app": "web", "tier": "internal"}),
        http_route("other", {"app": "other"}),
    ]
    create_all(cp, admin, routes, ns)
    routing = web_selector_config(ns)
    user = "routers-limited"  # bound below to exactly the --watch-cache Role of this namespace
    grant(cp, rbac_manifests(routing, registry=registry, watch_cache=True), ns, user=user)
    with WatchCache(kube_for(cp, user)) as cache:
        router = Router(routing, cache=cache, registry=registry)
        router.apply_state(TrafficState(weight=10))  # warm-up: discovery, facts, the list
        mark = cp.audit_mark()
        for w in (20, 30, 40):
            assert router.apply_state(TrafficState(weight=w)).writes == 1
            assert router.verify(TrafficState(weight=w)).ok
        assert router.apply_state(TrafficState(weight=40)).writes == 0
        seen = [e["verb"] for e in cp.audit_events(mark, user=user) if e["verb"] != "watch"]
        assert seen == ["patch"] * 3, seen
        status, body = cp.request(
            "PATCH",
            f"/apis/{GROUP}/v1/namespaces/{ns}/httproutes/other",
            {"metadata": {"labels": {"app": "web"}}},
            content_type="application/merge-patch+json",
        )
        assert status == 200, body
        eventually("the relabel", lambda: "other" in [r.name for r in router.targets()])
        assert router.apply_state(TrafficState(weight=50)).writes == 2
        assert cache.stats().gets == 0
    for name, want in (("web", [50, 50]), ("other", [50, 50]), ("web-internal", [100, 0])):
        got = admin.get(ObjectRef(GROUP, "HTTPRoute", ns, name, "v1"))
        assert got is not None and weights(got) == want, name


def test_argo_tls_only_virtual_service_from_the_whole_rollout(
    control_plane: Callable[..., ControlPlane], registry: Registry
) -> None:
    case = load_case(CASES / "argo-rollouts--test-e2e-istio-istio-host-only-tls-split")
    rollout = copy.deepcopy(case.rollout)
    cp = control_plane(("istio",))
    ns = cp.new_namespace("tls-only")
    admin = kube_for(cp, "admin")
    objects: list[dict[str, Any]] = [copy.deepcopy(d) for d in case.manifests]
    create_all(cp, admin, objects, ns)
    rollout["metadata"]["namespace"] = ns
    routing = RoutingConfig.from_document(rollout)
    router = Router(routing, kube=kube_for(cp), registry=registry)
    router.apply_state(TrafficState(weight=10))
    vs = admin.get(
        ObjectRef("networking.istio.io", "VirtualService", ns, "istio-host-split-tls-vsvc")
    )
    assert vs is not None
    # Argo's own e2e assertions for this fixture: tls[0] 90/10, no http routes appear.
    assert [d["weight"] for d in vs["spec"]["tls"][0]["route"]] == [90, 10]
    assert "http" not in vs["spec"]
    assert router.verify(TrafficState(weight=10)).ok
    assert router.apply_state(TrafficState(weight=10)).writes == 0
