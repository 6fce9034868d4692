"""Gateway API: specificity precedence across rules and routes, weights, RequestMirror."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from routers_gatewayapi.evaluate import simulate_grpc_routes, simulate_http_routes

from routers.simulate import parse_request
from routers.testing import route_scenario

F = Fraction


def ref(name: str, weight: int | None = None, **extra: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"name": name, "port": 80, **extra}
    if weight is not None:
        r["weight"] = weight
    return r


def rule(*matches: dict[str, Any], backends: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"backendRefs": backends, **extra}
    if matches:
        r["matches"] = list(matches)
    return r


def route(
    *rules: dict[str, Any], name: str = "api", ns: str = "shop", **meta: Any
) -> dict[str, Any]:
    spec: dict[str, Any] = {"parentRefs": [{"name": "gw"}], "rules": list(rules)}
    if "hostnames" in meta:
        spec["hostnames"] = meta.pop("hostnames")
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": ns, **meta},
        "spec": spec,
    }


def prefix(value: str, **more: Any) -> dict[str, Any]:
    return {"path": {"type": "PathPrefix", "value": value}, **more}


def exact(value: str, **more: Any) -> dict[str, Any]:
    return {"path": {"type": "Exact", "value": value}, **more}


def hdr(name: str, value: str, kind: str = "Exact") -> dict[str, Any]:
    return {"name": name, "value": value, "type": kind}


def go(routes: list[dict[str, Any]] | dict[str, Any], text: str, **kw: Any) -> Any:
    return simulate_http_routes(
        routes if isinstance(routes, list) else [routes], parse_request(text), **kw
    )


def test_exact_beats_longer_prefix_beats_shorter_regardless_of_order() -> None:
    r = route(
        rule(prefix("/"), backends=[ref("root")]),
        rule(prefix("/api"), backends=[ref("api")]),
        rule(prefix("/api/v1"), backends=[ref("v1")]),
        rule(exact("/api"), backends=[ref("exact")]),
    )
    assert go(r, "GET /api").shares == {"exact": 1}
    assert go(r, "GET /api/v1/x").shares == {"v1": 1}
    assert go(r, "GET /api/v2").shares == {"api": 1}
    assert go(r, "GET /apiv1").shares == {"root": 1}  # element-wise: /api does not match /apiv1


def test_prefix_is_element_wise_and_trailing_slash_tolerant() -> None:
    r = route(rule(prefix("/abc/"), backends=[ref("abc")]))
    assert go(r, "GET /abc").shares == {"abc": 1}
    assert go(r, "GET /abc/def").shares == {"abc": 1}
    assert go(r, "GET /abcd").status == 404


def test_header_rule_on_default_prefix_loses_to_stable_rule_on_api() -> None:
    """The spec trap: a header->canary rule must repeat the stable rule's path."""
    r = route(
        rule(prefix("/api"), backends=[ref("stable")]),
        rule(prefix("/", headers=[hdr("x-canary", "always")]), backends=[ref("canary")]),
    )
    assert go(r, "GET /api -H x-canary:always").shares == {"stable": 1}
    assert go(r, "GET /other -H x-canary:always").shares == {"canary": 1}
    fixed = route(
        rule(prefix("/api"), backends=[ref("stable")]),
        rule(prefix("/api", headers=[hdr("x-canary", "always")]), backends=[ref("canary")]),
    )
    assert go(fixed, "GET /api -H x-canary:always").shares == {"canary": 1}


def test_method_beats_headers_beats_query_then_rule_order() -> None:
    r = route(
        rule(prefix("/", headers=[hdr("a", "1"), hdr("b", "2")]), backends=[ref("two-headers")]),
        rule(prefix("/", method="GET"), backends=[ref("method")]),
        rule(
            prefix("/", headers=[hdr("a", "1")], queryParams=[hdr("q", "1")]), backends=[ref("h+q")]
        ),
        rule(prefix("/", headers=[hdr("a", "1")]), backends=[ref("one-header")]),
        rule(prefix("/", headers=[hdr("A", "1")]), backends=[ref("later-same")]),
    )
    assert go(r, "GET / -H a:1 -H b:2").shares == {"method": 1}
    assert go(r, "POST / -H a:1 -H b:2").shares == {"two-headers": 1}
    assert go(r, "POST /?q=1 -H a:1").shares == {"h+q": 1}
    assert go(r, "POST / -H a:1").shares == {"one-header": 1}  # tie: first rule in list order


