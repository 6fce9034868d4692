"""One test per Argo Rollouts bug the issue cites: each would fail on the incumbent's behaviour."""

from __future__ import annotations

import copy

import pytest
from istio_helpers import (
    CLEANUP,
    config,
    dest,
    dr,
    get,
    http_names,
    live,
    plan,
    route,
    run,
    simple_vs,
    state,
    vs,
    weights_of,
)

from routers.errors import ConfigError


def test_argo_3125_foreign_destination_survives() -> None:
    """Argo deleted every destination that was neither stable nor canary."""
    cfg = config(
        {
            "virtualService": {"name": "app", "routes": ["primary"]},
            "destinationRule": {
                "name": "app",
                "stableSubsetName": "stable",
                "canarySubsetName": "canary",
            },
        }
    )
    foreign = dest("svc", 10, subset="team-b")
    objs = live(
        vs("app", route("primary", dest("svc", 90, "stable"), dest("svc", 0, "canary"), foreign)),
        dr(subsets=("stable", "canary", "team-b")),
    )
    out = get(run(cfg, objs, state(weight=50)))
    entries = out["spec"]["http"][0]["route"]
    assert entries[2] == foreign  # untouched, weight included
    assert weights_of(out["spec"]["http"][0]) == [40, 50, 10]  # 50% of all traffic (issue 12)
    assert sum(weights_of(out["spec"]["http"][0])) == 100  # type: ignore[arg-type]
    # Cleanup returns our share to stable and still leaves the foreign destination alone.
    cleaned = get(run(cfg, live(out, dr(subsets=("stable", "canary", "team-b"))), CLEANUP))
    assert cleaned["spec"]["http"][0]["route"][2] == foreign
    assert weights_of(cleaned["spec"]["http"][0]) == [90, 0, 10]


def test_argo_2767_without_headers_survive_header_route() -> None:
    """Argo round-tripped matches through partial structs and erased withoutHeaders to {}."""
    cfg = config({"virtualService": {"name": "app", "routes": ["primary"]}})
    match = [{"uri": {"prefix": "/"}, "withoutHeaders": {"x-probe": {"exact": "1"}}}]
    other = route(
        "legacy",
        dest("legacy"),
        match=[{"withoutHeaders": {"x-a": {"regex": ".*"}}, "uri": {"exact": "/old"}}],
    )
    objs = live(
        vs("app", other, route("primary", dest("svc", 100), dest("svc-canary", 0), match=match))
    )
    out = get(
        run(
            cfg,
            objs,
            state(
                weight=10,
                headerRoutes=[
                    {"name": "hdr", "matches": [{"headers": [{"name": "x-canary", "exact": "1"}]}]}
                ],
            ),
        )
    )
    by_name = {r.get("name"): r for r in out["spec"]["http"]}
    assert by_name["legacy"] == other
    assert by_name["primary"]["match"] == match
    # The header route ANDs the primary's conditions, withoutHeaders included.
    assert by_name["hdr"]["match"] == [{**match[0], "headers": {"x-canary": {"exact": "1"}}}]


def test_argo_2266_retries_survive_on_delegate() -> None:
    """Argo dropped the retries stanza of a delegate VirtualService's route on every weight update."""
    cfg = config({"virtualService": {"name": "root", "routes": ["to-delegate"]}})
    root = vs("root", route("to-delegate", delegate={"name": "leaf"}))
    del root["spec"]["http"][0]["route"]
    retries = {"attempts": 4, "perTryTimeout": "1s", "retryOn": "connect-failure"}
    leaf = vs(
        "leaf", route("r", dest("svc", 100), dest("svc-canary", 0), retries=retries, timeout="9s")
    )
    del leaf["spec"]["hosts"]
    objs = live(root, leaf)
    out = run(cfg, objs, state(weight=40))
    got = get(out, name="leaf")["spec"]["http"][0]
    assert got["retries"] == retries
    assert got["timeout"] == "9s"
    assert weights_of(got) == [60, 40]
    assert get(out, name="root") == root


def test_argo_3884_single_named_route_is_weighted() -> None:
    """Argo silently skipped a VS whose only route was named when routes was omitted."""
    cfg = config({"virtualService": {"name": "app"}})
    out = get(run(cfg, live(simple_vs()), state(weight=25)))
    assert weights_of(out["spec"]["http"][0]) == [75, 25]


def test_argo_4741_all_routes_named_without_routes_is_a_config_error() -> None:
    """Argo's SetWeight no-oped when every route was named and none was configured; we either
    weight the one candidate or refuse, naming the candidates, never a silent no-op."""
    cfg = config({"virtualService": {"name": "app"}})
    objs = live(
        vs(
            "app",
            route("a", dest("svc", 100), dest("svc-canary", 0), match=[{"uri": {"prefix": "/a"}}]),
            route("b", dest("svc", 100), dest("svc-canary", 0)),
        )
    )
    with pytest.raises(ConfigError) as err:
        plan(cfg, objs, state(weight=10))
    (problem,) = err.value.problems
    assert problem.path == "istio.virtualService.routes"
    assert "http[a]" in problem.message
    assert "http[b]" in problem.message
    none = live(vs("app", route("a", dest("other", 100))))
    with pytest.raises(ConfigError, match=r"no http route with both the stable and the canary"):
        plan(cfg, none, state(weight=10))


HEADER = {
    "name": "canary-header",
    "matches": [{"headers": [{"name": "x-canary", "exact": "always"}]}],
}


def test_argo_4716_header_route_deleted_is_restored() -> None:
    """After a restart Argo removed managed routes and never re-applied SetHeaderRoute."""
    cfg = config({"virtualService": {"name": "app"}})
    desired = state(weight=20, headerRoutes=[HEADER])
    first = run(cfg, live(simple_vs()), desired)
    obj = copy.deepcopy(get(first))
    assert http_names(obj) == ["canary-header", "primary"]
    obj["spec"]["http"].pop(0)  # someone (a restart, a sync) removes it; the ledger stays
    again = get(run(cfg, live(obj), desired))
    assert http_names(again) == ["canary-header", "primary"]
    assert again["spec"]["http"][0] == get(first)["spec"]["http"][0]


def test_argo_4486_header_route_survives_weight_changes() -> None:
    """Argo lost the header route mid-rollout while weights kept being re-asserted: each weight
    step re-plans the whole state, so the route stays (and an edited one is repaired)."""
    cfg = config({"virtualService": {"name": "app"}})
    current = live(simple_vs())
    for w in (10, 30, 60, 100):
        current = run(cfg, current, state(weight=w, headerRoutes=[HEADER]))
        obj = get(current)
        assert http_names(obj) == ["canary-header", "primary"]
        assert weights_of(obj["spec"]["http"][1]) == [100 - w, w]
    obj = get(current)
    obj["spec"]["http"][0]["match"] = [{"headers": {"x-canary": {"exact": "tampered"}}}]
    repaired = get(run(cfg, live(obj), state(weight=100, headerRoutes=[HEADER])))
    assert repaired["spec"]["http"][0]["match"] == [{"headers": {"x-canary": {"exact": "always"}}}]
