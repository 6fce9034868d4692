"""Header and mirror routes over several selected http routes (``routes: [a, b]``).

Regression for the bug the cross-target equivalence suite found: managed routes were ANDed with
the FIRST selected route's matches only, so a header-matched request served by a later
selected route (a catch-all) stayed on stable. Each test routes real requests through the
planned object with the Istio simulator (first match, character-wise uri prefixes).
"""

from __future__ import annotations

import copy
from fractions import Fraction
from typing import Any

import pytest
from istio_helpers import (
    CLEANUP,
    FACTS,
    PLUGIN,
    config,
    dest,
    get,
    http_names,
    live,
    plan,
    route,
    run,
    state,
    vs,
)
from routers_istio.evaluate import simulate_virtual_service

from routers.errors import PlanError, UnsupportedError
from routers.planning.ownership import read_ledger
from routers.simulate import Outcome, parse_request

HEADER = {"name": "h", "matches": [{"headers": [{"name": "X-Canary", "exact": "always"}]}]}
MIRROR = {"name": "m", "percentage": 25, "matches": [{"method": "GET"}]}
TWO = {"virtualService": {"name": "app", "routes": ["api-v1", "catch-all"]}}


def tricky() -> Any:
    """The equivalence suite's ``istio/tricky`` fixture, in the helpers' namespace."""
    return vs(
        "app",
        route("static", dest("static-svc"), match=[{"uri": {"prefix": "/static"}}]),
        route(
            "api-v1",
            dest("svc", 100),
            dest("svc-canary", 0),
            match=[
                {"uri": {"prefix": "/api/v1"}, "method": {"exact": "GET"}},
                {"uri": {"exact": "/api/v1/health"}},
            ],
            timeout="5s",
        ),
        route(
            "catch-all",
            dest("svc.app.svc.cluster.local", 100),
            dest("svc-canary.app.svc.cluster.local", 0),
        ),
        route("late", dest("late-svc"), match=[{"uri": {"prefix": "/late"}}]),
    )


def send(obj: Any, request: str) -> Outcome:
    return simulate_virtual_service(obj, parse_request(request))


def canary_share(out: Outcome) -> Fraction:
    return out.share("svc-canary")  # the simulator names Services of the namespace short


def test_istio_header_route_covers_every_selected_route() -> None:
    """The equivalence suite's reproduction: weight 0, ``GET /anything -H X-Canary:always``
    went to stable via ``catch-all``; every selected route now gets its own copy."""
    cfg = config(TWO)
    out = get(run(cfg, live(tricky()), state(weight=0, headerRoutes=[HEADER])))
    assert http_names(out) == ["static", "h", "api-v1", "h.2", "catch-all", "late"]
    assert read_ledger(out, "app/svc-canary").names("routes") == ["h", "h.2"]
    for request in (
        "GET /anything -H X-Canary:always",  # catch-all's traffic
        "GET /api/v1/orders -H X-Canary:always",  # api-v1's traffic
        "POST /api/v1/health -H X-Canary:always",  # api-v1's second match
    ):
        assert canary_share(send(out, request)) == 1, request
    # Everything else is routed as before: foreign routes, no header, a near miss.
    assert send(out, "GET /static/x -H X-Canary:always").shares == {"static-svc": 1}
    assert canary_share(send(out, "GET /anything")) == 0
    assert canary_share(send(out, "GET /anything -H X-Canary:never")) == 0
    # Each copy takes its own primary's behaviour and canary destination.
    first, second = out["spec"]["http"][1], out["spec"]["http"][3]
    assert first["timeout"] == "5s"
    assert first["route"] == [dest("svc-canary", 100)]
    assert "timeout" not in second
    assert second["route"] == [dest("svc-canary.app.svc.cluster.local", 100)]
    assert second["match"] == [{"headers": {"x-canary": {"exact": "always"}}}]


def test_copy_never_captures_a_foreign_route_between_the_primaries() -> None:
    """A copy derived from a later primary placed in one block before the first primary would
    steal the foreign route's header-matched requests; per-primary blocks cannot."""
    cfg = config({"virtualService": {"name": "app", "routes": ["a", "b"]}})
    obj = vs(
        "app",
        route("a", dest("svc", 100), dest("svc-canary", 0), match=[{"uri": {"prefix": "/a"}}]),
        route("foreign", dest("other"), match=[{"uri": {"prefix": "/f"}}]),
        route("b", dest("svc", 100), dest("svc-canary", 0)),
    )
    out = get(run(cfg, live(obj), state(weight=10, headerRoutes=[HEADER])))
    assert http_names(out) == ["h", "a", "foreign", "h.2", "b"]
    assert send(out, "GET /f -H X-Canary:always").shares == {"other": 1}
    assert canary_share(send(out, "GET /a -H X-Canary:always")) == 1
    assert canary_share(send(out, "GET /b -H X-Canary:always")) == 1


def test_mirror_copies_follow_their_own_primary() -> None:
    cfg = config(TWO)
    current = run(cfg, live(tricky()), state(weight=30, mirrorRoutes=[MIRROR]))
    out = get(current)
    http = {r["name"]: r for r in out["spec"]["http"]}
    for copy_name, primary in (("m", "api-v1"), ("m.2", "catch-all")):
        assert http[copy_name]["route"] == http[primary]["route"]
        assert http[copy_name]["mirrorPercentage"] == {"value": 25}
    assert http["m"]["mirror"] == {"host": "svc-canary"}
    assert http["m.2"]["mirror"] == {"host": "svc-canary.app.svc.cluster.local"}
    got = send(out, "GET /x")
    assert "'m.2'" in got.via
    assert got.mirrors == {"svc-canary": Fraction(1, 4)}
    assert got.shares == {"svc": Fraction(7, 10), "svc-canary": Fraction(3, 10)}
    obs = PLUGIN.observe(cfg, current, FACTS)
    assert obs.mirror_routes == {"m": 25.0}
    assert obs.header_routes == ()
    assert not obs.problems
    drifted = copy.deepcopy(out)
    drifted["spec"]["http"][3]["route"][0]["weight"] = 1
    problems = PLUGIN.observe(cfg, live(drifted), FACTS).problems
    assert any("'m.2' serves different destinations than http[catch-all]" in p for p in problems)


