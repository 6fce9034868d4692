"""Regressions for the two divergences the cross-target equivalence test found
(tests/simulate/test_equivalence.py): overlapping managed routes resolved by Gateway API's
specificity instead of route order, and a foreign backend's share following the state's total.

Outcomes are checked with the Gateway API traffic simulator (most specific match wins), not by
reading our own rules back, so a rule that looks right but loses precedence fails here.
"""

from __future__ import annotations

import copy
from fractions import Fraction
from typing import Any

import pytest
from gatewayapi_helpers import (
    config,
    live,
    obj_of,
    plan,
    ref,
    route,
    rule,
    rules_of,
    run,
    state,
    weights_of,
)
from routers_gatewayapi.evaluate import simulate_grpc_routes, simulate_http_routes
from routers_gatewayapi.matches import Unexpressible, intersect, outranks
from routers_gatewayapi.shares import MAX_WEIGHT

from routers.errors import PlanError, UnsupportedError, WeightFitError
from routers.model import Cleanup
from routers.planning import weights
from routers.planning.objects import LiveObjects
from routers.simulate import Outcome, parse_request

HEADER = {
    "name": "canary-header",
    "matches": [{"headers": [{"name": "X-Canary", "exact": "always"}]}],
}
ORDERS_MIRROR = {
    "name": "canary-mirror",
    "percentage": 12.5,
    "matches": [{"method": "GET", "path": {"prefix": "/api/orders"}}],
}


def routed(objs: LiveObjects, request: str) -> Outcome:
    return simulate_http_routes([obj_of(objs)], parse_request(request))


def api_and_pages() -> LiveObjects:
    return live(route(rule("/api"), rule("/")))


# -- overlapping managed routes: the first in managedRoutes order wins --------------------------


def test_simulator_header_route_beats_overlapping_more_specific_mirror_route() -> None:
    """The shipped example: GET /api/orders with X-Canary went 80/20 + mirror, not 100% canary."""
    after = run(
        config(),
        api_and_pages(),
        state(weight=20, headerRoutes=[HEADER], mirrorRoutes=[ORDERS_MIRROR]),
    )
    both = routed(after, "GET /api/orders -H X-Canary:always")
    assert (dict(both.shares), dict(both.mirrors)) == ({"web-canary": 1}, {})
    assert "canary-header" in both.via
    mirrored = routed(after, "GET /api/orders")
    assert dict(mirrored.shares) == {"web-stable": Fraction(4, 5), "web-canary": Fraction(1, 5)}
    assert dict(mirrored.mirrors) == {"web-canary": Fraction(1, 8)}
    header_only = routed(after, "POST /api/orders -H X-Canary:always")
    assert dict(header_only.shares) == {"web-canary": 1}
    # The header rule derived from /api carries the combined match; the one from / does not
    # need it (/api/orders belongs to the /api rule).
    header_api = next(r for r in rules_of(after) if r.get("name") == "canary-header")
    assert header_api["matches"][1] == {
        "path": {"type": "PathPrefix", "value": "/api/orders"},
        "headers": [{"name": "X-Canary", "type": "Exact", "value": "always"}],
        "method": "GET",
    }
    assert (
        len(next(r for r in rules_of(after) if r.get("name") == "canary-header.2")["matches"]) == 1
    )


def test_simulator_mirror_route_listed_first_keeps_requests_shared_with_a_header_route() -> None:
    """managedRoutes puts the mirror first: a request matching both is split and mirrored."""
    cfg = config(managedRoutes=[{"name": "canary-mirror"}, {"name": "canary-header"}])
    header = {
        "name": "canary-header",
        "matches": [
            {"path": {"exact": "/api/orders"}, "headers": [{"name": "X-Canary", "exact": "always"}]}
        ],
    }
    after = run(
        cfg, api_and_pages(), state(weight=20, headerRoutes=[header], mirrorRoutes=[ORDERS_MIRROR])
    )
    assert [r.get("name") for r in rules_of(after)][:2] == ["canary-mirror", "canary-header"]
    both = routed(after, "GET /api/orders -H X-Canary:always")
    assert dict(both.shares) == {"web-stable": Fraction(4, 5), "web-canary": Fraction(1, 5)}
    assert dict(both.mirrors) == {"web-canary": Fraction(1, 8)}
    # Requests only the header route matches still go to the canary.
    assert dict(routed(after, "POST /api/orders -H X-Canary:always").shares) == {"web-canary": 1}


