"""The input model: every rejection names the field path; transitions re-validate."""

from __future__ import annotations

import json
from typing import Any

import pytest

from routers.errors import ConfigError
from routers.model import (
    Cleanup,
    RemoveManagedRoutes,
    RoutingConfig,
    SetHeaderRoute,
    SetMirrorRoute,
    SetWeight,
    TrafficState,
)
from routers.testing import rollout_document

HDR = {"name": "h1", "matches": [{"headers": [{"name": "X-Canary", "exact": "always"}]}]}


def reject(doc: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        TrafficState.parse(doc)
    return info.value


def paths(err: ConfigError) -> list[str]:
    return [p.path for p in err.problems]


class TestAcceptance:
    def test_weight_above_total(self) -> None:
        err = reject({"weight": 101})
        assert "weight 101 is above total 100" in str(err)

    def test_weight_above_custom_total(self) -> None:
        assert TrafficState.parse({"weight": 999, "total": 1000}).stable_weight == 1
        reject({"weight": 1001, "total": 1000})

    def test_negative_weight(self) -> None:
        assert paths(reject({"weight": -1})) == ["weight"]

    def test_duplicate_route_names_across_kinds(self) -> None:
        err = reject({"headerRoutes": [HDR], "mirrorRoutes": [{**HDR, "percentage": 5}]})
        assert "'h1' is used more than once" in str(err)

    @pytest.mark.parametrize("name", ["X Canary", "X:Canary", "X\nCanary", ":authority", ""])
    def test_bad_header_names(self, name: str) -> None:
        doc = {
            "headerRoutes": [
                {"name": "h", "matches": [{"headers": [{"name": name, "exact": "1"}]}]}
            ]
        }
        assert paths(reject(doc)) == ["headerRoutes[0].matches[0].headers[0].name"]

    @pytest.mark.parametrize("regex", ["(a", "(a)\\1", "(?=x)", "a{2,1}", "(?<!a)b"])
    def test_invalid_re2(self, regex: str) -> None:
        doc = {
            "headerRoutes": [
                {"name": "h", "matches": [{"headers": [{"name": "x", "regex": regex}]}]}
            ]
        }
        err = reject(doc)
        assert paths(err) == ["headerRoutes[0].matches[0].headers[0].regex"]
        assert "RE2" in str(err)

    def test_percentage_above_100(self) -> None:
        doc = {
            "mirrorRoutes": [{"name": "m", "matches": [{"method": "GET"}], "percentage": 100.01}]
        }
        assert paths(reject(doc)) == ["mirrorRoutes[0].percentage"]


def test_decimal_mirror_percentage_is_kept() -> None:
    s = TrafficState.parse(
        {"mirrorRoutes": [{"name": "m", "matches": [{"method": "GET"}], "percentage": 0.5}]}
    )
    assert s.mirror_routes[0].percentage == 0.5


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        ({"weight": "20"}, "weight"),
        ({"weight": 20.0}, "weight"),
        ({"total": 0}, "total"),
        ({"total": 1_000_001}, "total"),
        ({"wieght": 1}, "wieght"),
        (
            {"headerRoutes": [{"name": "Bad_Name", "matches": [{"method": "GET"}]}]},
            "headerRoutes[0].name",
        ),
        ({"headerRoutes": [{"name": "h", "matches": []}]}, "headerRoutes[0]"),
        ({"headerRoutes": [{"name": "h", "matches": [{}]}]}, "headerRoutes[0].matches[0]"),
        (
            {"headerRoutes": [{"name": "h", "matches": [{"method": "FETCH"}]}]},
            "headerRoutes[0].matches[0].method",
        ),
        (
            {"headerRoutes": [{"name": "h", "matches": [{"path": {"prefix": "api"}}]}]},
            "headerRoutes[0].matches[0].path.prefix",
        ),
        (
            {
                "headerRoutes": [
                    {
                        "name": "h",
                        "matches": [{"headers": [{"name": "a", "exact": "1", "prefix": "1"}]}],
                    }
                ]
            },
            "headerRoutes[0].matches[0].headers[0]",
        ),
        (
            {"headerRoutes": [{"name": "h", "matches": [{"headers": [{"name": "a"}]}]}]},
            "headerRoutes[0].matches[0].headers[0]",
        ),
        (
            {
                "headerRoutes": [
                    {
                        "name": "h",
                        "matches": [{"headers": [{"name": "a", "exact": "v\r\nX-Evil: 1"}]}],
                    }
                ]
            },
            "headerRoutes[0].matches[0].headers[0].exact",
        ),
        (
            {
                "headerRoutes": [
                    {
                        "name": "h",
                        "matches": [
                            {"headers": [{"name": "A", "exact": "1"}, {"name": "a", "exact": "2"}]}
                        ],
                    }
                ]
            },
            "headerRoutes[0].matches[0]",
        ),
        ({"additionalDestinations": [{"service": "exp", "weight": 60}], "weight": 50}, ""),
        (
            {"additionalDestinations": [{"service": "Exp!", "weight": 1}]},
            "additionalDestinations[0].service",
        ),
    ],
)
def test_rejections_name_their_path(doc: dict[str, object], path: str) -> None:
    assert path in paths(reject(doc))