def test_ties_across_routes_oldest_then_alphabetical() -> None:
    old = route(
        rule(prefix("/"), backends=[ref("old")]),
        name="zz",
        creationTimestamp="2024-01-01T00:00:00Z",
    )
    new = route(
        rule(prefix("/"), backends=[ref("new")]),
        name="aa",
        creationTimestamp="2025-01-01T00:00:00Z",
    )
    assert go([new, old], "GET /").shares == {"old": 1}
    a = route(rule(prefix("/"), backends=[ref("a")]), name="a", ns="x")
    b = route(rule(prefix("/"), backends=[ref("b")]), name="a", ns="w")
    assert go([a, b], "GET /").shares == {"b": 1}  # "w/a" sorts before "x/a"
    assert go([b, a], "GET /").shares == {"b": 1}


def test_hostnames_filter_and_rank() -> None:
    wild = route(
        rule(prefix("/api"), backends=[ref("wild")]), name="w", hostnames=["*.example.com"]
    )
    exact_host = route(
        rule(prefix("/"), backends=[ref("exact")]), name="e", hostnames=["shop.example.com"]
    )
    other = route(rule(exact("/api"), backends=[ref("other")]), name="o", hostnames=["other.org"])
    routes = [wild, exact_host, other]
    # The exact hostname wins before paths are compared at all.
    assert go(routes, "GET /api -H Host:shop.example.com").shares == {"exact": 1}
    assert go(routes, "GET /api -H Host:a.b.example.com").shares == {"wild": 1}
    assert go(routes, "GET /api -H Host:example.com").status == 404
    assert go(routes, "GET /api -H Host:other.org").shares == {"other": 1}


def test_no_matches_means_prefix_root() -> None:
    r = route(rule(backends=[ref("all")]), rule(prefix("/x"), backends=[ref("x")]))
    assert go(r, "GET /anything").shares == {"all": 1}
    assert go(r, "GET /x").shares == {"x": 1}


def test_weights() -> None:
    r = route(rule(backends=[ref("stable", 1), ref("canary", 3), ref("dark", 0)]))
    assert go(r, "GET /").shares == {"stable": F(1, 4), "canary": F(3, 4)}
    r = route(rule(backends=[ref("stable"), ref("canary")]))  # default weight 1
    assert go(r, "GET /").shares == {"stable": F(1, 2), "canary": F(1, 2)}
    r = route(rule(backends=[ref("only", 7)]))
    assert go(r, "GET /").shares == {"only": 1}
    zero = go(route(rule(backends=[ref("a", 0), ref("b", 0)])), "GET /")
    assert (zero.status, zero.shares) == (500, {})
    assert go(route(rule(backends=[])), "GET /").status == 500
    cross = route(
        rule(
            backends=[
                ref("svc", namespace="other"),
                ref("t", kind="TraefikService", group="traefik.io"),
            ]
        )
    )
    assert set(go(cross, "GET /").shares) == {"svc.other", "TraefikService.traefik.io:t"}


@pytest.mark.parametrize(
    ("mirror", "share"),
    [
        ({}, F(1)),
        ({"percent": 10}, F(1, 10)),
        ({"fraction": {"numerator": 1, "denominator": 3}}, F(1, 3)),
        ({"fraction": {"numerator": 5}}, F(1, 20)),
        ({"percent": 0}, F(0)),
    ],
)
def test_request_mirror_percent_and_fraction(mirror: dict[str, Any], share: Fraction) -> None:
    f = {"type": "RequestMirror", "requestMirror": {"backendRef": ref("canary"), **mirror}}
    r = route(rule(backends=[ref("stable")], filters=[f]))
    assert go(r, "GET /").mirror("canary") == share


