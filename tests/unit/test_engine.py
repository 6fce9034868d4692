from __future__ import annotations

from typing import Any

import pytest

from routers.contract import Capabilities, ClusterFacts, MatchLimits, MirrorSupport
from routers.engine import (
    bind,
    check_capabilities,
    facts_from_manifests,
    gather,
    plan_all,
    plan_offline,
)
from routers.errors import ConfigError, PluginError, UnsupportedError
from routers.io import load_documents, load_one
from routers.model import Cleanup, MatchType, RoutingConfig, TrafficState
from routers.planning.objects import LiveObjects, ObjectRef
from routers.planning.plan import Create, Patch, Plan
from routers.registry import Registry
from tests.conftest import THIRDPARTY

EX = THIRDPARTY / "example"
EXACT: frozenset[MatchType] = frozenset({"exact"})
PREFIX_PATH = MatchLimits(path_match=frozenset({"prefix"}))


def config() -> RoutingConfig:
    return RoutingConfig.from_document(load_one(str(EX / "routing.yaml")))


def live() -> list[dict[str, Any]]:
    return load_documents([str(EX / "live.yaml")])


def test_offline_plan_patches_with_guard_and_keeps_foreign_keys(cm_registry: Registry) -> None:
    result = plan_offline(config(), TrafficState(weight=20), live(), registry=cm_registry)
    (plan,) = result.plans
    (op,) = plan.operations
    assert isinstance(op, Patch)
    assert op.ops[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "41"}
    after = next(o for o in result.after.values() if o)
    assert after["data"]["other-setting"] == "keep me"
    assert after["data"]["weights.json"] == '{"web-canary": 20, "web-stable": 80}'
    again = plan_offline(config(), TrafficState(weight=20), [after], registry=cm_registry)
    assert all(p.empty for p in again.plans)