def test_simulator_three_overlapping_routes_resolve_to_the_first() -> None:
    """The first route also outranks the combined matches of the two behind it."""
    cfg = config(managedRoutes=[{"name": "a"}, {"name": "b"}, {"name": "c"}])
    a = {"name": "a", "matches": [{"headers": [{"name": "X-A", "exact": "1"}]}]}
    b = {"name": "b", "percentage": 50, "matches": [{"method": "GET"}]}
    c = {"name": "c", "matches": [{"path": {"prefix": "/api/v2"}}]}
    after = run(cfg, api_and_pages(), state(weight=10, headerRoutes=[a, c], mirrorRoutes=[b]))
    everything = routed(after, "GET /api/v2/x -H X-A:1")
    assert (dict(everything.shares), dict(everything.mirrors)) == ({"web-canary": 1}, {})
    b_and_c = routed(after, "GET /api/v2/x")
    assert dict(b_and_c.mirrors) == {"web-canary": Fraction(1, 2)}
    assert dict(b_and_c.shares) == {"web-stable": Fraction(9, 10), "web-canary": Fraction(1, 10)}
    assert dict(routed(after, "POST /api/v2/x").shares) == {"web-canary": 1}


def test_simulator_routes_that_act_alike_or_never_overlap_get_no_combined_matches() -> None:
    two_headers = [
        HEADER,
        {"name": "beta", "matches": [{"path": {"prefix": "/api"}, "method": "GET"}]},
    ]
    after = run(config(), api_and_pages(), state(headerRoutes=two_headers))
    assert all(len(r["matches"]) == 1 for r in rules_of(after) if r.get("name"))
    disjoint = {
        "name": "never",
        "percentage": 100,
        "matches": [{"method": "GET", "headers": [{"name": "X-Canary", "exact": "never"}]}],
    }
    after = run(config(), api_and_pages(), state(headerRoutes=[HEADER], mirrorRoutes=[disjoint]))
    assert all(len(r["matches"]) == 1 for r in rules_of(after) if r.get("name"))


def test_simulator_overlap_that_cannot_be_ordered_exactly_is_refused() -> None:
    header = {
        "name": "canary-header",
        "matches": [{"headers": [{"name": "X-Group", "regex": "(a|b)c"}]}],
    }
    mirror = {
        "name": "canary-mirror",
        "matches": [{"method": "GET", "headers": [{"name": "X-Group", "regex": "[ab]+c"}]}],
    }
    with pytest.raises(UnsupportedError) as err:
        plan(config(), api_and_pages(), state(headerRoutes=[header], mirrorRoutes=[mirror]))
    text = str(err.value)
    assert "setHeaderRoute 'canary-header'" in text and "setMirrorRoute 'canary-mirror'" in text
    assert "X-Group" in text and "no single condition states both" in text


@pytest.mark.parametrize(
    ("a", "b", "both"),
    [
        # The exact value survives when the other side's regex accepts it.
        (
            {"headers": [{"name": "x", "type": "Exact", "value": "beta-1"}]},
            {"headers": [{"name": "X", "type": "RegularExpression", "value": "^beta.*"}]},
            {"headers": [{"name": "x", "type": "Exact", "value": "beta-1"}]},
        ),
        # Two literal prefixes: the longer one, or nothing.
        (
            {"headers": [{"name": "x", "type": "RegularExpression", "value": "^beta.*"}]},
            {"headers": [{"name": "x", "type": "RegularExpression", "value": "^beta-2.*"}]},
            {"headers": [{"name": "x", "type": "RegularExpression", "value": "^beta-2.*"}]},
        ),
        (
            {"headers": [{"name": "x", "type": "RegularExpression", "value": "^alpha.*"}]},
            {"headers": [{"name": "x", "type": "RegularExpression", "value": "^beta.*"}]},
            None,
        ),
        (
            {"path": {"type": "PathPrefix", "value": "/api"}},
            {"path": {"type": "PathPrefix", "value": "/"}, "method": "GET"},
            {"path": {"type": "PathPrefix", "value": "/api"}, "method": "GET"},
        ),
        ({"method": "GET"}, {"method": "POST"}, None),
    ],
)
def test_intersect_is_the_exact_and(
    a: dict[str, Any], b: dict[str, Any], both: dict[str, Any] | None
) -> None:
    assert intersect("http", a, b) == both


