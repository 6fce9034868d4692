"""Unit tests of the SMI translation: config, versions, weights, header routes, cleanup, observe."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest
from routers_smi.quantity import as_integers, parse_weight
from routers_smi.routegroup import build_entries, entry_route, group_ledger, patch_group
from routers_smi.versions import headers_shape, headers_shape_from_schema, resolve
from smi_helpers import (
    CANARY,
    CLEANUP,
    HEADER,
    KEEP,
    LINKERD,
    NO_FACTS,
    NS,
    OWNER,
    PLUGIN,
    SDK,
    STABLE,
    config,
    creates,
    deletes,
    facts,
    group_of,
    kinds,
    ledger_of,
    live,
    patches,
    plan,
    route_group,
    routing,
    run,
    split_of,
    state,
    traffic_split,
    weights_of,
)

from routers.contract import MirrorSupport
from routers.engine import bind, plan_all, verify
from routers.errors import (
    ConfigError,
    PlanError,
    TargetNotFoundError,
    UnsupportedError,
    WeightFitError,
)
from routers.model import HeaderRoute, RoutingConfig
from routers.planning.objects import ObjectRef
from routers.planning.ownership import LEDGER, is_created_by_us
from routers.testing import rollout_document

# -- config ----------------------------------------------------------------------------------


def _bind_error(smi: dict[str, Any]) -> ConfigError:
    doc = {"stableService": STABLE, "canaryService": CANARY, "smi": smi}
    with pytest.raises(ConfigError) as exc:
        bind(RoutingConfig.from_document(doc))
    return exc.value


def test_config_requires_traffic_split_name() -> None:
    err = _bind_error({})
    assert [p.path for p in err.problems] == ["smi.trafficSplitName"]
    assert "Rollout" in str(err)


def test_config_names_unknown_and_bad_fields() -> None:
    err = _bind_error({"trafficSplitName": "web", "weights": 1, "apiVersion": "v2"})
    paths = {p.path: p.message for p in err.problems}
    assert paths["smi.weights"] == "unknown field"
    assert "v1alpha4" in paths["smi.apiVersion"]


def test_config_rejects_wrong_types_and_names() -> None:
    err = _bind_error(
        {"trafficSplitName": "Web_1", "acceptUnmatchedToRoot": "yes", "httpRouteGroupHeaders": "x"}
    )
    assert {p.path for p in err.problems} == {
        "smi.trafficSplitName",
        "smi.acceptUnmatchedToRoot",
        "smi.httpRouteGroupHeaders",
    }


def test_config_root_must_not_be_the_canary() -> None:
    err = _bind_error({"trafficSplitName": "web", "rootService": CANARY})
    assert [p.path for p in err.problems] == ["smi.rootService"]


def test_config_derived_group_name_length_is_checked() -> None:
    long = "a" * 250
    err = _bind_error({"trafficSplitName": long})
    assert [p.path for p in err.problems] == ["smi.trafficSplitName"]
    assert "httpRouteGroupName" in str(err)
    ok = config(trafficSplitName=long, httpRouteGroupName="g")
    assert ok.group_name == "g"


def test_config_defaults_and_long_api_version() -> None:
    cfg = config(apiVersion="split.smi-spec.io/v1alpha3")
    assert cfg.pinned == "v1alpha3"
    assert (cfg.root, cfg.group_name, cfg.namespace) == (STABLE, "web-routes", NS)
    assert config(rootService="web").root == "web"


def test_config_from_an_argo_rollout() -> None:
    rollout = rollout_document(
        {
            "stableService": STABLE,
            "canaryService": CANARY,
            "trafficRouting": {"smi": {"rootService": "web", "trafficSplitName": "web"}},
        },
        namespace=NS,
    )
    (binding,) = bind(RoutingConfig.from_document(rollout))
    assert (binding.config.root, binding.config.split_name) == ("web", "web")


def test_traffic_split_name_defaults_to_the_rollout_name_as_in_argo() -> None:
    """Issue 12: a whole Rollout supplies its own identity (Argo names the split after it)."""
    rollout = rollout_document(
        {"stableService": STABLE, "canaryService": CANARY, "trafficRouting": {"smi": {}}},
        name="checkout",
        namespace="shop",
    )
    (binding,) = bind(RoutingConfig.from_document(rollout))
    assert binding.config.split_name == "checkout"
    assert binding.config.split_ref().namespace == "shop"
    assert binding.config.group_name == "checkout-routes"


# -- versions --------------------------------------------------------------------------------


def test_version_pinned_wins_over_served() -> None:
    assert resolve(config(apiVersion="v1alpha1"), LINKERD).version == "v1alpha1"


@pytest.mark.parametrize(
    ("served", "want"),
    [
        (("v1alpha4",), "v1alpha4"),
        (("v1alpha2", "v1alpha1"), "v1alpha2"),
        (("v1alpha1",), "v1alpha1"),
        (("v1alpha1", "v1alpha3", "v1alpha2"), "v1alpha3"),
    ],
)
def test_version_most_capable_served(served: tuple[str, ...], want: str) -> None:
    r = resolve(config(), facts(served))
    assert (r.version, r.assumed) == (want, False)


def test_version_offline_default_is_noted() -> None:
    r = resolve(config(), NO_FACTS)
    assert (r.version, r.assumed) == ("v1alpha2", True)
    p = plan(config(), live(), state(weight=5), NO_FACTS)
    assert any("assumed split.smi-spec.io/v1alpha2" in n.message for n in p.notes)
    assert creates(p)[0].body["apiVersion"] == "split.smi-spec.io/v1alpha2"


def test_version_errors_in_cluster() -> None:
    with pytest.raises(TargetNotFoundError, match="TrafficSplit CRD"):
        plan(config(), live(), state(weight=5), facts())
    with pytest.raises(PlanError, match=r"apiVersion split.smi-spec.io/v1alpha3 is not served"):
        plan(config(apiVersion="v1alpha3"), live(), state(weight=5), SDK)
    with pytest.raises(PlanError, match="v1beta9"):
        plan(config(), live(), state(weight=5), facts(("v1beta9",)))


# -- capabilities ----------------------------------------------------------------------------


def test_capabilities_envelope_and_no_mirror() -> None:
    caps = PLUGIN.capabilities()
    assert caps.header_routes and caps.header_limits.method_match
    assert caps.mirror is MirrorSupport.NONE
    assert not caps.header_limits.query_match
    assert caps.max_total is None


def test_capabilities_follow_version_and_root() -> None:
    caps = PLUGIN.capabilities(config(), LINKERD)
    assert not caps.header_routes
    assert any("gatewayapi" in n for n in caps.notes)
    assert PLUGIN.capabilities(config(), SDK).header_routes
    assert not PLUGIN.capabilities(config(rootService="web"), SDK).header_routes
    assert PLUGIN.capabilities(
        config(rootService="web", acceptUnmatchedToRoot=True), SDK
    ).header_routes


def test_permissions_follow_pinned_version() -> None:
    assert {p.resource for p in PLUGIN.permissions(config())} == {
        "trafficsplits",
        "httproutegroups",
    }
    assert [p.resource for p in PLUGIN.permissions(config(apiVersion="v1alpha2"))] == [
        "trafficsplits"
    ]


def test_targets_read_route_groups_only_where_they_can_exist() -> None:
    # Unpinned and no split yet: a leftover group of ours is looked for (an unserved API reads
    # as absent), so a first header-route plan never collides with it.
    assert [(r.kind, r.name) for r in PLUGIN.targets(config(), live())] == [
        ("TrafficSplit", "web"),
        ("HTTPRouteGroup", "web-routes"),
    ]
    assert [r.kind for r in PLUGIN.targets(config(apiVersion="v1alpha2"), live())] == [
        "TrafficSplit"
    ]
    pinned = PLUGIN.targets(config(apiVersion="v1alpha4"), live())
    assert [(r.kind, r.name, r.version) for r in pinned] == [
        ("TrafficSplit", "web", "v1alpha4"),
        ("HTTPRouteGroup", "web-routes", "v1alpha4"),
    ]
    ts = traffic_split(version="v1alpha4", book={"matches": ["old-routes"]})
    followed = PLUGIN.targets(config(), live(ts))
    assert [r.name for r in followed] == ["web", "web-routes", "old-routes"]
    assert [r.kind for r in PLUGIN.targets(config(), live(traffic_split(version="v1alpha2")))] == [
        "TrafficSplit"
    ]


# -- weights -----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1alpha1", "v1alpha2", "v1alpha3", "v1alpha4"])
def test_create_writes_plain_integers_in_every_version(version: str) -> None:
    p, after = run(config(apiVersion=version), live(), state(weight=3, total=7), NO_FACTS)
    (create,) = creates(p)
    assert create.body["apiVersion"] == f"split.smi-spec.io/{version}"
    backends = split_of(after)["spec"]["backends"]
    assert backends == [{"service": STABLE, "weight": 4}, {"service": CANARY, "weight": 3}]
    assert all(type(b["weight"]) is int for b in backends)
    assert is_created_by_us(split_of(after), "smi")
    assert "matches" not in split_of(after)["spec"]


@pytest.mark.parametrize(("weight", "total"), [(0, 100), (100, 100), (1, 1_000_000)])
def test_edge_weights(weight: int, total: int) -> None:
    _, after = run(config(), live(traffic_split()), state(weight=weight, total=total))
    assert weights_of(split_of(after)) == {STABLE: total - weight, CANARY: weight}


def test_every_weight_edit_is_guarded_by_its_service() -> None:
    ts = traffic_split(("other", 5), (CANARY, 10), (STABLE, 85))
    p, _ = run(config(), live(ts), state(weight=40))
    (patch,) = patches(p)
    assert patch.ops[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "41"}
    edited = []
    for i, op in enumerate(patch.ops):
        if op["op"] == "replace" and op["path"].endswith("/weight"):
            index = op["path"].split("/")[3]
            edited.append(index)
            assert patch.ops[i - 1] == {
                "op": "test",
                "path": f"/spec/backends/{index}/service",
                "value": {"1": CANARY, "2": STABLE}[index],
            }
    assert sorted(edited) == ["1", "2"]
    assert not any(op["path"].startswith("/spec/backends/0") for op in patch.ops)


def test_missing_backends_are_appended_and_recorded() -> None:
    ts = traffic_split((STABLE, 100))
    _p, after = run(config(), live(ts), state(weight=20))
    obj = split_of(after)
    assert obj["spec"]["backends"] == [
        {"service": STABLE, "weight": 80},
        {"service": CANARY, "weight": 20},
    ]
    assert ledger_of(obj) == {"backends": [CANARY]}
    assert not is_created_by_us(obj, "smi")
    _, cleaned = run(config(), after, CLEANUP)
    assert split_of(cleaned)["spec"]["backends"] == [{"service": STABLE, "weight": 100}]
    assert LEDGER not in split_of(cleaned)["metadata"].get("annotations", {})


def test_unknown_fields_survive() -> None:
    ts = traffic_split((STABLE, 100), (CANARY, 0), xSpec={"keep": 1})
    ts["spec"]["backends"][0]["xEntry"] = True
    _, after = run(config(), live(ts), state(weight=10))
    obj = split_of(after)
    assert obj["spec"]["xSpec"] == {"keep": 1}
    assert obj["spec"]["backends"][0] == {"service": STABLE, "weight": 90, "xEntry": True}


def test_duplicate_backend_is_a_plan_error() -> None:
    ts = traffic_split((STABLE, 50), (CANARY, 0), (STABLE, 50))
    with pytest.raises(PlanError, match=r"'web-stable' 2 times \(indexes 0, 2\)") as exc:
        plan(config(), live(ts), state(weight=10))
    assert exc.value.obj == "TrafficSplit.split.smi-spec.io shop/web"


def test_malformed_backends_are_a_plan_error() -> None:
    ts = traffic_split()
    ts["spec"]["backends"] = {"web-stable": 100}
    with pytest.raises(PlanError, match="spec.backends is not a list"):
        plan(config(), live(ts), state(weight=10))


def test_root_of_a_foreign_split_is_never_retargeted() -> None:
    with pytest.raises(PlanError, match=r"routes Service 'web'.*rootService is 'web-stable'"):
        plan(config(), live(traffic_split(root="web")), state(weight=10))
    owned = traffic_split(root="web", owned=True)
    _p, after = run(config(), live(owned), state(weight=10))
    assert split_of(after)["spec"]["service"] == STABLE


def test_additional_destination_cannot_be_stable_or_canary() -> None:
    bad = state(weight=10, additionalDestinations=[{"service": STABLE, "weight": 5}])
    with pytest.raises(ConfigError) as exc:
        plan(config(), live(), bad)
    assert exc.value.problems[0].path == "additionalDestinations[0].service"


def test_foreign_backend_keeps_its_share_and_is_noted() -> None:
    ts = traffic_split((STABLE, 90), (CANARY, 10), ("legacy", 5))
    p, after = run(config(), live(ts), state(weight=20))
    assert weights_of(split_of(after)) == {STABLE: 79, CANARY: 21, "legacy": 5}
    obs = PLUGIN.observe(config(), after, SDK)
    assert obs.weights[0].foreign == 5
    assert verify(bind(routing()), [obs], state(weight=20), SDK).ok
    assert not verify(bind(routing()), [obs], state(weight=21), SDK).ok
    assert any(
        "legacy" in n.message and "keep 4.762% of the traffic" in n.message for n in p.notes
    ), [n.message for n in p.notes]


def test_a_weight_that_cannot_fit_beside_a_foreign_backend_names_both_numbers() -> None:
    ts = traffic_split((STABLE, 90), (CANARY, 10), ("legacy", 10))
    with pytest.raises(WeightFitError) as info:
        plan(config(), live(ts), state(weight=95))
    assert "95" in str(info.value) and "9.091%" in str(info.value)
    assert "TrafficSplit" in str(info.value)


def test_cleanup_gives_a_rescaled_foreign_backend_its_weight_back() -> None:
    ts = traffic_split((STABLE, 100), ("legacy", 5))
    _, after = run(config(), live(ts), state(weight=30))
    assert weights_of(split_of(after)) == {STABLE: 137, "legacy": 10, CANARY: 63}
    _, cleaned = run(config(), after, CLEANUP)
    assert weights_of(split_of(cleaned)) == {STABLE: 100, "legacy": 5}


# -- header routes -------------------------------------------------------------------------------


def test_header_route_create_orders_group_before_split() -> None:
    p, after = run(config(), live(), state(headerRoutes=[HEADER]))
    assert kinds(p) == [("create", "HTTPRouteGroup"), ("create", "TrafficSplit")]
    ts = split_of(after)
    assert ts["spec"]["matches"] == [{"kind": "HTTPRouteGroup", "name": "web-routes"}]
    assert weights_of(ts) == {STABLE: 0, CANARY: 100}
    group = group_of(after)
    assert group is not None and is_created_by_us(group, "smi")
    assert group["spec"]["matches"] == [
        {"name": "canary-header-0", "headers": {"x-canary": "^on$"}}
    ]


def test_header_route_removal_patches_split_before_deleting_group() -> None:
    _, with_route = run(config(), live(traffic_split()), state(headerRoutes=[HEADER]))
    p, after = run(config(), with_route, state(weight=10))
    assert kinds(p) == [("patch", "TrafficSplit"), ("delete", "HTTPRouteGroup")]
    (delete,) = deletes(p)
    assert (delete.uid, delete.resource_version) == (None, None)  # created in memory: no uid
    assert group_of(after) is None
    assert "matches" not in split_of(after)["spec"]
    assert weights_of(split_of(after)) == {STABLE: 90, CANARY: 10}


def test_header_route_delete_is_uid_guarded() -> None:
    ts = traffic_split(
        (STABLE, 0), (CANARY, 100), book={"matches": ["web-routes"]}, matches=["web-routes"]
    )
    group = route_group({"name": "canary-header-0", "headers": {"x-canary": "^on$"}})
    p = plan(config(), live(ts, group), state(weight=10))
    (delete,) = deletes(p)
    assert (delete.uid, delete.resource_version) == ("uid-hrg-web-routes", "42")


def test_header_route_refused_on_linkerd_versions_with_gateway_hint() -> None:
    with pytest.raises(UnsupportedError) as exc:
        plan(config(), live(), state(headerRoutes=[HEADER]), LINKERD)
    err = exc.value
    assert err.instruction == "setHeaderRoute 'canary-header'"
    assert "v1alpha2 has no spec.matches" in err.reason
    assert err.hint is not None and "gatewayapi" in err.hint


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"weight": 10}, "canary weight 10/100"),
        (
            {"additionalDestinations": [{"service": "exp", "weight": 3}]},
            "additional destinations",
        ),
    ],
)
def test_header_route_with_weight_is_refused(doc: dict[str, Any], needle: str) -> None:
    with pytest.raises(UnsupportedError) as exc:
        plan(config(), live(), state(headerRoutes=[HEADER], **doc))
    assert needle in exc.value.reason
    assert "root Service 'web-stable'" in exc.value.reason
    assert exc.value.hint is not None and "acceptUnmatchedToRoot" in exc.value.hint


def test_header_route_with_a_separate_root_is_refused_even_at_weight_0() -> None:
    with pytest.raises(UnsupportedError, match="root Service 'web' is not the stable Service"):
        plan(config(rootService="web"), live(), state(headerRoutes=[HEADER]))


def test_accept_unmatched_to_root_plans_with_a_warning() -> None:
    cfg = config(rootService="web", acceptUnmatchedToRoot=True)
    p, after = run(cfg, live(), state(weight=30, headerRoutes=[HEADER]))
    assert weights_of(split_of(after)) == {STABLE: 0, CANARY: 100}
    assert any(n.level == "warning" and "canary weight 30/100" in n.message for n in p.notes)


def test_header_route_refused_when_split_has_foreign_matches() -> None:
    ts = traffic_split(matches=["ab-test"])
    with pytest.raises(UnsupportedError, match=r"already has matches \(ab-test\)"):
        plan(config(), live(ts), state(headerRoutes=[HEADER]))
    p = plan(config(), live(ts), state(weight=10))
    assert any("apply only to the requests they match" in n.message for n in p.notes)


def test_foreign_route_group_with_our_name_is_not_taken_over() -> None:
    foreign = route_group({"name": "x", "pathRegex": "/x"}, owned=False)
    with pytest.raises(PlanError, match="httpRouteGroupName") as exc:
        plan(config(), live(traffic_split(), foreign), state(headerRoutes=[HEADER]))
    assert exc.value.obj == "HTTPRouteGroup.specs.smi-spec.io shop/web-routes"
    p, _ = run(config(), live(traffic_split(), foreign), CLEANUP)
    assert not deletes(p)


def test_route_group_version_must_be_served() -> None:
    with pytest.raises(TargetNotFoundError, match=r"specs.smi-spec.io/v1alpha3"):
        plan(
            config(apiVersion="v1alpha3"),
            live(),
            state(headerRoutes=[HEADER]),
            facts(("v1alpha3",), ("v1alpha4",)),
        )
    with pytest.raises(TargetNotFoundError, match="served: none"):
        plan(config(), live(), state(headerRoutes=[HEADER]), facts(("v1alpha4",)))


def test_mirror_is_refused_by_core_and_plugin() -> None:
    mirror = {"name": "shadow", "matches": [{"method": "GET"}]}
    r = routing()
    bindings = bind(r)
    with pytest.raises(UnsupportedError, match="mirroring is not supported"):
        plan_all(bindings, live(), state(mirrorRoutes=[mirror]), SDK, routing=r)
    with pytest.raises(UnsupportedError, match="SMI has no traffic mirroring") as exc:
        plan(config(), live(), state(mirrorRoutes=[mirror]))
    assert exc.value.instruction == "setMirrorRoute 'shadow'"


def test_entries_translate_every_condition() -> None:
    route = HeaderRoute.parse(
        {
            "name": "beta",
            "matches": [
                {
                    "headers": [
                        {"name": "X-Version", "prefix": "v1.2"},
                        {"name": "User-Agent", "regex": "Mozilla|curl"},
                    ]
                },
                {"path": {"exact": "/api/v1"}, "method": "POST"},
                {"path": {"regex": "/api/(v1|v2)/.*"}},
            ],
        }
    )
    assert build_entries([route], "map") == [
        {
            "name": "beta-0",
            "headers": {"x-version": "^v1\\.2.*", "user-agent": "^(?:Mozilla|curl)$"},
        },
        {"name": "beta-1", "pathRegex": "^/api/v1$", "methods": ["POST"]},
        {"name": "beta-2", "pathRegex": "^(?:/api/(v1|v2)/.*)$"},
    ]
    assert build_entries([route], "list")[0]["headers"] == [
        {"x-version": "^v1\\.2.*"},
        {"user-agent": "^(?:Mozilla|curl)$"},
    ]


@pytest.mark.parametrize(
    ("name", "route"),
    [("canary-beta-1", "canary-beta"), ("a-1-0", "a-1"), ("x-10", "x"), ("nope", None), (3, None)],
)
def test_entry_route(name: object, route: str | None) -> None:
    assert entry_route(name) == route


def test_route_group_patch_keeps_unknown_fields_and_guards_names() -> None:
    group = route_group(
        {"name": "canary-header-0", "headers": {"x-canary": "^old$"}, "xKeep": 1},
    )
    route = HeaderRoute.parse(HEADER)
    ref = ObjectRef("specs.smi-spec.io", "HTTPRouteGroup", NS, "web-routes", "v1alpha4")
    view = group_ledger(group, OWNER, {"web-routes"}, str(ref))
    patch = patch_group(ref, group, [route], "map", view)
    assert patch is not None
    assert patch.ops[1] == {
        "op": "test",
        "path": "/spec/matches/0/name",
        "value": "canary-header-0",
    }
    assert patch.edits == (
        {"op": "replace", "path": "/spec/matches/0/headers", "value": {"x-canary": "^on$"}},
    )
    assert patch_group(ref, group, [route], "map", view) == patch  # pure


def _group_schema(headers: dict[str, Any]) -> dict[str, Any]:
    entry = {"type": "object", "properties": {"name": {"type": "string"}, "headers": headers}}
    matches = {"type": "array", "items": entry}
    return {"properties": {"spec": {"properties": {"matches": matches}}}}


def test_headers_shape_default_config_and_schema() -> None:
    assert headers_shape(config(), "v1alpha4", SDK) == "map"
    assert headers_shape(config(httpRouteGroupHeaders="list"), "v1alpha4", SDK) == "list"
    # smi-sdk-go v0.5.0 crds/specs.yaml declares an array of one-key maps.
    assert headers_shape_from_schema(_group_schema({"type": "array"})) == "list"
    assert headers_shape_from_schema(_group_schema({"type": "object"})) == "map"
    assert (
        headers_shape_from_schema(_group_schema({"x-kubernetes-preserve-unknown-fields": True}))
        is None
    )
    assert headers_shape_from_schema({"properties": {}}) is None


def test_managed_routes_order_entries() -> None:
    beta = {"name": "canary-beta", "matches": [{"headers": [{"name": "Cookie", "regex": ".*b.*"}]}]}
    cfg_doc = routing(managedRoutes=[{"name": "canary-beta"}, {"name": "canary-header"}])
    section = cfg_doc.section("smi")
    assert section is not None
    cfg = PLUGIN.parse_config(section.body, cfg_doc)
    _, after = run(cfg, live(), state(headerRoutes=[HEADER, beta]))
    group = group_of(after)
    assert group is not None
    assert [m["name"] for m in group["spec"]["matches"]] == ["canary-beta-0", "canary-header-0"]
    assert ledger_of(group) == {"headerRoutes": ["canary-beta", "canary-header"]}


# -- cleanup --------------------------------------------------------------------------------------


def test_cleanup_of_absent_objects_is_empty() -> None:
    assert plan(config(), live(), CLEANUP).empty


def test_cleanup_never_deletes_a_foreign_split() -> None:
    ts = traffic_split((STABLE, 70), (CANARY, 30))
    p, after = run(config(), live(ts), CLEANUP)
    assert not deletes(p)
    assert weights_of(split_of(after)) == {STABLE: 100, CANARY: 0}


def test_cleanup_keep_weights_on_foreign_split_keeps_weights() -> None:
    ts = traffic_split((STABLE, 70), (CANARY, 30), ("exp", 5), book={"backends": ["exp"]})
    p, _ = run(config(), live(ts), KEEP)
    assert p.empty


def test_cleanup_absorbs_quantities_and_avoids_all_zero() -> None:
    ts = traffic_split((STABLE, "900m"), (CANARY, "100m"), version="v1alpha1")
    _, after = run(config(), live(ts), CLEANUP)
    assert weights_of(split_of(after)) == {STABLE: 1, CANARY: 0}
    zero = traffic_split((STABLE, 0), (CANARY, 0))
    _, after = run(config(), live(zero), CLEANUP)
    assert weights_of(split_of(after)) == {STABLE: 1, CANARY: 0}


def test_cleanup_removes_stale_route_groups_from_the_ledger() -> None:
    ts = traffic_split(
        (STABLE, 0),
        (CANARY, 100),
        owned=True,
        book={"matches": ["old-routes"]},
        matches=["old-routes"],
    )
    old = route_group({"name": "canary-header-0", "headers": {"x": "^y$"}}, name="old-routes")
    objs = live(ts, old)
    p, after = run(config(), objs, state(headerRoutes=[HEADER]))
    assert kinds(p) == [
        ("create", "HTTPRouteGroup"),
        ("patch", "TrafficSplit"),
        ("delete", "HTTPRouteGroup"),
    ]
    assert deletes(p)[0].ref.name == "old-routes"
    assert split_of(after)["spec"]["matches"] == [{"kind": "HTTPRouteGroup", "name": "web-routes"}]


# -- observe ---------------------------------------------------------------------------------------


def test_observe_weights_and_quantities() -> None:
    obs = PLUGIN.observe(config(), live(traffic_split((STABLE, 90), (CANARY, 10), ("x", 5))), SDK)
    (w,) = obs.weights
    assert (w.stable, w.canary, w.additional, w.foreign) == (90, 10, (), 5)
    assert not obs.problems
    q = PLUGIN.observe(config(), live(traffic_split((STABLE, "900m"), (CANARY, "100m"))), SDK)
    assert (q.weights[0].stable, q.weights[0].canary) == (9, 1)


def test_observe_header_mode() -> None:
    _, after = run(config(), live(), state(headerRoutes=[HEADER]))
    obs = PLUGIN.observe(config(), after, SDK)
    assert obs.header_routes == ("canary-header",)
    (w,) = obs.weights
    assert (w.stable, w.canary) == (1, 0)
    assert "requests matching no header route" in w.location
    assert not obs.problems
    report = verify(bind(routing()), [obs], state(headerRoutes=[HEADER]), SDK)
    assert report.ok, report.mismatches


def test_observe_reports_what_cannot_be_verified() -> None:
    ts = traffic_split(
        (STABLE, 10),
        (CANARY, 90),
        root="web",
        book={"matches": ["web-routes"]},
        matches=["web-routes"],
    )
    obs = PLUGIN.observe(config(rootService="web"), live(ts), SDK)
    assert not obs.weights and not obs.header_routes
    text = " | ".join(obs.problems)
    assert "not all sent to canary" in text
    assert "root Service 'web' directly" in text
    assert "'web-routes', which does not exist" in text
    missing = PLUGIN.observe(config(), live(), SDK)
    assert missing.problems == ("TrafficSplit.split.smi-spec.io shop/web does not exist",)


def test_observe_foreign_matches() -> None:
    obs = PLUGIN.observe(config(), live(traffic_split(matches=["ab"])), SDK)
    assert "(requests matching ab)" in obs.weights[0].location
    assert any("go to root Service" in p for p in obs.problems)


# -- quantities ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "want"),
    [
        (7, Fraction(7)),
        (2.5, Fraction(5, 2)),
        ("1", Fraction(1)),
        ("500m", Fraction(1, 2)),
        ("1.5", Fraction(3, 2)),
        ("2k", Fraction(2000)),
        ("1Ki", Fraction(1024)),
        ("1e3", Fraction(1000)),
        ("100n", Fraction(1, 10_000_000)),
        (-1, None),
        ("-1", None),
        ("abc", None),
        ("", None),
        (True, None),
        (None, None),
        (float("nan"), None),
    ],
)
def test_parse_weight(value: object, want: Fraction | None) -> None:
    assert parse_weight(value) == want


def test_as_integers_keeps_ratios() -> None:
    assert as_integers([Fraction(9, 10), Fraction(1, 10)]) == [9, 1]
    assert as_integers([Fraction(1, 2), Fraction(1, 2), Fraction(0)]) == [1, 1, 0]
    assert as_integers([Fraction(90), Fraction(10)]) == [90, 10]
    assert as_integers([Fraction(0), Fraction(0)]) == [0, 0]