def test_missing_object_is_created_with_owner_marker_then_deleted_on_cleanup(
    cm_registry: Registry,
) -> None:
    result = plan_offline(config(), TrafficState(weight=5), [], registry=cm_registry)
    (op,) = result.plans[0].operations
    assert isinstance(op, Create)
    created = op.body
    assert created["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "canary-routers"
    created = {**created, "metadata": {**created["metadata"], "uid": "u1", "resourceVersion": "1"}}
    cleanup = plan_offline(config(), Cleanup(), [created], registry=cm_registry)
    assert [o.verb for o in cleanup.plans[0]] == ["delete"]
    assert cleanup.plans[0].operations[0].uid == "u1"  # type: ignore[union-attr]


def test_unknown_section_is_a_config_error_naming_it(cm_registry: Registry) -> None:
    c = RoutingConfig.from_document(
        {"stableService": "a", "canaryService": "b", "alb": {"ingress": "x"}}
    )
    with pytest.raises(
        ConfigError,
        match=r"alb: no installed plugin handles this section \(installed plugins: configmap\)",
    ):
        bind(c, cm_registry)


def test_plugin_section_errors_are_rooted_at_the_section(cm_registry: Registry) -> None:
    c = RoutingConfig.from_document(
        {"stableService": "a", "canaryService": "b", "plugins": {"x/configmap": {"cm": 1}}}
    )
    with pytest.raises(ConfigError) as info:
        bind(c, cm_registry)
    assert {p.path for p in info.value.problems} == {
        "plugins.x/configmap.cm",
        "plugins.x/configmap.configMap",
    }


def test_no_sections() -> None:
    with pytest.raises(ConfigError, match="no target configured"):
        bind(
            RoutingConfig.from_document({"stableService": "a", "canaryService": "b"}),
            Registry(list),
        )


def test_capabilities_refused_before_any_plan(cm_registry: Registry) -> None:
    state = TrafficState.parse(
        {"weight": 5, "headerRoutes": [{"name": "h", "matches": [{"method": "GET"}]}]}
    )
    with pytest.raises(
        UnsupportedError,
        match="configmap: setHeaderRoute 'h' is not supported: header-based routing",
    ):
        plan_offline(config(), state, live(), registry=cm_registry)


class _Binding:
    def __init__(self, caps: Capabilities) -> None:
        self.name = "fake"
        self.config = None
        outer = caps

        class P:
            name = "fake"

            def capabilities(self, config: Any = None, facts: Any = None) -> Capabilities:
                return outer

        self.plugin = P()


@pytest.mark.parametrize(
    ("caps", "state", "message"),
    [
        (
            Capabilities(mirror=MirrorSupport.FULL_ONLY, header_limits=PREFIX_PATH),
            {
                "mirrorRoutes": [
                    {"name": "m", "matches": [{"path": {"prefix": "/a"}}], "percentage": 50}
                ]
            },
            "only 100% mirroring",
        ),
        (
            Capabilities(
                mirror=MirrorSupport.PERCENT, header_limits=MatchLimits(method_match=True)
            ),
            {"mirrorRoutes": [{"name": "m", "matches": [{"method": "GET"}], "percentage": 0.5}]},
            "whole percentages",
        ),
        (
            Capabilities(
                header_routes=True, header_limits=MatchLimits(EXACT, max_headers_per_match=1)
            ),
            {
                "headerRoutes": [
                    {
                        "name": "h",
                        "matches": [
                            {"headers": [{"name": "a", "exact": "1"}, {"name": "b", "exact": "1"}]}
                        ],
                    }
                ]
            },
            "at most 1 header condition",
        ),
        (
            Capabilities(header_routes=True, header_limits=MatchLimits(EXACT)),
            {
                "headerRoutes": [
                    {"name": "h", "matches": [{"headers": [{"name": "a", "regex": "x.*"}]}]}
                ]
            },
            "header regex matches",
        ),
        (
            Capabilities(header_routes=True, header_limits=MatchLimits(EXACT)),
            {
                "headerRoutes": [
                    {
                        "name": "h",
                        "matches": [{"headers": [{"name": "a", "exact": "1"}], "method": "GET"}],
                    }
                ]
            },
            "method matches",
        ),
        (
            Capabilities(header_routes=True, header_limits=MatchLimits(EXACT), max_routes=1),
            {
                "headerRoutes": [
                    {"name": "h", "matches": [{"headers": [{"name": "a", "exact": "1"}]}]},
                    {"name": "i", "matches": [{"headers": [{"name": "a", "exact": "2"}]}]},
                ]
            },
            "at most 1 managed route",
        ),
        (
            Capabilities(
                header_routes=True,
                header_limits=MatchLimits(EXACT),
                header_routes_with_weight=False,
            ),
            {
                "weight": 10,
                "headerRoutes": [
                    {"name": "h", "matches": [{"headers": [{"name": "a", "exact": "1"}]}]}
                ],
            },
            "only be combined with weight 0",
        ),
        (
            Capabilities(
                mirror=MirrorSupport.FULL_ONLY,
                mirror_limits=PREFIX_PATH,
            ),
            {"mirrorRoutes": [{"name": "m", "matches": [{"method": "GET"}], "percentage": 100}]},
            "method matches",
        ),
        (
            Capabilities(additional_destinations=False),
            {"additionalDestinations": [{"service": "x", "weight": 1}]},
            "additional",
        ),
    ],
)
def test_capability_checks(caps: Capabilities, state: dict[str, Any], message: str) -> None:
    with pytest.raises(UnsupportedError, match=message):
        check_capabilities(_Binding(caps), TrafficState.parse(state), ClusterFacts())  # type: ignore[arg-type]


def test_cleanup_is_always_allowed() -> None:
    check_capabilities(_Binding(Capabilities(weight=False)), Cleanup(), ClusterFacts())  # type: ignore[arg-type]


def test_gather_follows_targets_discovered_from_read_objects() -> None:
    class Chain:
        name = "chain"

        def targets(self, config: Any, live: LiveObjects) -> list[ObjectRef]:
            refs = [ObjectRef("", "ConfigMap", "ns", "root")]
            root = live.get(refs[0])
            if root is not None:
                refs.append(ObjectRef("", "ConfigMap", "ns", root["data"]["next"]))
            return refs

    objects = {
        "root": {"kind": "ConfigMap", "data": {"next": "leaf"}},
        "leaf": {"kind": "ConfigMap", "data": {}},
    }
    reads: list[str] = []

    def read(ref: ObjectRef) -> dict[str, Any] | None:
        reads.append(ref.name)
        return objects.get(ref.name)

    class B:
        plugin = Chain()
        config = None

    live = gather([B()], read)  # type: ignore[list-item]
    assert reads == ["root", "leaf"]
    assert len(live) == 2


def test_plans_are_held_to_the_contract(cm_registry: Registry) -> None:
    bindings = bind(config(), cm_registry)
    live_objs = LiveObjects.from_manifests(live(), "shop")
    ref = next(iter(live_objs))

    class Unguarded:
        name = "configmap"

        def capabilities(self, config: Any = None, facts: Any = None) -> Capabilities:
            return Capabilities()

        def plan(self, *a: Any) -> Plan:
            return Plan(
                "configmap", (Patch(ref, ({"op": "replace", "path": "/data", "value": {}},), "x"),)
            )

    class B:
        plugin = Unguarded()
        config = bindings[0].config
        name = "configmap"

    with pytest.raises(PluginError, match="lacks the resourceVersion guard"):
        plan_all([B()], live_objs, TrafficState(), ClusterFacts())  # type: ignore[list-item]


def test_facts_from_crd_manifests() -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": "httproutes.gateway.networking.k8s.io",
            "annotations": {
                "gateway.networking.k8s.io/bundle-version": "v1.2.1",
                "gateway.networking.k8s.io/channel": "standard",
            },
        },
        "spec": {
            "group": "gateway.networking.k8s.io",
            "versions": [
                {"name": "v1beta1", "served": True, "storage": False},
                {"name": "v1", "served": True, "storage": True},
            ],
        },
    }
    facts = facts_from_manifests([crd])
    assert facts.served_versions("gateway.networking.k8s.io") == ("v1", "v1beta1")
    got = facts.crd("httproutes.gateway.networking.k8s.io")
    assert got is not None
    assert (got.bundle_version, got.channel) == ("v1.2.1", "standard")


def test_mirror_round_up_is_accepted_only_when_declared() -> None:
    state = TrafficState.parse(
        {"mirrorRoutes": [{"name": "m", "matches": [{"path": {"prefix": "/"}}], "percentage": 5}]}
    )
    caps = Capabilities(mirror=MirrorSupport.FULL_ONLY, header_limits=PREFIX_PATH)
    with pytest.raises(UnsupportedError, match="only 100% mirroring"):
        check_capabilities(_Binding(caps), state, ClusterFacts())  # type: ignore[arg-type]
    rounded = Capabilities(
        mirror=MirrorSupport.FULL_ONLY, header_limits=PREFIX_PATH, mirror_round_up=True
    )
    check_capabilities(_Binding(rounded), state, ClusterFacts())  # type: ignore[arg-type]
