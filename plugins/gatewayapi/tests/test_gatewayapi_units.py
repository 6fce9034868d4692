"""Translation logic and error paths of the gatewayapi plugin."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from gatewayapi_helpers import (
    NO_FACTS,
    PLUGIN,
    config,
    facts,
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
from routers_gatewayapi.features import detect
from routers_gatewayapi.kinds import GRPC, HTTP
from routers_gatewayapi.matches import Unexpressible, combine_http, steals_from
from routers_gatewayapi.rules import fingerprint

from routers.contract import ClusterFacts, CrdFacts, MirrorSupport
from routers.engine import bind
from routers.errors import (
    ConfigError,
    LimitExceededError,
    PlanError,
    TargetNotFoundError,
    UnsupportedError,
)
from routers.model import Cleanup, RequestMatch, RoutingConfig
from routers.planning.ownership import LEDGER

HEADER = {
    "name": "canary-header",
    "matches": [{"headers": [{"name": "X-Canary", "exact": "always"}]}],
}


def match(**kw: Any) -> RequestMatch:
    return RequestMatch.parse(kw)


# -- config -------------------------------------------------------------------------------------


def test_argo_section_binds_through_the_plugins_key() -> None:
    routing = RoutingConfig.from_document(
        {
            "stableService": "a",
            "canaryService": "b",
            "trafficRouting": {
                "plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": "r", "namespace": "edge"}}
            },
        }
    )
    (binding,) = bind(routing)
    assert binding.name == "gatewayapi"
    (t,) = binding.config.targets
    assert (t.name, t.namespace, t.managed_rules, binding.config.namespace) == (
        "r",
        "edge",
        True,
        "default",
    )


def test_singular_route_implies_header_routes_and_list_entries_default_to_false() -> None:
    cfg = config(
        {
            "httpRoute": "a",
            "httpRoutes": [{"name": "b"}, {"name": "c", "useHeaderRoutes": True}],
            "tcpRoute": "t",
        }
    )
    assert [(t.kind.kind, t.name, t.managed_rules) for t in cfg.targets] == [
        ("HTTPRoute", "a", True),
        ("HTTPRoute", "b", False),
        ("HTTPRoute", "c", True),
        ("TCPRoute", "t", False),
    ]


@pytest.mark.parametrize(
    ("section", "path", "words"),
    [
        (
            {"httpRouteSelector": {"matchLabels": {"a": "b,c"}}},
            "httpRouteSelector.matchLabels.a",
            "not a valid label value",
        ),
        (
            {"httpRouteSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
            "httpRouteSelector.matchExpressions[0]",
            "needs at least one value",
        ),
        ({"httpRoute": "a", "inProgressLabelKey": "x"}, "inProgressLabelKey", "never labels"),
        (
            {"httpRoute": "a", "disableInProgressLabel": False},
            "disableInProgressLabel",
            "never labels",
        ),
        (
            {"httpRoute": "a", "httpRoutes": [{"name": "a"}]},
            "httpRoutes[0]",
            "already listed at httpRoute",
        ),
        (
            {"tcpRoutes": [{"name": "t", "useHeaderRoutes": True}]},
            "tcpRoutes[0].useHeaderRoutes",
            "no request matches",
        ),
        ({"httpRoute": "a", "crdChannel": "experimental"}, "crdChannel", "crdBundleVersion"),
        ({"httpRoute": "a", "crdBundleVersion": "1.2"}, "crdBundleVersion", "release version"),
        ({"httpRoutes": [{"name": "Bad_Name"}]}, "httpRoutes[0].name", "DNS-1123"),
        ({"httpRoute": "a", "bogus": 1}, "bogus", "unknown field"),
        ({}, "", "no route configured"),
    ],
)
def test_config_errors_name_the_field(section: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        config(section)
    assert any(p.path == path and words in p.message for p in err.value.problems), (
        err.value.problems
    )


def test_permissions_cover_exactly_the_configured_kinds() -> None:
    perms = PLUGIN.permissions(config({"httpRoute": "a", "tlsRoutes": [{"name": "t"}]}))
    assert [(p.group, p.resource, p.verbs) for p in perms] == [
        ("gateway.networking.k8s.io", "httproutes", ("get", "patch")),
        ("gateway.networking.k8s.io", "tlsroutes", ("get", "patch")),
    ]


# -- capability detection ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bundle", "channel", "names", "fraction"),
    [
        ("v1.2.1", "standard", False, False),
        ("v1.3.0", "standard", False, True),
        ("v1.4.0", "standard", True, True),
        ("v1.2.0", "experimental", True, True),
        ("v1.1.0", "experimental", False, False),
        ("v1.6.3", "standard", True, True),
        ("v1.4.0", None, True, True),
        ("v1.3.0", "weird", False, True),
    ],
)
def test_features_follow_bundle_version_and_channel(
    bundle: str, channel: str | None, names: bool, fraction: bool
) -> None:
    f = detect(
        HTTP,
        ClusterFacts(crds={HTTP.crd: CrdFacts(HTTP.crd, ("v1",), bundle, channel)}),
        None,
        None,
    )
    assert (f.rule_names, f.mirror_fraction, f.source) == (names, fraction, "cluster")


def test_cluster_facts_win_over_the_override_and_the_assumption_is_flagged() -> None:
    cluster = ClusterFacts(crds={GRPC.crd: CrdFacts(GRPC.crd, ("v1",), "v1.2.1", "standard")})
    assert detect(GRPC, cluster, "v1.6.0", "experimental").source == "cluster"
    assert detect(GRPC, None, "v1.2.1", "standard").rule_names is False
    assumed = detect(GRPC, None, None, None)
    assert assumed.assumed and assumed.rule_names and assumed.mirror_fraction


def test_capabilities_depend_on_config_and_cluster() -> None:
    envelope = PLUGIN.capabilities()
    assert envelope.mirror is MirrorSupport.FRACTION and envelope.max_total == 1_000_000
    v12 = PLUGIN.capabilities(config(), facts("v1.2.1"))
    assert v12.mirror is MirrorSupport.FULL_ONLY and any("v1.2.1" in n for n in v12.notes)
    grpc = PLUGIN.capabilities(config({"httpRoute": "a", "grpcRoute": "g"}), facts("v1.6.3"))
    limits = grpc.header_limits
    assert (
        grpc.header_routes
        and not limits.path_match
        and not limits.method_match
        and not limits.query_match
    )
    weights_only = PLUGIN.capabilities(
        config({"httpRoutes": [{"name": "a"}], "tcpRoute": "t"}), NO_FACTS
    )
    assert not weights_only.header_routes and weights_only.mirror is MirrorSupport.NONE


# -- match translation --------------------------------------------------------------------------

SRC_API = {"path": {"type": "PathPrefix", "value": "/api"}, "method": "GET"}


@pytest.mark.parametrize(
    ("wanted", "path"),
    [
        ({"path": {"prefix": "/api/v2"}}, {"type": "PathPrefix", "value": "/api/v2"}),
        ({"path": {"prefix": "/api/"}}, {"type": "PathPrefix", "value": "/api/"}),
        ({"path": {"exact": "/api"}}, {"type": "Exact", "value": "/api"}),
        ({"path": {"prefix": "/"}}, {"type": "PathPrefix", "value": "/api"}),
        ({"path": {"prefix": "/apix"}}, None),
        ({"path": {"exact": "/web"}}, None),
        ({"method": "POST"}, None),
        ({"headers": [{"name": "a", "exact": "b"}]}, {"type": "PathPrefix", "value": "/api"}),
    ],
)
def test_path_and_method_intersection(wanted: dict[str, Any], path: dict[str, str] | None) -> None:
    out = combine_http(SRC_API, match(**wanted))
    assert (out["path"] if out else None) == path
    if out:
        assert out["method"] == "GET"


def test_regex_path_against_a_narrower_source_is_refused() -> None:
    with pytest.raises(Unexpressible, match="regular-expression"):
        combine_http(SRC_API, match(path={"regex": "/api/[0-9]+"}))


def test_header_conditions_merge_with_the_source_ones() -> None:
    src = {
        "path": {"type": "PathPrefix", "value": "/"},
        "headers": [{"name": "x-tenant", "type": "Exact", "value": "acme"}],
    }
    same = combine_http(
        src,
        match(headers=[{"name": "X-Tenant", "exact": "acme"}, {"name": "X-Canary", "exact": "1"}]),
    )
    assert same is not None and [h["name"] for h in same["headers"]] == ["x-tenant", "X-Canary"]
    assert combine_http(src, match(headers=[{"name": "X-TENANT", "exact": "other"}])) is None
    # An exact value and a regex on one header: the exact one when the regex accepts it under
    # both full-match and search semantics, nothing when it rejects it under both.
    narrowed = combine_http(src, match(headers=[{"name": "x-tenant", "regex": "a.*"}]))
    assert narrowed is not None and narrowed["headers"] == src["headers"]
    assert combine_http(src, match(headers=[{"name": "x-tenant", "prefix": "b"}])) is None
    unanchored = {
        **src,
        "headers": [{"name": "x-tenant", "type": "RegularExpression", "value": "cme"}],
    }
    with pytest.raises(Unexpressible, match="one condition per name"):
        combine_http(unanchored, match(headers=[{"name": "x-tenant", "exact": "acme"}]))
    regex = {**src, "headers": [{"name": "x-tenant", "type": "RegularExpression", "value": "ac.*"}]}
    with pytest.raises(Unexpressible, match="no single condition states both"):
        combine_http(regex, match(headers=[{"name": "x-tenant", "regex": "a.*"}]))


def test_steals_from_drops_a_narrowed_match_owned_by_a_more_specific_rule() -> None:
    root = {"type": "PathPrefix", "value": "/"}
    admin = {"path": {"type": "PathPrefix", "value": "/admin"}}
    assert steals_from({"type": "PathPrefix", "value": "/admin/users"}, root, admin)
    assert not steals_from({"type": "PathPrefix", "value": "/shop"}, root, admin)
    assert not steals_from({"type": "PathPrefix", "value": "/"}, root, admin)
    with pytest.raises(Unexpressible, match="owns only the requests"):
        steals_from({"type": "Exact", "value": "/admin/x"}, root, {**admin, "method": "POST"})


def test_narrowed_mirror_never_changes_a_stable_only_rules_backends() -> None:
    admin = {
        "matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
        "backendRefs": [ref("web-stable", weight=1)],
    }
    mirror = {"name": "m", "percentage": 50, "matches": [{"path": {"prefix": "/admin/reports"}}]}
    with pytest.raises(UnsupportedError, match="select no traffic"):
        plan(config(), live(route(rule("/"), admin)), state(mirrorRoutes=[mirror]))


def test_path_values_the_crd_rejects_are_refused_before_any_write() -> None:
    hdr = {"name": "h", "matches": [{"path": {"exact": "/a//b"}}]}
    with pytest.raises(UnsupportedError, match="'//'"):
        plan(config(), live(route(rule())), state(headerRoutes=[hdr]))


# -- planning errors ------------------------------------------------------------------------------


def test_missing_route_is_target_not_found_but_cleanup_just_notes_it() -> None:
    cfg = config({"httpRoute": "web", "grpcRoute": "gone"})
    with pytest.raises(TargetNotFoundError, match="GRPCRoute shop/gone"):
        plan(cfg, live(route(rule())), state(weight=10))
    p = plan(cfg, live(route(rule())), Cleanup())
    assert any("gone does not exist" in n.message for n in p.notes)


def test_route_without_both_services_is_a_plan_error() -> None:
    lone = {
        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
        "backendRefs": [ref("web-stable")],
    }
    with pytest.raises(PlanError, match="no rule references both"):
        plan(config(), live(route(lone)), state(weight=10))


def test_service_referenced_twice_in_one_rule_is_a_plan_error() -> None:
    r = rule()
    r["backendRefs"].append(ref("web-canary", port=81, weight=0))
    with pytest.raises(
        PlanError, match=r"rules\[0\] references the canary Service 'web-canary' 2 times"
    ):
        plan(config(), live(route(r)), state(weight=10))


def test_users_rule_with_our_rule_name_is_refused() -> None:
    users = {"name": "canary-header", **rule("/x")}
    with pytest.raises(PlanError, match="did not create it"):
        plan(config(), live(route(rule(), users)), state(headerRoutes=[HEADER]))


def test_too_many_rules_is_limit_exceeded_before_any_write() -> None:
    many = [rule(f"/p{i}") for i in range(9)]
    with pytest.raises(LimitExceededError, match="the CRD allows 16"):
        plan(config(), live(route(*many)), state(headerRoutes=[HEADER]))


def test_too_many_headers_after_merging_is_limit_exceeded() -> None:
    src = rule()
    src["matches"][0]["headers"] = [
        {"name": f"h{i}", "type": "Exact", "value": "v"} for i in range(10)
    ]
    hdr = {
        "name": "h",
        "matches": [{"headers": [{"name": f"x{i}", "exact": "v"} for i in range(7)]}],
    }
    with pytest.raises(LimitExceededError, match="17 headers conditions"):
        plan(config(), live(route(src)), state(headerRoutes=[hdr]))


def test_too_many_matches_in_total_is_limit_exceeded() -> None:
    src = rule()
    src["matches"] = [{"path": {"type": "PathPrefix", "value": f"/p{i}"}} for i in range(40)]
    hdr = {
        "name": "h",
        "matches": [{"headers": [{"name": "a", "exact": str(i)}]} for i in range(3)],
    }
    with pytest.raises(LimitExceededError, match="the CRD allows 64|the CRD allows 128"):
        plan(config(), live(route(src)), state(headerRoutes=[hdr]))


def test_mirror_percentage_on_v1_2_standard_names_the_version() -> None:
    mirror = {"name": "m", "percentage": 10, "matches": [{"method": "GET"}]}
    with pytest.raises(UnsupportedError) as err:
        plan(config(), live(route(rule())), state(mirrorRoutes=[mirror]), facts("v1.2.1"))
    assert "standard v1.2.1" in str(err.value) and ">= v1.3" in str(err.value)


def test_full_mirror_on_v1_2_standard_has_no_percent_and_no_names() -> None:
    mirror = {"name": "m", "percentage": 100, "matches": [{"method": "GET"}]}
    after = run(config(), live(route(rule())), state(mirrorRoutes=[mirror]), facts("v1.2.1"))
    shadow = rules_of(after)[0]
    assert "name" not in shadow
    assert shadow["filters"][-1]["requestMirror"] == {"backendRef": ref("web-canary")}


def test_grpc_route_refuses_path_conditions() -> None:
    g = route(kind="GRPCRoute", name="g")
    g["spec"]["rules"] = [
        {"backendRefs": [ref("web-stable", weight=1), ref("web-canary", weight=0)]}
    ]
    hdr = {
        "name": "h",
        "matches": [{"path": {"prefix": "/x"}, "headers": [{"name": "a", "exact": "b"}]}],
    }
    with pytest.raises(
        UnsupportedError, match="GRPCRoute matches gRPC service/method and headers only"
    ):
        plan(config({"grpcRoute": "g"}), live(g), state(headerRoutes=[hdr]))


def test_grpc_rule_without_matches_gets_a_headers_only_managed_match() -> None:
    g = route(kind="GRPCRoute", name="g")
    g["spec"]["rules"] = [
        {"backendRefs": [ref("web-stable", weight=1), ref("web-canary", weight=0)]}
    ]
    after = run(config({"grpcRoute": "g"}), live(g), state(headerRoutes=[HEADER]))
    assert rules_of(after, "g", "GRPCRoute")[0]["matches"] == [
        {"headers": [{"name": "X-Canary", "type": "Exact", "value": "always"}]}
    ]


def test_tcp_and_tls_routes_only_take_weights() -> None:
    tcp = route(kind="TCPRoute", name="t")
    tcp["spec"]["rules"] = [
        {"backendRefs": [ref("web-stable", weight=1), ref("web-canary", weight=0)]}
    ]
    cfg = config({"tcpRoute": "t"})
    after = run(cfg, live(tcp), state(weight=25))
    assert weights_of(rules_of(after, "t", "TCPRoute")[0]) == {"web-stable": 75, "web-canary": 25}
    with pytest.raises(UnsupportedError, match="accepts managed rules"):
        plan(cfg, live(tcp), state(headerRoutes=[HEADER]))


def test_replace_prefix_rewrite_splits_into_one_rule_per_match_and_refuses_narrowing() -> None:
    src = rule(
        "/api",
        filters=[
            {
                "type": "URLRewrite",
                "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
            }
        ],
    )
    hdr = {
        "name": "h",
        "matches": [
            {"headers": [{"name": "a", "exact": "1"}]},
            {"headers": [{"name": "b", "exact": "2"}]},
        ],
    }
    after = run(config(), live(route(src)), state(headerRoutes=[hdr]))
    managed = rules_of(after)[:2]
    assert [r["name"] for r in managed] == ["h", "h.2"]
    assert all(
        len(r["matches"]) == 1 and r["matches"][0]["path"]["type"] == "PathPrefix" for r in managed
    )
    narrowing = {"name": "n", "matches": [{"path": {"prefix": "/api/v2"}}]}
    with pytest.raises(UnsupportedError, match="ReplacePrefixMatch"):
        plan(config(), live(route(src)), state(headerRoutes=[narrowing]))


def test_additional_destination_the_user_already_references_is_refused() -> None:
    r = rule()
    r["backendRefs"].append(ref("web-exp", weight=3))
    with pytest.raises(PlanError, match="only weights backendRefs it added"):
        plan(
            config(),
            live(route(r)),
            state(weight=10, additionalDestinations=[{"service": "web-exp", "weight": 5}]),
        )


def test_additional_destination_comes_and_goes_through_the_ledger() -> None:
    cfg = config()
    with_exp = run(
        cfg,
        live(route(rule())),
        state(weight=10, additionalDestinations=[{"service": "web-exp", "weight": 5}]),
    )
    assert weights_of(rules_of(with_exp)[0]) == {"web-stable": 85, "web-canary": 10, "web-exp": 5}
    assert '"backends":["web-exp"]' in obj_of(with_exp)["metadata"]["annotations"][LEDGER]
    without = run(cfg, with_exp, state(weight=10))
    assert weights_of(rules_of(without)[0]) == {"web-stable": 90, "web-canary": 10}
    assert '"backends"' not in obj_of(without)["metadata"]["annotations"][LEDGER]
    cleaned = run(cfg, without, Cleanup())
    assert LEDGER not in obj_of(cleaned)["metadata"].get("annotations", {})


def test_fraction_that_needs_more_than_int32_is_rounded_with_a_note() -> None:
    mirror = {"name": "m", "percentage": 12.3456789012345, "matches": [{"method": "GET"}]}
    p = plan(config(), live(route(rule())), state(mirrorRoutes=[mirror]))
    assert any("is expressed as" in n.message for n in p.notes)
    frac = p.operations[0].edits[0]["value"]["filters"][-1]["requestMirror"]["fraction"]  # type: ignore[union-attr]
    assert frac["denominator"] <= 2**31 - 1 and frac["numerator"] <= frac["denominator"]


# -- identity and idempotence ---------------------------------------------------------------------


def test_server_defaults_do_not_read_as_drift() -> None:
    """The API server adds CRD defaults to what we wrote; that must not trigger a rewrite."""
    cors = {"type": "CORS", "cors": {"allowOrigins": ["https://a.example"]}}
    cfg = config()
    after = run(cfg, live(route(rule(filters=[cors]))), state(headerRoutes=[HEADER]))
    defaulted = copy.deepcopy(obj_of(after))
    defaulted["spec"]["rules"][0]["filters"][0]["cors"]["maxAge"] = 5
    assert plan(cfg, live(defaulted), state(headerRoutes=[HEADER])).empty


def test_fingerprint_ignores_the_rule_name() -> None:
    body = rule()
    assert fingerprint(HTTP, body) == fingerprint(HTTP, {"name": "x", **body})
    assert fingerprint(HTTP, body) != fingerprint(HTTP, rule(canary=1))


def test_crd_upgrade_adds_names_to_unnamed_managed_rules_in_place() -> None:
    cfg = config()
    old = run(cfg, live(route(rule())), state(headerRoutes=[HEADER]), facts("v1.2.1"))
    assert "name" not in rules_of(old)[0]
    p = plan(cfg, old, state(headerRoutes=[HEADER]), facts("v1.4.0"))
    ops = [op for op in p.operations[0].ops if op["op"] != "test"]
    assert [op["op"] for op in ops] == ["replace"] and ops[0]["value"]["name"] == "canary-header"


def test_managed_rule_deleted_by_someone_is_restored_and_reported() -> None:
    cfg = config()
    after = run(cfg, live(route(rule())), state(headerRoutes=[HEADER]))
    broken = copy.deepcopy(obj_of(after))
    del broken["spec"]["rules"][0]
    obs = PLUGIN.observe(cfg, live(broken), NO_FACTS)
    assert obs.header_routes == () and any("canary-header" in p for p in obs.problems)
    restored = run(cfg, live(broken), state(headerRoutes=[HEADER]))
    assert rules_of(restored) == rules_of(after)


def test_managed_order_follows_managed_routes_config() -> None:
    cfg = config(managedRoutes=[{"name": "b"}, {"name": "a"}])
    routes = [
        {"name": n, "matches": [{"headers": [{"name": "X-" + n, "exact": "1"}]}]}
        for n in ("a", "b")
    ]
    after = run(cfg, live(route(rule())), state(headerRoutes=routes))
    assert [r.get("name") for r in rules_of(after)] == ["b", "a", None]


def test_patch_guards_identity_before_each_edit() -> None:
    p = plan(config(), live(route(rule())), state(weight=10))
    ops = p.operations[0].ops
    assert ops[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "1"}
    assert ops[1] == {
        "op": "test",
        "path": "/spec/rules/0/backendRefs/0/name",
        "value": "web-stable",
    }
    assert ops[2] == {"op": "replace", "path": "/spec/rules/0/backendRefs/0/weight", "value": 90}


def test_cleanup_restores_stable_keeping_the_rules_total() -> None:
    cfg = config()
    after = run(cfg, live(route(rule(stable=300, canary=700))), Cleanup())
    assert weights_of(rules_of(after)[0]) == {"web-stable": 1000, "web-canary": 0}
    zero = run(cfg, live(route(rule(stable=0, canary=0))), Cleanup())
    assert weights_of(rules_of(zero)[0]) == {"web-stable": 1, "web-canary": 0}


# -- observe --------------------------------------------------------------------------------------


def _status(generation: int, **conds: str) -> dict[str, Any]:
    return {
        "parents": [
            {
                "parentRef": {
                    "group": "gateway.networking.k8s.io",
                    "kind": "Gateway",
                    "name": "gw",
                },
                "controllerName": "example.com/gw",
                "conditions": [
                    {"type": t, "status": s, "reason": t, "observedGeneration": generation}
                    for t, s in conds.items()
                ],
            }
        ]
    }


@pytest.mark.parametrize(
    ("status", "ready"),
    [
        (_status(1, Accepted="True", ResolvedRefs="True"), True),
        (_status(0, Accepted="True", ResolvedRefs="True"), False),
        (_status(1, Accepted="True", ResolvedRefs="False"), False),
        (_status(1, Accepted="True"), False),
        (_status(1, Accepted="True", ResolvedRefs="True", PartiallyInvalid="True"), False),
        ({"parents": []}, False),
        (None, False),
    ],
)
def test_readiness_from_parent_conditions(status: dict[str, Any] | None, ready: bool) -> None:
    obj = route(rule())
    if status is not None:
        obj["status"] = status
    assert PLUGIN.observe(config(), live(obj), NO_FACTS).ready is ready


def test_gamma_service_parent_matches_its_status_entry() -> None:
    obj = route(rule())
    obj["spec"]["parentRefs"] = [{"group": "", "kind": "Service", "name": "web", "port": 80}]
    obj["status"] = {
        "parents": [
            {
                "parentRef": {"group": "core", "kind": "Service", "name": "web", "port": 80},
                "controllerName": "linkerd.io/policy-controller",
                "conditions": [
                    {"type": t, "status": "True", "observedGeneration": 1}
                    for t in ("Accepted", "ResolvedRefs")
                ],
            }
        ]
    }
    assert PLUGIN.observe(config(), live(obj), NO_FACTS).ready is True


def test_observe_reports_weights_per_rule_and_managed_routes() -> None:
    cfg = config()
    mirror = {"name": "m", "percentage": 50, "matches": [{"method": "GET"}]}
    after = run(
        cfg,
        live(route(rule("/api"), rule("/"))),
        state(weight=30, headerRoutes=[HEADER], mirrorRoutes=[mirror]),
    )
    obs = PLUGIN.observe(cfg, after, NO_FACTS)
    assert obs.header_routes == ("canary-header",)
    assert obs.mirror_routes == {"m": 50.0}
    assert {(w.stable, w.canary) for w in obs.weights} == {(70, 30)}
    assert any("rule m" in w.location for w in obs.weights), "mirror rules carry weights too"
    assert obs.problems == ()


def test_cleanup_keeping_weights_never_leaves_an_all_zero_list() -> None:
    cfg = config()
    full_exp = state(
        weight=0, total=100, additionalDestinations=[{"service": "web-exp", "weight": 100}]
    )
    after = run(cfg, live(route(rule())), full_exp)
    assert weights_of(rules_of(after)[0]) == {"web-stable": 0, "web-canary": 0, "web-exp": 100}
    p = plan(cfg, after, Cleanup(restoreStable=False))
    assert any("both at 0" in n.message for n in p.notes)
    cleaned = run(cfg, after, Cleanup(restoreStable=False))
    assert weights_of(rules_of(cleaned)[0]) == {"web-stable": 100, "web-canary": 0}