def test_backend_level_mirror_scales_with_backend_share() -> None:
    f = {"type": "RequestMirror", "requestMirror": {"backendRef": ref("shadow"), "percent": 50}}
    r = route(rule(backends=[ref("stable", 3), ref("canary", 1, filters=[f])]))
    assert go(r, "GET /").mirrors == {"shadow": F(1, 8)}


def test_redirect_has_no_backend() -> None:
    f = {"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}}
    assert go(route(rule(backends=[], filters=[f])), "GET /").status == 302


def test_regex_dialects() -> None:
    r = route(
        rule(prefix("/", headers=[hdr("x-v", "v1", "RegularExpression")]), backends=[ref("c")])
    )
    assert go(r, "GET / -H x-v:xv1x").routed  # search (Go MatchString, Traefik)
    assert not go(r, "GET / -H x-v:xv1x", regex="full").routed  # Envoy
    anchored = route(
        rule(
            prefix("/", headers=[hdr("x-v", "^(?:v1)$", "RegularExpression")]), backends=[ref("c")]
        )
    )
    assert not go(anchored, "GET / -H x-v:xv1x").routed
    path = route(
        rule(
            {"path": {"type": "RegularExpression", "value": "^/api/v[0-9]+$"}}, backends=[ref("re")]
        ),
        rule(prefix("/api"), backends=[ref("pre")]),
    )
    assert go(path, "GET /api/v2").shares == {"re": 1}  # regex ranks above any prefix here
    assert go(path, "GET /api/x").shares == {"pre": 1}


def test_repeated_header_name_only_first_counts() -> None:
    r = route(rule(prefix("/", headers=[hdr("x-a", "1"), hdr("X-A", "2")]), backends=[ref("c")]))
    assert go(r, "GET / -H x-a:1").routed


def grpc(*rules: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GRPCRoute",
        "metadata": {"name": "g", "namespace": "shop"},
        "spec": {"rules": list(rules)},
    }


def test_grpc_service_and_method_precedence() -> None:
    r = grpc(
        {"backendRefs": [ref("any")]},
        {"matches": [{"method": {"service": "shop.Cart"}}], "backendRefs": [ref("svc")]},
        {
            "matches": [{"method": {"service": "shop.Cart", "method": "Add"}}],
            "backendRefs": [ref("method")],
        },
        {
            "matches": [{"method": {"service": "shop.Cart"}, "headers": [hdr("x-c", "1")]}],
            "backendRefs": [ref("hdr")],
        },
    )
    call = lambda t: simulate_grpc_routes([r], parse_request(t))  # noqa: E731
    assert call("POST /shop.Cart/Add -H x-c:1").shares == {"method": 1}
    assert call("POST /shop.Cart/Get -H x-c:1").shares == {"hdr": 1}
    assert call("POST /shop.Cart/Get").shares == {"svc": 1}
    assert call("POST /shop.Other/Get").shares == {"any": 1}


# -- regressions found by the equivalence property, through the plugin's own evaluator ------

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "gatewayapi"
HEADER_ROUTE = {
    "name": "canary-header",
    "matches": [{"headers": [{"name": "X-Canary", "exact": "always"}]}],
}


def _route(state: dict[str, Any], request: str) -> Any:
    (routed,) = [r for r in route_scenario(EXAMPLE, state, request) if "GRPC" not in r.scope]
    return routed.outcome


def test_header_route_beats_overlapping_mirror_route() -> None:
    state = {
        "weight": 20,
        "headerRoutes": [HEADER_ROUTE],
        "mirrorRoutes": [
            {
                "name": "canary-mirror",
                "percentage": 12.5,
                "matches": [{"method": "GET", "path": {"prefix": "/api/orders"}}],
            }
        ],
    }
    got = _route(state, "GET /api/orders -H X-Canary:always -H Host:shop.example.com")
    assert got.shares == {"checkout-canary": 1}


def test_foreign_backend_share_does_not_depend_on_total() -> None:
    got = _route({"weight": 0, "total": 1_000_000}, "GET / -H Host:shop.example.com")
    assert got.share("checkout-legacy") == Fraction(5, 105)
