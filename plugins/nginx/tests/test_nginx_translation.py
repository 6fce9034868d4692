"""Header, weight and mirror translation, and every refusal naming what nginx can do instead."""

from __future__ import annotations

import copy
from fractions import Fraction
from typing import Any

import pytest
from nginx_fixtures import (
    FACTS,
    PLUGIN,
    P,
    apply,
    config,
    engine_plan,
    header_route,
    ingress,
    live,
    mirror_route,
    path,
    plan,
    routing,
    service,
    state,
)
from routers_nginx.annotations import HeaderCondition, header_condition
from routers_nginx.planner import express_weight

from routers.contract import MirrorSupport
from routers.errors import PlanError, TargetNotFoundError, UnsupportedError
from routers.model import Cleanup, HeaderRoute
from routers.planning.objects import ObjectRef
from routers.planning.plan import Create, Patch

STABLE = ObjectRef("networking.k8s.io", "Ingress", "prod", "app")
CANARY = ObjectRef("networking.k8s.io", "Ingress", "prod", "app-canary")
PLUGIN_CLEANUP = Cleanup()


def condition(
    match: dict[str, str] | None = None, *, header: str = "X-Canary", allow_underscore: bool = False
) -> HeaderCondition:
    route = HeaderRoute.parse(header_route(header=header, **(match or {"exact": "always"})))
    return header_condition("nginx", route, allow_underscore=allow_underscore)


def refusal(**route: Any) -> UnsupportedError:
    with pytest.raises(UnsupportedError) as exc:
        header_condition("nginx", HeaderRoute.parse(route), allow_underscore=False)
    return exc.value


# -- header routes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        ({"exact": "always"}, HeaderCondition("X-Canary", value="always")),
        ({"exact": "v2.1-beta_~/:x"}, HeaderCondition("X-Canary", value="v2.1-beta_~/:x")),
        ({"exact": "team=qa"}, HeaderCondition("X-Canary", pattern="^team=qa$")),
        ({"exact": "a+b"}, HeaderCondition("X-Canary", pattern=r"^a\+b$")),
        ({"prefix": "v2."}, HeaderCondition("X-Canary", pattern=r"^v2\..*")),
        ({"regex": "beta-[0-9]+"}, HeaderCondition("X-Canary", pattern="^(?:beta-[0-9]+)$")),
        ({"regex": "alpha|beta"}, HeaderCondition("X-Canary", pattern="^(?:alpha|beta)$")),
    ],
)
def test_header_condition(match: dict[str, str], expected: HeaderCondition) -> None:
    assert condition(match) == expected


def test_prefix_is_escaped_so_a_dot_is_literal() -> None:
    import re

    pattern = condition({"prefix": "v1.2"}).pattern
    assert pattern is not None
    assert re.search(pattern, "v1.2.3")
    assert not re.search(pattern, "v1x2")
    assert not re.search(pattern, "xv1.2")


def test_regex_is_anchored_because_pcre_searches() -> None:
    import re

    pattern = condition({"regex": "beta"}).pattern
    assert pattern is not None
    assert re.search(pattern, "beta")
    assert not re.search(pattern, "not-beta-really")


@pytest.mark.parametrize(
    ("match", "bad"),
    [
        ({"exact": "a,b"}, ","),
        ({"exact": "a b"}, " "),
        ({"exact": "it's"}, "'"),
        ({"regex": "a{1,3}"}, ","),
        ({"exact": "x@y"}, "@"),
        ({"prefix": 'say"'}, '"'),
    ],
)
def test_values_ingress_nginx_would_drop_are_refused(match: dict[str, str], bad: str) -> None:
    with pytest.raises(UnsupportedError) as exc:
        condition(match)
    message = str(exc.value)
    assert repr(next(iter(match.values()))) in message
    assert repr(bad) in message
    assert "silently drop" in message