def test_outranks_follows_the_precedence_order_and_refuses_regex_paths() -> None:
    def m(path: str, kind: str = "PathPrefix", **kw: Any) -> dict[str, Any]:
        return {"path": {"type": kind, "value": path}, **kw}

    header = [{"name": "x", "type": "Exact", "value": "1"}]
    assert outranks("http", m("/api", "Exact"), m("/api/"))
    assert outranks("http", m("/api/orders"), m("/api", method="GET", headers=header))
    assert outranks("http", m("/api", method="GET"), m("/api", headers=header))
    assert not outranks("http", m("/api/", headers=header), m("/api", headers=header))
    with pytest.raises(Unexpressible, match="implementation-specific"):
        outranks("http", m("/a.*", "RegularExpression"), m("/api"))


# -- foreign backends keep their share; the canary gets its share of all traffic --------------


def with_legacy(stable: int | None = 100, canary: int = 0, legacy: int | None = 5) -> LiveObjects:
    source = rule("/")
    source["backendRefs"] = [
        ref("web-stable", weight=stable),
        ref("web-canary", weight=canary),
        ref("legacy", weight=legacy),
    ]
    return live(route(source))


def legacy_share(objs: LiveObjects) -> Fraction:
    return routed(objs, "GET /").share("legacy")


def test_simulator_foreign_backend_share_does_not_depend_on_total() -> None:
    for desired in (state(weight=0, total=1_000_000), state(weight=20), state(weight=0, total=7)):
        after = run(config(), with_legacy(), desired)
        assert weights_of(rules_of(after)[0])["legacy"] == 5
        assert legacy_share(after) == Fraction(5, 105)


def test_setweight_20_beside_a_foreign_backend_sends_20_percent_to_canary() -> None:
    """Issue 12: canary weight/total of all traffic, the foreign share kept, stable the rest."""
    after = run(config(), with_legacy(stable=90, legacy=10), state(weight=20))
    assert weights_of(rules_of(after)[0]) == {"web-stable": 70, "web-canary": 20, "legacy": 10}
    out = routed(after, "GET /")
    assert (out.share("web-canary"), out.share("legacy")) == (Fraction(1, 5), Fraction(1, 10))
    after = run(config(), with_legacy(), state(weight=20))
    assert weights_of(rules_of(after)[0]) == {"web-stable": 79, "web-canary": 21, "legacy": 5}
    assert routed(after, "GET /").share("web-canary") == Fraction(1, 5)


def test_weight_scope_ours_keeps_splitting_what_foreign_backends_leave() -> None:
    after = run(config(weight_scope="ours"), with_legacy(stable=90, legacy=10), state(weight=20))
    assert weights_of(rules_of(after)[0]) == {"web-stable": 72, "web-canary": 18, "legacy": 10}


def test_a_weight_that_cannot_fit_beside_a_foreign_backend_names_both_numbers() -> None:
    with pytest.raises(WeightFitError, match=r"95/100 asks for 95% .* keep 10% .* at most 90%"):
        plan(config(), with_legacy(stable=90, legacy=10), state(weight=95))
    # Promotion (nothing left for stable): everything the foreign backend does not hold.
    after = run(config(), with_legacy(stable=90, legacy=10), state(weight=100))
    assert weights_of(rules_of(after)[0]) == {"web-stable": 0, "web-canary": 90, "legacy": 10}