def test_additional_destinations_take_from_stable() -> None:
    s = TrafficState.parse(
        {"weight": 20, "additionalDestinations": [{"service": "exp", "weight": 10}]}
    )
    assert (s.stable_weight, s.weight) == (70, 20)


class TestVerbs:
    def test_set_weight_revalidates(self) -> None:
        s = TrafficState(total=10)
        with pytest.raises(ConfigError, match="above total"):
            SetWeight(weight=11).apply(s)
        assert SetWeight(weight=10).apply(s).weight == 10

    def test_set_header_route_adds_replaces_in_place_and_removes(self) -> None:
        s = SetHeaderRoute.parse(HDR).apply(TrafficState())
        s = SetHeaderRoute.parse({"name": "h2", "matches": [{"method": "GET"}]}).apply(s)
        s = SetHeaderRoute.parse({"name": "h1", "matches": [{"method": "POST"}]}).apply(s)
        assert [r.name for r in s.header_routes] == ["h1", "h2"]
        assert s.header_routes[0].matches[0].method == "POST"
        s = SetHeaderRoute.parse({"name": "h1"}).apply(s)
        assert [r.name for r in s.header_routes] == ["h2"]

    def test_set_mirror_route_cannot_reuse_a_header_route_name(self) -> None:
        s = SetHeaderRoute.parse(HDR).apply(TrafficState())
        with pytest.raises(ConfigError, match="already names a header route"):
            SetMirrorRoute.parse({"name": "h1", "matches": [{"method": "GET"}]}).apply(s)

    def test_remove_managed_routes_keeps_weight(self) -> None:
        s = SetHeaderRoute.parse(HDR).apply(TrafficState(weight=30))
        s = RemoveManagedRoutes().apply(s)
        assert (s.weight, s.route_names) == (30, ())

    def test_states_are_frozen(self) -> None:
        s = TrafficState()
        with pytest.raises(Exception, match="frozen"):
            s.weight = 3  # type: ignore[misc]


