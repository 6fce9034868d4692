"""Istio: first match in list order, StringMatch semantics, relative weights, mirrors."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

from routers_istio.evaluate import simulate_virtual_service

from routers.simulate import parse_request
from routers.testing import route_scenario

F = Fraction


def vs(
    *http: dict[str, Any], name: str = "api", hosts: tuple[str, ...] = ("api",)
) -> dict[str, Any]:
    spec: dict[str, Any] = {"http": list(http)}
    if hosts:
        spec["hosts"] = list(hosts)
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": spec,
    }


def dest(host: str, weight: int | None = None, subset: str | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"destination": {"host": host, **({"subset": subset} if subset else {})}}
    if weight is not None:
        d["weight"] = weight
    return d


def run(obj: dict[str, Any], text: str, **kw: Any) -> Any:
    return simulate_virtual_service(obj, parse_request(text), **kw)


SPLIT = {"name": "primary", "route": [dest("stable", 90), dest("canary", 10)]}
HEADER = {
    "name": "tester",
    "match": [{"headers": {"x-canary": {"exact": "always"}}}],
    "route": [dest("canary")],
}


def test_first_match_wins_in_list_order() -> None:
    good = vs(HEADER, SPLIT)
    assert run(good, "GET / -H X-Canary:always").shares == {"canary": 1}
    assert run(good, "GET /").shares == {"stable": F(9, 10), "canary": F(1, 10)}
    # The trap: a catch-all placed before the header route shadows it completely.
    shadowed = vs(SPLIT, HEADER)
    out = run(shadowed, "GET / -H X-Canary:always")
    assert out.shares == {"stable": F(9, 10), "canary": F(1, 10)}
    assert "http[0]" in out.via and "primary" in out.via


def test_matches_are_ored_and_conditions_anded() -> None:
    route = {
        "match": [
            {"uri": {"prefix": "/api"}, "headers": {"x-a": {"exact": "1"}}},
            {"method": {"exact": "POST"}},
        ],
        "route": [dest("canary")],
    }
    obj = vs(route, {"route": [dest("stable")]})
    assert run(obj, "GET /api -H x-a:1").shares == {"canary": 1}
    assert run(obj, "GET /api").shares == {"stable": 1}  # AND: header missing
    assert run(obj, "GET /other -H x-a:1").shares == {"stable": 1}
    assert run(obj, "POST /anything").shares == {"canary": 1}  # OR: second match


def test_string_match_semantics() -> None:
    def only(match: dict[str, Any]) -> dict[str, Any]:
        return vs({"match": [match], "route": [dest("canary")]})

    prefix = only({"uri": {"prefix": "/api"}})
    assert run(prefix, "GET /apis").routed  # Istio prefixes compare characters
    regex = only({"headers": {"x-v": {"regex": "v[0-9]"}}})
    assert run(regex, "GET / -H x-v:v1").routed
    assert not run(regex, "GET / -H x-v:xv1x").routed  # whole-value RE2, not search
    assert run(regex, "GET /").status == 404
    names = only({"headers": {"X-Mixed-Case": {"exact": "Val"}}})
    assert run(names, "GET / -H x-mixed-case:Val").routed  # names fold case
    assert not run(names, "GET / -H x-mixed-case:val").routed  # values do not
    presence = only({"headers": {"x-p": {}}})
    assert run(presence, "GET / -H x-p:").routed
    assert not run(presence, "GET /").routed
    case = only({"uri": {"exact": "/API"}, "ignoreUriCase": True})
    assert run(case, "GET /api").routed
    method = only({"method": {"exact": "GET"}, "queryParams": {"v": {"regex": "[0-9]+"}}})
    assert run(method, "GET /?v=12").routed
    assert not run(method, "GET /?v=a12").routed
    assert not run(method, "POST /?v=12").routed
    ignored = only({"headers": {"uri": {"exact": "nothing"}}})
    assert run(ignored, "GET /").routed  # uri/method/scheme/authority keys are ignored


def test_without_headers() -> None:
    obj = vs(
        {"match": [{"withoutHeaders": {"x-internal": {"exact": "1"}}}], "route": [dest("canary")]},
        {"route": [dest("stable")]},
    )
    assert run(obj, "GET /").shares == {"canary": 1}
    assert run(obj, "GET / -H x-internal:2").shares == {"canary": 1}
    assert run(obj, "GET / -H x-internal:1").shares == {"stable": 1}
    star = vs({"match": [{"withoutHeaders": {"x-i": {"regex": "*"}}}], "route": [dest("c")]})
    assert not run(star, "GET / -H x-i:anything").routed


def test_weights_are_relative_and_omitted_means_zero() -> None:
    assert run(vs({"route": [dest("stable", 0)]}), "GET /").shares == {"stable": 1}
    three = vs({"route": [dest("stable", 1), dest("canary", 3), dest("other")]})
    assert run(three, "GET /").shares == {"stable": F(1, 4), "canary": F(3, 4)}
    zero = run(vs({"route": [dest("stable", 0), dest("canary", 0)]}), "GET /")
    assert (zero.routed, zero.status) == (False, 500)
    fqdn = vs({"route": [dest("stable.shop.svc.cluster.local", 50), dest("canary.other", 50)]})
    assert run(fqdn, "GET /").shares == {"stable": F(1, 2), "canary.other": F(1, 2)}
    subsets = vs({"route": [dest("api", 75, "stable"), dest("api", 25, "canary")]})
    assert run(subsets, "GET /").shares == {"api/stable": F(3, 4), "api/canary": F(1, 4)}
    same = vs({"route": [dest("stable", 1), dest("stable", 1), dest("canary", 2)]})
    assert run(same, "GET /").shares == {"stable": F(1, 2), "canary": F(1, 2)}


def test_mirrors() -> None:
    full = vs({**SPLIT, "mirror": {"host": "canary"}})
    assert run(full, "GET /").mirrors == {"canary": 1}
    pct = vs({**SPLIT, "mirror": {"host": "canary"}, "mirrorPercentage": {"value": 12.5}})
    assert run(pct, "GET /").mirrors == {"canary": F(1, 8)}
    old = vs({**SPLIT, "mirror": {"host": "canary"}, "mirrorPercent": 30})
    assert run(old, "GET /").mirrors == {"canary": F(3, 10)}
    many = vs(
        {
            **SPLIT,
            "mirrors": [
                {"destination": {"host": "canary"}, "percentage": {"value": 0.5}},
                {"destination": {"host": "shadow"}},
            ],
        }
    )
    assert run(many, "GET /").mirrors == {"canary": F(1, 200), "shadow": 1}
    # A mirror only applies to the route it is on.
    scoped = vs({**HEADER, "mirror": {"host": "shadow"}}, SPLIT)
    assert run(scoped, "GET /").mirrors == {}


def test_redirect_direct_response_and_no_route() -> None:
    assert run(vs({"redirect": {"uri": "/x"}}), "GET /").status == 301
    assert run(vs({"directResponse": {"status": 418}}), "GET /").status == 418
    none = run(vs({"match": [{"uri": {"exact": "/only"}}], "route": [dest("a")]}), "GET /")
    assert (none.status, none.shares) == (404, {})


def test_delegate_is_inlined_and_falls_through() -> None:
    root = vs(
        {"match": [{"uri": {"prefix": "/api"}}], "delegate": {"name": "api-routes"}},
        {"route": [dest("fallback")]},
    )
    delegate = vs(
        {"match": [{"uri": {"prefix": "/api/v2"}}], "route": [dest("canary")]},
        {"match": [{"uri": {"prefix": "/api/v1"}}], "route": [dest("stable")]},
        name="api-routes",
        hosts=(),
    )
    given = {"shop/api-routes": delegate}
    assert run(root, "GET /api/v2/x", delegates=given).shares == {"canary": 1}
    assert run(root, "GET /api/v1", delegates=given).shares == {"stable": 1}
    assert run(root, "GET /api/v3", delegates=given).shares == {"fallback": 1}
    missing = run(root, "GET /api/v2")
    assert (missing.status, "not given" in missing.reason) == (500, True)


def test_header_route_covers_every_managed_route() -> None:
    """Found by the equivalence property on its tricky Istio objects (foreign route first, a
    managed route with its own match, a catch-all): the header route precedes each of them."""
    tricky = Path(__file__).resolve().parents[3] / "tests/contract/equivalence/istio/tricky"
    header = {
        "name": "canary-header",
        "matches": [{"headers": [{"name": "X-Canary", "exact": "always"}]}],
    }
    state = {"weight": 0, "headerRoutes": [header]}
    (routed,) = route_scenario(tricky, state, "GET /anything -H X-Canary:always")
    assert routed.outcome.shares == {"api-canary": 1}


def test_subsets_are_reported_as_the_configured_services() -> None:
    """Subset mode: the DestinationRule host's stable/canary subsets speak the config's names."""
    example = Path(__file__).resolve().parents[3] / "examples" / "istio"
    routed = route_scenario(example, {"weight": 25}, "GET /")
    shares = {r.scope: dict(r.outcome.shares) for r in routed}
    assert {"checkout-stable": F(3, 4), "checkout-canary": F(1, 4)} in shares.values()