def test_simulator_foreign_backend_is_rescaled_only_when_our_sum_cannot_express_the_split() -> None:
    desired = state(weight=123_457, total=1_000_000)
    result = plan(config(), with_legacy(), desired)
    after = run(config(), with_legacy(), desired)
    got = weights_of(rules_of(after)[0])
    assert max(got.values()) <= 1_000_000 and got["legacy"] != 5
    out = routed(after, "GET /")
    assert out.share("legacy") == Fraction(5, 105)
    assert abs(out.share("web-canary") - Fraction(123_457, 1_000_000)) < Fraction(1, 10**6)
    assert any("reweighted" in n.message for n in result.notes)
    assert not plan(config(), after, desired).operations  # the foreign share is exact: stable
    again = run(config(), after, state(weight=20))
    assert routed(again, "GET /").share("web-canary") == Fraction(1, 5)
    assert legacy_share(again) == Fraction(5, 105)


def test_simulator_default_weights_beside_a_foreign_backend_still_split_exactly() -> None:
    """Weights left at their default of 1: the foreign share is 1/2, a finer scale is needed."""
    after = run(config(), with_legacy(stable=None, legacy=None), state(weight=20))
    assert weights_of(rules_of(after)[0]) == {"web-stable": 3, "web-canary": 2, "legacy": 5}
    assert legacy_share(after) == Fraction(1, 2)
    assert routed(after, "GET /").share("web-canary") == Fraction(1, 5)


def test_simulator_split_is_rounded_with_a_warning_when_no_exact_scale_fits() -> None:
    desired = state(weight=1, total=1_000_000)
    result = plan(config(), with_legacy(stable=2, legacy=1), desired)
    after = run(config(), with_legacy(stable=2, legacy=1), desired)
    assert max(weights_of(rules_of(after)[0]).values()) <= 1_000_000
    assert legacy_share(after) == Fraction(1, 3)
    warning = [n for n in result.notes if n.level == "warning" and "rounding" in n.message]
    assert warning and "1,000,000" in warning[0].message
    assert not plan(config(), after, desired).operations


def test_simulator_mirror_rule_carries_the_same_foreign_weights() -> None:
    mirror = {"name": "shadow", "matches": [{"method": "GET"}]}
    desired = state(weight=123_457, total=1_000_000, mirrorRoutes=[mirror])
    after = run(config(), with_legacy(), desired)
    shadow, source = rules_of(after)
    assert shadow["backendRefs"] == source["backendRefs"]
    assert routed(after, "GET /").share("legacy") == Fraction(5, 105)
    assert routed(after, "POST /").share("legacy") == Fraction(5, 105)
    notes = [n.message for n in plan(config(), with_legacy(), desired).notes]
    assert sum("reweighted" in n for n in notes) == 1, "the mirror copy must not report again"


def test_simulator_our_weights_at_zero_beside_a_foreign_backend_is_a_plan_error() -> None:
    with pytest.raises(PlanError, match=r"rules\[0\].*keep 100% of it: at most 0% fits"):
        plan(config(), with_legacy(stable=0), state(weight=20))


@pytest.mark.parametrize(
    ("split", "ours", "foreign", "written"),
    [
        ((80, 20), 100, [5], (79, 21, (5,))),  # our sum expresses it: the foreign one untouched
        ((80, 20), 1, [1], (3, 2, (5,))),  # default weights: finer scale
        ((70, 30), 90, [10, 0], (60, 30, (10, 0))),
        ((800, 200), 95, [5], (75, 20, (5,))),
    ],
)
def test_place_picks_the_sum_that_keeps_the_foreign_share(
    split: tuple[int, int], ours: int, foreign: list[int], written: tuple[int, int, tuple[int]]
) -> None:
    requested = weights.Split(split[0], split[1], (), sum(split))
    placed = weights.place(requested, ours, foreign, max_weight=MAX_WEIGHT)
    assert (placed.split.stable, placed.split.canary, placed.foreign) == written
    assert Fraction(sum(placed.foreign), placed.total) == Fraction(
        sum(foreign), ours + sum(foreign)
    )
    assert Fraction(placed.split.canary, placed.total) == Fraction(split[1], sum(split))
    assert weights.place(requested, ours, [0]).foreign == (0,)