def test_underscore_header_refused_unless_allowed() -> None:
    with pytest.raises(UnsupportedError) as exc:
        condition(header="X_Canary")
    assert "'X_Canary'" in str(exc.value)
    assert "allowUnderscoreHeaders" in str(exc.value)
    assert condition(allow_underscore=True, header="X_Canary").name == "X_Canary"


@pytest.mark.parametrize("name", ["X.Canary", "X~Canary", "X!Canary"])
def test_header_names_nginx_ignores(name: str) -> None:
    with pytest.raises(UnsupportedError, match="ignore-invalid-headers"):
        condition(header=name)


def test_two_anded_headers() -> None:
    err = refusal(
        name="beta",
        matches=[{"headers": [{"name": "X-A", "exact": "1"}, {"name": "X-B", "exact": "2"}]}],
    )
    assert "2 ANDed header conditions" in err.reason
    assert err.hint is not None
    assert "one header condition" in err.hint


@pytest.mark.parametrize(
    ("extra", "what"),
    [
        ({"path": {"prefix": "/api"}}, "path"),
        ({"method": "GET"}, "method"),
        ({"queryParams": [{"name": "v", "exact": "2"}]}, "queryParams"),
    ],
)
def test_path_method_query_conditions(extra: dict[str, Any], what: str) -> None:
    err = refusal(name="beta", matches=[{"headers": [{"name": "X-A", "exact": "1"}], **extra}])
    assert what in err.reason
    assert err.instruction == "setHeaderRoute 'beta'"
    assert err.hint is not None
    assert "own stable Ingress" in err.hint


def test_ored_matches() -> None:
    err = refusal(
        name="beta",
        matches=[
            {"headers": [{"name": "X-A", "exact": "1"}]},
            {"headers": [{"name": "X-B", "exact": "2"}]},
        ],
    )
    assert "2 ORed matches" in err.reason
    assert err.hint is not None
    assert "regex" in err.hint


def test_second_header_route_refused() -> None:
    with pytest.raises(UnsupportedError, match="one canary-by-header") as exc:
        plan(config(), live(ingress()), state(headerRoutes=[header_route("a"), header_route("b")]))
    assert "'a', 'b'" in str(exc.value)


def test_engine_refuses_method_before_planning() -> None:
    route = {
        "name": "beta",
        "matches": [{"headers": [{"name": "X-A", "exact": "1"}], "method": "GET"}],
    }
    with pytest.raises(UnsupportedError, match="method matches are not supported"):
        engine_plan(routing(), live(ingress()), state(headerRoutes=[route]))


def test_static_header_conflicts_with_header_route() -> None:
    nginx = {
        "stableIngress": "app",
        "additionalIngressAnnotations": {"canary-by-header": "X-Static"},
    }
    assert not PLUGIN.capabilities(config(nginx)).header_routes
    with pytest.raises(UnsupportedError, match="header-based routing is not supported"):
        engine_plan(routing(nginx), live(ingress()), state(headerRoutes=[header_route()]))
    with pytest.raises(UnsupportedError, match="set statically"):
        plan(config(nginx), live(ingress()), state(headerRoutes=[header_route()]))


# -- weights ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weight", "total", "expected"),
    [
        (0, 100, (0, 100)),
        (10, 100, (10, 100)),
        (100, 100, (100, 100)),
        (125, 1000, (125, 1000)),
        (7, 30, (28, 120)),
        (3, 20, (15, 100)),
        (1, 1, (100, 100)),
        (1, 3, (34, 102)),
        (1, 7, (15, 105)),
        (999_999, 1_000_000, (999_999, 1_000_000)),
    ],
)
def test_weight_expressed_exactly(weight: int, total: int, expected: tuple[int, int]) -> None:
    got_weight, got_total, note = express_weight(config(), state(weight=weight, total=total))
    assert (got_weight, got_total) == expected
    assert note is None


