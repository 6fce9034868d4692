"""One test per incumbent bug the issue cites (argoproj-labs/rollouts-plugin-trafficrouter-gatewayapi
as ``plugin``, linkerd/linkerd2 as ``linkerd2``)."""

from __future__ import annotations

from gatewayapi_helpers import (
    NO_FACTS,
    PLUGIN,
    config,
    live,
    obj_of,
    ref,
    route,
    rule,
    rules_of,
    run,
    state,
    weights_of,
)

from routers.model import Cleanup

HEADER = {
    "name": "canary-header",
    "matches": [{"headers": [{"name": "X-Canary", "exact": "always"}]}],
}


def test_plugin_145_203_other_backends_and_filters_survive_weights() -> None:
    source = rule(
        "/api",
        stable=93,
        filters=[
            {
                "type": "RequestHeaderModifier",
                "requestHeaderModifier": {"set": [{"name": "X-A", "value": "1"}]},
            }
        ],
        timeouts={"request": "10s"},
    )
    source["backendRefs"].append(
        ref(
            "legacy",
            weight=7,
            filters=[
                {
                    "type": "ExtensionRef",
                    "extensionRef": {"group": "x.io", "kind": "F", "name": "f"},
                }
            ],
        )
    )
    after = run(config(), live(route(source)), state(weight=30))
    (r,) = rules_of(after)
    # legacy keeps its weight and its 7% share; the canary gets 30% of all traffic (issue 12).
    assert weights_of(r) == {"web-stable": 63, "web-canary": 30, "legacy": 7}
    assert r["backendRefs"][2] == source["backendRefs"][2]
    assert r["filters"] == source["filters"]
    assert r["timeouts"] == {"request": "10s"}
    assert r["matches"] == source["matches"]


def test_plugin_207_header_route_covers_every_weighted_rule_and_keeps_its_path() -> None:
    after = run(
        config(), live(route(rule("/api"), rule("/"))), state(weight=10, headerRoutes=[HEADER])
    )
    managed = [r for r in rules_of(after) if r.get("name", "").startswith("canary-header")]
    assert [r["name"] for r in managed] == ["canary-header", "canary-header.2"]
    assert [m["path"]["value"] for r in managed for m in r["matches"]] == ["/api", "/"]
    for r in managed:
        assert r["matches"][0]["headers"] == [
            {"name": "X-Canary", "type": "Exact", "value": "always"}
        ]


def test_plugin_115_158_weight_change_never_touches_managed_rules() -> None:
    cfg = config()
    step1 = run(cfg, live(route(rule())), state(weight=20, headerRoutes=[HEADER]))
    header_rule = rules_of(step1)[0]
    step2 = run(cfg, step1, state(weight=0, headerRoutes=[HEADER]))
    assert rules_of(step2)[0] == header_rule
    assert weights_of(header_rule) == {"web-canary": 1}, (
        "a lone canary ref at weight 0 would get no traffic"
    )
    assert weights_of(rules_of(step2)[1]) == {"web-stable": 100, "web-canary": 0}


def test_plugin_237_prefix_header_is_escaped_and_anchored() -> None:
    hdr = {"name": "v", "matches": [{"headers": [{"name": "X-Version", "prefix": "v1.0"}]}]}
    after = run(config(), live(route(rule())), state(headerRoutes=[hdr]))
    value = rules_of(after)[0]["matches"][0]["headers"][0]
    assert value == {"name": "X-Version", "type": "RegularExpression", "value": r"^v1\.0.*"}
    import re2

    assert re2.search(value["value"], "v1.0.3") and not re2.search(value["value"], "v1x0")
    assert not re2.search(value["value"], "xv1.0"), (
        "unanchored regex would behave as 'contains' on Traefik"
    )