def test_simulator_grpc_header_route_beats_a_mirror_route_with_more_headers() -> None:
    g = route(kind="GRPCRoute", name="g")
    g["spec"]["rules"] = [
        {
            "matches": [{"method": {"type": "Exact", "service": "shop.v1.Cart"}}],
            "backendRefs": [ref("web-stable", weight=1), ref("web-canary", weight=0)],
        }
    ]
    mirror = {
        "name": "shadow",
        "matches": [{"headers": [{"name": "X-B", "exact": "1"}, {"name": "X-C", "exact": "1"}]}],
    }
    after = run(
        config({"grpcRoute": "g"}),
        live(g),
        state(weight=10, headerRoutes=[HEADER], mirrorRoutes=[mirror]),
    )
    objs = [obj_of(after, "g", "GRPCRoute")]

    def call(*headers: str) -> Outcome:
        flags = " ".join(f"-H {h}" for h in headers)
        return simulate_grpc_routes(objs, parse_request(f"POST /shop.v1.Cart/Add {flags}"))

    both = call("X-Canary:always", "X-B:1", "X-C:1")
    assert (dict(both.shares), dict(both.mirrors)) == ({"web-canary": 1}, {})
    assert dict(call("X-B:1", "X-C:1").mirrors) == {"web-canary": 1}


def test_cleanup_gives_rescaled_foreign_backends_their_weights_back() -> None:
    """An exact 1% beside legacy's 10 of 110 needs a finer sum (legacy x10): the ledger keeps
    legacy's weight, and cleanup restores the rule as it was (cleanup removes what we added)."""
    original = with_legacy(stable=100, legacy=10)
    after = run(config(), original, state(weight=1))
    assert weights_of(rules_of(after)[0])["legacy"] == 100
    assert routed(after, "GET /").share("web-canary") == Fraction(1, 100)
    cleaned = run(config(), after, Cleanup())
    assert weights_of(rules_of(cleaned)[0]) == {"web-stable": 100, "web-canary": 0, "legacy": 10}
    assert "canary-routers.io/managed" not in (obj_of(cleaned)["metadata"].get("annotations") or {})
    # Changed by someone else meanwhile: left as it is (their share is theirs to set).
    edited = run(config(), original, state(weight=1))
    obj_of(edited)["spec"]["rules"][0]["backendRefs"][2]["weight"] = 77
    kept = run(config(), edited, Cleanup())
    assert weights_of(rules_of(kept)[0])["legacy"] == 77


def internal_rule(*headers: tuple[str, str]) -> dict[str, Any]:
    """The user's rule: path / plus headers, to their own Service."""
    internal = rule("/")
    internal["name"] = "internal"
    internal["matches"][0]["headers"] = [{"name": n, "value": v} for n, v in headers]
    internal["backendRefs"] = [ref("internal-svc")]
    return internal


CATCH_ALL = {"backendRefs": [ref("web-stable", weight=100), ref("web-canary", weight=0)]}


def test_simulator_header_route_does_not_take_a_tied_foreign_header_rule() -> None:
    """Found in issue 12: the user's rule `internal` (path /, header X-Internal) serves requests
    carrying both X-Internal and the header route's X-Canary; the managed rule copied from the
    catch-all rule (path /, now one header too) ties it, and a tie goes to the first rule of the
    route: the managed rule stands after `internal`, not at the front."""
    after = run(
        config(),
        live(route(internal_rule(("X-Internal", "yes")), CATCH_ALL)),
        state(weight=25, headerRoutes=[HEADER]),
    )
    assert [r.get("name") for r in rules_of(after)] == ["internal", "canary-header", None]
    got = routed(after, "GET / -H X-Canary:always -H X-Internal:yes")
    assert got.shares == {"internal-svc": 1}
    assert routed(after, "GET /x -H X-Canary:always").shares == {"web-canary": 1}
    assert routed(after, "GET / -H X-Internal:yes").shares == {"internal-svc": 1}
    split = routed(after, "GET /").shares
    assert split == {"web-stable": Fraction(3, 4), "web-canary": Fraction(1, 4)}