class TestRoutingConfig:
    def test_argo_traffic_routing_block_as_is(self) -> None:
        c = RoutingConfig.from_document(
            {
                "stableService": "web-stable",
                "canaryService": "web-canary",
                "trafficRouting": {
                    "managedRoutes": [{"name": "h1"}],
                    "maxTrafficWeight": 1000,
                    "istio": {"virtualService": {"name": "web", "routes": ["primary"]}},
                    "plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": "web"}},
                },
            }
        )
        assert [(s.plugin, s.path) for s in c.sections] == [
            ("istio", "istio"),
            ("gatewayapi", "plugins.argoproj-labs/gatewayAPI"),
        ]
        assert c.max_traffic_weight == 1000

    def test_whole_rollout(self) -> None:
        rollout = rollout_document(
            {
                "stableService": "s",
                "canaryService": "c",
                "steps": [{"setWeight": 5}],
                "trafficRouting": {"nginx": {"stableIngress": "web"}},
            },
            namespace="shop",
        )
        c = RoutingConfig.from_document(rollout)
        assert (c.namespace, c.sections[0].plugin) == ("shop", "nginx")

    def test_rollout_in_api_json_form_supplies_identity_and_namespace(self) -> None:
        """What the Argo controller hands the bridge: status, managedFields and all."""
        rollout = json.loads(ROLLOUT_JSON)
        c = RoutingConfig.from_document(rollout)
        assert (c.namespace, c.stable_service, c.canary_service) == (
            "shop",
            "web-stable",
            "web-canary",
        )
        assert c.rollout is not None
        assert (c.rollout.name, c.rollout.namespace, c.rollout.uid) == ("web", "shop", "6f1c")
        assert [(s.plugin, s.path) for s in c.sections] == [
            ("istio", "plugins.canary-routers/istio")
        ]
        assert c.sections[0].body == {"virtualService": {"name": "web", "routes": ["primary"]}}
        assert [r.name for r in c.managed_routes] == ["canary-header"]
        assert c.owner_key() == "Rollout shop/web"
        assert c.weight_scope == "ours"  # from the canary-routers.io/weight-scope annotation

    def test_ping_pong_services_follow_the_rollout_status(self) -> None:
        def rollout(stable_ping_pong: str | None) -> dict[str, Any]:
            doc: dict[str, Any] = {
                "kind": "Rollout",
                "metadata": {"name": "web"},
                "spec": {
                    "strategy": {
                        "canary": {
                            "pingPong": {"pingService": "ping", "pongService": "pong"},
                            "trafficRouting": {"istio": {"virtualService": {"name": "vs"}}},
                        }
                    }
                },
            }
            if stable_ping_pong is not None:
                doc["status"] = {"canary": {"stablePingPong": stable_ping_pong}}
            return doc

        for status, stable in ((None, "pong"), ("pong", "pong"), ("ping", "ping")):
            c = RoutingConfig.from_document(rollout(status))
            assert c.stable_service == stable
            assert c.canary_service == ({"ping", "pong"} - {stable}).pop()

    def test_services_are_optional_in_the_model_and_checked_per_target(self) -> None:
        c = RoutingConfig.parse({"istio": {}})
        assert (c.stable_service, c.canary_service) == (None, None)
        with pytest.raises(ConfigError, match="stableService: required.*canaryService: required"):
            c.services()

    def test_rollout_without_traffic_routing(self) -> None:
        with pytest.raises(ConfigError, match=r"spec\.strategy\.canary\.trafficRouting"):
            RoutingConfig.from_document({"kind": "Rollout", "spec": {"strategy": {"canary": {}}}})

    def test_common_field_errors(self) -> None:
        with pytest.raises(ConfigError) as info:
            RoutingConfig.from_document(
                {"stableService": "a", "canaryService": "a", "maxTrafficWeight": 0}
            )
        text = str(info.value)
        assert "maxTrafficWeight" in text

    def test_same_service_twice(self) -> None:
        with pytest.raises(ConfigError, match="must differ"):
            RoutingConfig.from_document({"stableService": "a", "canaryService": "a", "istio": {}})

    def test_managed_routes_must_list_state_routes(self) -> None:
        c = RoutingConfig.from_document(
            {"stableService": "a", "canaryService": "b", "managedRoutes": [{"name": "x"}]}
        )
        state = TrafficState.parse({"headerRoutes": [HDR]})
        with pytest.raises(ConfigError, match="not listed in managedRoutes"):
            c.check_state(state)


ROLLOUT_JSON = """
{
  "apiVersion": "argoproj.io/v1alpha1",
  "kind": "Rollout",
  "metadata": {
    "name": "web",
    "namespace": "shop",
    "uid": "6f1c",
    "resourceVersion": "81234",
    "generation": 7,
    "creationTimestamp": "2026-11-20T10:00:00Z",
    "labels": {"app": "web"},
    "annotations": {
      "rollout.argoproj.io/revision": "4",
      "canary-routers.io/weight-scope": "ours"
    },
    "managedFields": [
      {"manager": "kubectl-client-side-apply", "operation": "Update",
       "apiVersion": "argoproj.io/v1alpha1", "fieldsType": "FieldsV1",
       "fieldsV1": {"f:spec": {"f:strategy": {}}}}
    ]
  },
  "spec": {
    "replicas": 4,
    "selector": {"matchLabels": {"app": "web"}},
    "template": {"metadata": {"labels": {"app": "web"}},
                 "spec": {"containers": [{"name": "web", "image": "web:2"}]}},
    "strategy": {
      "canary": {
        "stableService": "web-stable",
        "canaryService": "web-canary",
        "trafficRouting": {
          "managedRoutes": [{"name": "canary-header"}],
          "plugins": {
            "canary-routers/istio": {"virtualService": {"name": "web", "routes": ["primary"]}}
          }
        },
        "steps": [{"setWeight": 20}, {"pause": {}}]
      }
    }
  },
  "status": {
    "phase": "Paused",
    "currentStepIndex": 1,
    "stableRS": "5b9f",
    "currentPodHash": "7c4d",
    "canary": {"weights": {"canary": {"weight": 20, "podTemplateHash": "7c4d"},
                           "stable": {"weight": 80, "podTemplateHash": "5b9f"}}},
    "conditions": [{"type": "Progressing", "status": "True", "reason": "RolloutPaused"}]
  }
}
"""


def test_cleanup_defaults() -> None:
    assert Cleanup().restore_stable is True
    assert Cleanup.parse({"restoreStable": False}).restore_stable is False