def test_plugin_217_users_own_canary_only_rule_is_never_ours() -> None:
    users = {
        "matches": [
            {
                "path": {"type": "PathPrefix", "value": "/"},
                "queryParams": [{"name": "canary", "type": "Exact", "value": "1"}],
            }
        ],
        "backendRefs": [ref("web-canary", weight=1)],
    }
    cfg = config()
    step1 = run(cfg, live(route(rule(), users)), state(weight=10, headerRoutes=[HEADER]))
    assert users in rules_of(step1)
    cleaned = run(cfg, step1, Cleanup())
    assert rules_of(cleaned) == [rule(), users], (
        "cleanup removes exactly our rule, never the user's canary-only rule"
    )
    obs = PLUGIN.observe(cfg, cleaned, NO_FACTS)
    assert obs.header_routes == ()


def test_plugin_215_second_header_route_on_same_header_keeps_the_first() -> None:
    cfg = config()
    first = {"name": "alpha", "matches": [{"headers": [{"name": "X-Group", "exact": "alpha"}]}]}
    second = {"name": "beta", "matches": [{"headers": [{"name": "X-Group", "exact": "beta"}]}]}
    step1 = run(cfg, live(route(rule())), state(headerRoutes=[first]))
    step2 = run(cfg, step1, state(headerRoutes=[first, second]))
    names = [r.get("name") for r in rules_of(step2)]
    assert names[:2] == ["alpha", "beta"]
    values = [r["matches"][0]["headers"][0]["value"] for r in rules_of(step2)[:2]]
    assert values == ["alpha", "beta"]


def test_plugin_215_217_without_rule_names_identity_is_exact_content() -> None:
    """Gateway API < v1.4 standard: no names; a user rule shaped like ours is still not ours."""
    cfg = config({"httpRoute": "web", "crdBundleVersion": "v1.2.1"})
    lookalike = {
        "matches": [
            {
                "path": {"type": "PathPrefix", "value": "/"},
                "headers": [{"name": "X-Canary", "type": "Exact", "value": "other"}],
            }
        ],
        "backendRefs": [ref("web-canary", weight=1)],
    }
    step1 = run(cfg, live(route(rule(), lookalike)), state(headerRoutes=[HEADER]))
    assert all("name" not in r for r in rules_of(step1))
    cleaned = run(cfg, step1, Cleanup())
    assert rules_of(cleaned) == [rule(), lookalike]


def test_plugin_32_mirror_with_a_percentage() -> None:
    mirror = {"name": "shadow", "percentage": 12.5, "matches": [{"method": "GET"}]}
    after = run(config(), live(route(rule())), state(weight=20, mirrorRoutes=[mirror]))
    shadow = rules_of(after)[0]
    assert shadow["filters"][-1] == {
        "type": "RequestMirror",
        "requestMirror": {
            "backendRef": {"group": "", "kind": "Service", "name": "web-canary", "port": 80},
            "fraction": {"numerator": 1, "denominator": 8},
        },
    }
    assert weights_of(shadow) == {"web-stable": 80, "web-canary": 20}
    assert PLUGIN.observe(config(), after, NO_FACTS).mirror_routes == {"shadow": 12.5}


def test_plugin_151_repeated_calls_never_duplicate_managed_rules() -> None:
    cfg = config()
    objs = live(route(rule()))
    for w in (10, 20, 20, 30):
        objs = run(cfg, objs, state(weight=w, headerRoutes=[HEADER]))
    assert [r.get("name") for r in rules_of(objs)] == ["canary-header", None]


def test_linkerd2_14964_missing_observed_generation_is_tolerated_only_on_request() -> None:
    obj = route(rule())
    obj["status"] = {
        "parents": [
            {
                "parentRef": {
                    "group": "gateway.networking.k8s.io",
                    "kind": "Gateway",
                    "name": "gw",
                },
                "controllerName": "linkerd.io/policy-controller",
                "conditions": [
                    {"type": "Accepted", "status": "True", "reason": "Accepted"},
                    {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs"},
                ],
            }
        ]
    }
    strict = PLUGIN.observe(config(), live(obj), NO_FACTS)
    assert strict.ready is False
    assert all(not c.current for c in strict.conditions)
    tolerant = PLUGIN.observe(
        config({"httpRoute": "web", "tolerateMissingObservedGeneration": True}), live(obj), NO_FACTS
    )
    assert tolerant.ready is True
    assert obj_of(live(obj))["status"] == obj["status"]