def test_every_total_is_exact_and_never_below_100() -> None:
    cfg = config()
    for total in range(1, 260):
        for weight in {0, 1, total // 3, total - 1, total} - {-1}:
            w, t = express_weight(cfg, state(weight=weight, total=total))[:2]
            assert t >= 100, (weight, total)
            assert Fraction(w, t) == Fraction(weight, total), (weight, total)


def test_without_weight_total_annotation_rounds_and_says_so() -> None:
    cfg = config({"stableIngress": "app", "weightTotalAnnotation": False})
    assert PLUGIN.capabilities(cfg).max_total == 100
    w, t, note = express_weight(cfg, state(weight=1, total=3))
    assert (w, t) == (33, 100)
    assert note is not None
    assert note.level == "warning"
    assert "1/3 is expressed as 33/100" in note.message
    assert express_weight(cfg, state(weight=20, total=1000))[2] is None  # 2/100 exactly


def test_weight_total_annotation_only_above_100() -> None:
    result = plan(config(), live(ingress()), state(weight=3, total=20))
    (create,) = [op for op in result if isinstance(op, Create)]
    anns = create.body["metadata"]["annotations"]
    assert anns[f"{P}/canary-weight"] == "15"
    assert f"{P}/canary-weight-total" not in anns


# -- mirror -------------------------------------------------------------------------------------


def mirror_plan(stable: dict[str, Any], *more: dict[str, Any], **route: Any) -> Any:
    return plan(config(), live(stable, *more), state(mirrorRoutes=[mirror_route(**route)]))


def stable_annotations(result: Any) -> dict[str, str]:
    objs = apply(result, live(ingress()))
    return dict(objs[STABLE]["metadata"]["annotations"])


def test_mirror_target_on_the_stable_ingress() -> None:
    result = mirror_plan(ingress())
    anns = stable_annotations(result)
    assert anns[f"{P}/mirror-target"] == "http://app-canary.prod.svc.cluster.local$request_uri"
    assert anns[f"{P}/mirror-host"] == "app-canary.prod.svc.cluster.local"
    (create,) = [op for op in result if isinstance(op, Create)]
    assert f"{P}/mirror-target" not in create.body["metadata"]["annotations"]


def test_mirror_percentage_refused_unless_round_up_allowed() -> None:
    caps = PLUGIN.capabilities(config())
    assert caps.mirror is MirrorSupport.FULL_ONLY
    with pytest.raises(UnsupportedError, match="allowMirrorRoundUp") as exc:
        mirror_plan(ingress(), percentage=10)
    assert "10% requested" in str(exc.value)
    nginx = {"stableIngress": "app", "allowMirrorRoundUp": True}
    rounded = PLUGIN.capabilities(config(nginx))
    assert rounded.mirror is MirrorSupport.FULL_ONLY
    assert rounded.mirror_round_up
    (result,) = engine_plan(
        routing(nginx), live(ingress()), state(mirrorRoutes=[mirror_route(percentage=12.5)])
    )
    assert any("12.5% requested" in n.message and n.level == "warning" for n in result.notes)
    obs = PLUGIN.observe(config(nginx), apply(result, live(ingress())), FACTS)
    assert dict(obs.mirror_routes) == {"shadow": 100.0}


def test_mirror_refused_when_the_ingress_serves_other_apps() -> None:
    shared = ingress(paths=[path("/app"), path("/blog", "blog")])
    with pytest.raises(UnsupportedError, match=r"other backends' traffic \(app.example.com/blog\)"):
        mirror_plan(shared)


def test_mirror_refused_with_foreign_default_backend() -> None:
    stable = ingress()
    stable["spec"]["defaultBackend"] = {"service": {"name": "fallback", "port": {"number": 80}}}
    with pytest.raises(UnsupportedError, match="defaultBackend"):
        mirror_plan(stable)


def test_mirror_match_must_cover_the_ingress() -> None:
    with pytest.raises(UnsupportedError, match="does not cover /"):
        mirror_plan(ingress(), prefix="/api")
    ok = mirror_plan(ingress(paths=[path("/api"), path("/api/v2", ptype="Exact")]), prefix="/api")
    assert ok.operations
    with pytest.raises(UnsupportedError, match="does not cover /apis"):
        mirror_plan(ingress(paths=[path("/api"), path("/apis")]), prefix="/api")


def test_mirror_on_headers_refused() -> None:
    route = {"name": "shadow", "matches": [{"headers": [{"name": "X-A", "exact": "1"}]}]}
    with pytest.raises(UnsupportedError, match="cannot mirror on headers") as exc:
        plan(config(), live(ingress()), state(mirrorRoutes=[route]))
    assert exc.value.hint is not None
    assert "prefix: /" in exc.value.hint


def test_mirror_named_port_resolved_through_the_canary_service() -> None:
    stable = ingress(paths=[path("/", port="http")])
    refs = PLUGIN.targets(config(), live(stable))
    assert ObjectRef("", "Service", "prod", "app-canary") in refs
    with pytest.raises(TargetNotFoundError, match="named port 'http'") as exc:
        mirror_plan(stable)
    assert "Service prod/app-canary" in str(exc.value)
    result = mirror_plan(stable, service([{"name": "http", "port": 8080}]))
    target = [
        op["value"]
        for p in result
        if isinstance(p, Patch)
        for op in p.ops
        if op["path"].endswith("mirror-target")
    ]
    assert target == ["http://app-canary.prod.svc.cluster.local:8080$request_uri"]
    with pytest.raises(PlanError, match="no port named 'http'"):
        mirror_plan(stable, service([{"name": "web", "port": 8080}]))


def test_targets_without_named_ports_read_only_ingresses() -> None:
    refs = PLUGIN.targets(config(), live(ingress()))
    assert [r.kind for r in refs] == ["Ingress", "Ingress"]


def test_mirror_refused_for_several_ports_and_grpc() -> None:
    with pytest.raises(UnsupportedError, match="several ports"):
        mirror_plan(ingress(paths=[path("/", port=80), path("/api", port=81)]))
    grpc = ingress(annotations={f"{P}/backend-protocol": "GRPC"})
    with pytest.raises(UnsupportedError, match="backend-protocol GRPC"):
        mirror_plan(grpc)


def test_foreign_mirror_target_is_not_overwritten() -> None:
    stable = ingress(annotations={f"{P}/mirror-target": "http://audit.example$request_uri"})
    with pytest.raises(PlanError, match="not set by canary-routers") as exc:
        mirror_plan(stable)
    assert "Ingress.networking.k8s.io prod/app" in str(exc.value)
    # Without a mirror route the foreign mirror stays untouched.
    after = apply(plan(config(), live(stable), state(weight=5)), live(stable))[STABLE]
    assert after["metadata"]["annotations"][f"{P}/mirror-target"] == (
        "http://audit.example$request_uri"
    )


def test_header_route_and_mirror_route_together_refused() -> None:
    """nginx mirrors header-routed requests too: the canary would get them twice."""
    both = state(headerRoutes=[header_route()], mirrorRoutes=[mirror_route()])
    with pytest.raises(UnsupportedError, match="at most 1 managed route"):
        engine_plan(routing(), live(ingress()), both)
    with pytest.raises(UnsupportedError, match="reach it twice") as exc:
        plan(config(), live(ingress()), both)
    assert exc.value.hint is not None
    assert "different steps" in exc.value.hint


def test_two_mirror_routes_refused() -> None:
    with pytest.raises(UnsupportedError, match="one mirror-target"):
        plan(
            config(),
            live(ingress()),
            state(mirrorRoutes=[mirror_route("a"), mirror_route("b")]),
        )


# -- objects ------------------------------------------------------------------------------------


def test_missing_stable_ingress() -> None:
    with pytest.raises(TargetNotFoundError) as exc:
        plan(config({"stableIngresses": ["app", "other"]}), live(ingress()), state(weight=1))
    assert "stableIngresses[1]" in str(exc.value)
    assert "prod/other" in str(exc.value)


def test_stable_ingress_without_the_stable_service() -> None:
    with pytest.raises(PlanError, match="no rule routes to the stable Service 'app-stable'"):
        plan(config(), live(ingress(paths=[path("/", "someone-else")])), state(weight=1))


def test_canary_ingress_of_another_controller_is_not_taken_over() -> None:
    theirs = ingress("app-canary", annotations={f"{P}/canary": "true"})
    with pytest.raises(PlanError, match="not created by canary-routers") as exc:
        plan(config(), live(ingress(), theirs), state(weight=1))
    assert "prod/app-canary" in str(exc.value)


def test_created_once_then_patched_never_replaced() -> None:
    cfg = config()
    objs = live(ingress())
    first = plan(cfg, objs, state(weight=5))
    # The claim on the stable Ingress first: a canary Ingress never serves unclaimed.
    assert [(type(op).__name__, op.ref) for op in first] == [("Patch", STABLE), ("Create", CANARY)]
    objs = apply(first, objs)
    objs[CANARY]["metadata"].update({"uid": "u1", "resourceVersion": "10"})
    second = plan(cfg, objs, state(weight=6))
    assert [type(op).__name__ for op in second] == ["Patch"]
    (patch,) = second.operations
    assert isinstance(patch, Patch)
    assert patch.ops[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "10"}
    assert patch.edits == (
        {
            "op": "replace",
            "path": f"/metadata/annotations/{P.replace('/', '~1')}~1canary-weight",
            "value": "6",
        },
    )


def test_stray_routing_annotation_on_our_canary_is_reported() -> None:
    cfg = config()
    objs = apply(plan(cfg, live(ingress()), state(weight=5)), live(ingress()))
    objs[CANARY]["metadata"]["annotations"][f"{P}/canary-by-header"] = "X-Manual"
    result = plan(cfg, objs, state(weight=5))
    assert result.empty
    assert any("canary-by-header" in n.message and n.level == "warning" for n in result.notes)
    obs = PLUGIN.observe(cfg, objs, FACTS)
    assert any("not set by canary-routers" in p for p in obs.problems)


def test_plan_never_mutates_live_objects() -> None:
    objs = live(ingress(paths=[path("/", port="http")]), service([{"name": "http", "port": 80}]))
    before = copy.deepcopy(dict(objs.items()))
    plan(config(), objs, state(weight=5, headerRoutes=[header_route()]))
    plan(config(), objs, state(weight=5, mirrorRoutes=[mirror_route()]))
    plan(config(), objs, state(weight=0))
    assert dict(objs.items()) == before


def test_ledger_tampering_never_removes_foreign_stable_annotations() -> None:
    stable = ingress(
        annotations={
            "example.com/keep": "1",
            "canary-routers.io/managed": '{"annotations":["example.com/keep"],"mirrorRoutes":["x"]}',
        }
    )
    objs = apply(plan(config(), live(stable), PLUGIN_CLEANUP), live(stable))
    assert objs[STABLE]["metadata"]["annotations"] == {"example.com/keep": "1"}


def test_cleanup_of_nothing_is_empty() -> None:
    assert plan(config(), live(ingress()), PLUGIN_CLEANUP).empty
    assert plan(config(), live(), PLUGIN_CLEANUP).empty


def test_permissions_and_capabilities_envelope() -> None:
    perms = {(p.group, p.resource): p.verbs for p in PLUGIN.permissions(config())}
    assert perms[("networking.k8s.io", "ingresses")] == ("get", "create", "patch", "delete")
    assert perms[("", "services")] == ("get",)
    caps = PLUGIN.capabilities()
    limits = caps.header_limits
    assert (caps.max_routes, limits.max_matches_per_route, limits.max_headers_per_match) == (
        1,
        1,
        1,
    )
    assert not limits.method_match
    assert not limits.query_match
    assert not caps.additional_destinations
    assert caps.max_total is None