def test_match_disjoint_with_one_primary_uses_the_others() -> None:
    """A path only the catch-all serves used to be refused (ANDed with api-v1 only)."""
    cfg = config(TWO)
    web = {"name": "h", "matches": [{"path": {"exact": "/web"}}]}
    out = get(run(cfg, live(tricky()), state(headerRoutes=[web])))
    assert http_names(out) == ["static", "api-v1", "h", "catch-all", "late"]
    assert canary_share(send(out, "GET /web")) == 1
    nowhere = config({"virtualService": {"name": "app", "routes": ["api-v1"]}})
    with pytest.raises(UnsupportedError, match=r"setHeaderRoute 'h'.*http\[api-v1\]"):
        plan(nowhere, live(tricky()), state(headerRoutes=[web]))


def test_path_prefix_is_element_wise() -> None:
    """``prefix: /api`` covers /api and /api/x, never /apix (Istio compares characters)."""
    cfg = config({"virtualService": {"name": "app"}})
    obj = vs("app", route("primary", dest("svc", 100), dest("svc-canary", 0)))
    api = {"name": "h", "matches": [{"path": {"prefix": "/api"}}]}
    out = get(run(cfg, live(obj), state(headerRoutes=[api])))
    assert out["spec"]["http"][0]["match"] == [
        {"uri": {"exact": "/api"}},
        {"uri": {"prefix": "/api/"}},
    ]
    assert canary_share(send(out, "GET /api")) == 1
    assert canary_share(send(out, "GET /api/x")) == 1
    assert canary_share(send(out, "GET /apix")) == 0


def test_rewrite_uri_primary_refuses_a_narrower_path() -> None:
    """``rewrite.uri`` replaces the matched prefix: narrowing it changes the upstream path."""
    cfg = config({"virtualService": {"name": "app"}})
    obj = vs(
        "app",
        route(
            "primary",
            dest("svc", 100),
            dest("svc-canary", 0),
            match=[{"uri": {"prefix": "/api"}}],
            rewrite={"uri": "/"},
        ),
    )
    narrower = {"name": "h", "matches": [{"path": {"exact": "/api/cart"}}]}
    with pytest.raises(UnsupportedError, match=r"rewrite\.uri"):
        plan(cfg, live(obj), state(headerRoutes=[narrower]))
    out = get(run(cfg, live(obj), state(headerRoutes=[HEADER])))  # uri unchanged: fine
    assert out["spec"]["http"][0]["match"] == [
        {"uri": {"prefix": "/api"}, "headers": {"x-canary": {"exact": "always"}}}
    ]
    assert out["spec"]["http"][0]["rewrite"] == {"uri": "/"}


def test_copies_are_reasserted_reordered_and_cleaned_up() -> None:
    cfg = config(TWO)
    desired = state(weight=20, headerRoutes=[HEADER], mirrorRoutes=[MIRROR])
    current = run(cfg, live(tricky()), desired)
    good = get(current)
    names = ["static", "h", "m", "api-v1", "h.2", "m.2", "catch-all", "late"]
    assert http_names(good) == names
    # Someone deletes one copy and moves another: both come back, in place.
    broken = copy.deepcopy(good)
    http = broken["spec"]["http"]
    moved = http.pop(5)  # m.2
    del http[4]  # h.2
    http.insert(0, moved)
    repaired = get(run(cfg, live(broken), desired))
    assert repaired["spec"]["http"] == good["spec"]["http"]
    # Dropping a selected route drops its copies; the ledger follows.
    one = config({"virtualService": {"name": "app", "routes": ["catch-all"]}})
    narrowed = get(run(one, current, desired))
    assert http_names(narrowed) == ["static", "api-v1", "h", "m", "catch-all", "late"]
    assert read_ledger(narrowed, "app/svc-canary").names("routes") == ["h", "m"]
    # Cleanup removes every copy and nothing else.
    cleaned = get(run(cfg, current, CLEANUP))
    assert http_names(cleaned) == ["static", "api-v1", "catch-all", "late"]


def test_copies_of_managed_routes_are_ours_without_a_ledger() -> None:
    """Argo's rule (``managedRoutes`` names are ours) extends to their ``.n`` copies; a route
    someone else named like a copy is still refused."""
    cfg = config(TWO, trafficRouting={"managedRoutes": [{"name": "h"}]})
    desired = state(headerRoutes=[HEADER])
    out = copy.deepcopy(get(run(cfg, live(tricky()), desired)))
    del out["metadata"]["annotations"]
    out["spec"]["http"][3]["match"] = [{"headers": {"x-canary": {"exact": "tampered"}}}]
    again = get(run(cfg, live(out), desired))
    assert again["spec"]["http"][3]["match"] == [{"headers": {"x-canary": {"exact": "always"}}}]
    assert http_names(again).count("h.2") == 1
    theirs = tricky()
    theirs["spec"]["http"].insert(0, route("h.2", dest("x"), match=[{"uri": {"exact": "/x"}}]))
    with pytest.raises(PlanError, match=r"named 'h\.2' but was not added by us"):
        plan(config(TWO), live(theirs), desired)