def test_managed_rules_move_behind_a_tied_user_rule_added_later() -> None:
    """Declarative: the user appends the tied rule after our rules stand at the front; the next
    plan moves our block behind it, and planning again changes nothing (``run``)."""
    first = run(config(), live(route(CATCH_ALL)), state(weight=25, headerRoutes=[HEADER]))
    assert [r.get("name") for r in rules_of(first)] == ["canary-header", None]
    edited = copy.deepcopy(obj_of(first))
    edited["spec"]["rules"].append(internal_rule(("X-Internal", "yes")))
    after = run(config(), live(edited), state(weight=25, headerRoutes=[HEADER]))
    assert [r.get("name") for r in rules_of(after)] == [None, "internal", "canary-header"]
    assert routed(after, "GET / -H X-Canary:always -H X-Internal:yes").shares == {"internal-svc": 1}
    assert routed(after, "GET / -H X-Canary:always").shares == {"web-canary": 1}
    # Cleanup removes exactly our rule wherever it stands.
    cleaned = run(config(), after, Cleanup())
    assert [r.get("name") for r in rules_of(cleaned)] == [None, "internal"]


def test_a_managed_rule_that_would_outrank_a_users_rule_is_refused() -> None:
    """Two headers outrank the user's one: the requests carrying all three are `internal`'s
    today and no match can leave them out, so the header route is refused, not half-right."""
    two = {
        "name": "canary-header",
        "matches": [
            {"headers": [{"name": "X-Canary", "exact": "always"}, {"name": "X-B", "exact": "1"}]}
        ],
    }
    objs = live(route(internal_rule(("X-Internal", "yes")), CATCH_ALL))
    with pytest.raises(UnsupportedError) as err:
        plan(config(), objs, state(weight=25, headerRoutes=[two]))
    text = str(err.value)
    assert "setHeaderRoute 'canary-header'" in text and "rules[0] (internal)" in text
    assert "X-Internal" in text and "would outrank" in text
    # A method outranks a query parameter: a POST mirror beside a method-less query rule.
    beta = rule("/")
    beta["matches"][0]["queryParams"] = [{"name": "beta", "value": "1"}]
    beta["backendRefs"] = [ref("beta-svc")]
    post = {"name": "shadow", "matches": [{"method": "POST"}]}
    with pytest.raises(UnsupportedError, match=r"setMirrorRoute 'shadow'.*rules\[1\]"):
        plan(config(), live(route(CATCH_ALL, beta)), state(mirrorRoutes=[post]))
    # Disjoint from the user's rule (another value of its header): nothing to refuse.
    other = internal_rule(("X-Canary", "never"))
    after = run(config(), live(route(other, CATCH_ALL)), state(weight=25, headerRoutes=[two]))
    assert routed(after, "GET / -H X-Canary:always -H X-B:1").shares == {"web-canary": 1}


def test_a_users_canary_only_rule_is_no_conflict() -> None:
    """Plugin #217: the user's own all-to-canary rule and our header rule do the same with a
    request, so which one wins does not matter (golden http-standard-v1.2-reassert)."""
    mine = internal_rule(("X-Internal", "yes"))
    mine["backendRefs"] = [ref("web-canary", weight=1)]
    two = {
        "name": "canary-header",
        "matches": [
            {"headers": [{"name": "X-Canary", "exact": "always"}, {"name": "X-B", "exact": "1"}]}
        ],
    }
    after = run(config(), live(route(mine, CATCH_ALL)), state(weight=25, headerRoutes=[two]))
    assert routed(after, "GET / -H X-Canary:always -H X-B:1 -H X-Internal:yes").shares == {
        "web-canary": 1
    }
