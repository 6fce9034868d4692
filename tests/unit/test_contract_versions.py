"""Contract versions: version 2 adds the optional evaluator; version 1 plugins keep working."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from routers.cli import main
from routers.contract import (
    ANY_MATCH,
    API_VERSION,
    SUPPORTED_API_VERSIONS,
    Capabilities,
    MatchLimits,
    MirrorSupport,
    evaluator_of,
)
from routers.engine import plan_offline
from routers.errors import UnsupportedError
from routers.explain import explain_requests
from routers.model import RoutingConfig, TrafficState
from routers.registry import Registry
from tests.conftest import THIRDPARTY, entry

LIVE = """
apiVersion: v1
kind: ConfigMap
metadata: {name: legacy-state, namespace: shop, resourceVersion: "7"}
data: {}
"""
CONFIG = {"stableService": "web-stable", "canaryService": "web-canary", "namespace": "shop"}
HEADER = {"name": "h", "matches": [{"headers": [{"name": "X-Canary", "exact": "always"}]}]}


def legacy_registry() -> Registry:
    return Registry(
        lambda: [entry("legacy", "tests.unit.v1_plugin:LegacyPlugin", "legacy-dist", "0.9")],  # type: ignore[list-item]
        disabled=(),
    )


def test_version_2_is_current_and_1_still_supported() -> None:
    assert API_VERSION == 2
    assert {1, 2} == SUPPORTED_API_VERSIONS


def test_a_version_1_plugin_loads_plans_and_has_no_evaluator() -> None:
    registry = legacy_registry()
    plugin = registry.load("legacy")
    assert plugin.api_version == 1
    assert evaluator_of(plugin) is None  # its own evaluate() predates the contract's
    config = RoutingConfig.parse({**CONFIG, "legacy": {}})
    import yaml

    live = list(yaml.safe_load_all(LIVE))
    state = TrafficState.parse({"weight": 30, "headerRoutes": [HEADER]})
    result = plan_offline(config, state, live, registry=registry)
    (obj,) = [o for o in result.after.values() if o is not None]
    assert json.loads(obj["data"]["state"]) == {"canary": 30, "headerRoutes": ["h"], "total": 100}
    # Its flat capability keywords still limit what the core lets through.
    regex = {"name": "h", "matches": [{"headers": [{"name": "X-Canary", "regex": "a.*"}]}]}
    with pytest.raises(UnsupportedError, match="header regex matches are not supported"):
        plan_offline(config, TrafficState.parse({"headerRoutes": [regex]}), live, registry=registry)


def test_explain_request_says_when_a_plugin_cannot_simulate() -> None:
    import yaml

    config = RoutingConfig.parse({**CONFIG, "legacy": {}})
    lines = list(
        explain_requests(
            config,
            TrafficState(weight=30),
            list(yaml.safe_load_all(LIVE)),
            ["GET /"],
            registry=legacy_registry(),
        )
    )
    assert lines[1] == "  wanted: 30% -> web-canary, 70% -> web-stable"
    assert lines[2] == (
        "  legacy: cannot simulate: the plugin provides no data-plane evaluator "
        "(plugin API version 1; evaluators came with version 2)"
    )


def test_plugins_list_says_which_plugins_can_simulate(
    default_registry_is: Callable[[Registry], None],
    capsys: pytest.CaptureFixture[str],
    thirdparty_path: None,
) -> None:
    default_registry_is(
        Registry(
            lambda: [
                entry("legacy", "tests.unit.v1_plugin:LegacyPlugin", "legacy-dist", "0.9"),
                entry("configmap", "routers_example_configmap:ConfigMapPlugin"),
            ],  # type: ignore[list-item]
            disabled=(),
        )
    )
    assert main(["plugins", "list", "-o", "json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert (rows["legacy"]["apiVersion"], rows["legacy"]["evaluator"]) == (
        1,
        "no (plugin API version 1)",
    )
    assert (rows["configmap"]["apiVersion"], rows["configmap"]["evaluator"]) == (2, "yes")
    assert main(["plugins", "list"]) == 0
    table = capsys.readouterr().out
    assert "EVALUATOR" in table and "no (plugin API version 1)" in table


def test_explain_request_routes_through_a_thirdparty_evaluator(thirdparty_path: None) -> None:
    example = THIRDPARTY / "example"
    registry = Registry(
        lambda: [entry("configmap", "routers_example_configmap:ConfigMapPlugin")],  # type: ignore[list-item]
        disabled=(),
    )
    from routers.io import load_documents, load_one

    config = RoutingConfig.from_document(load_one(str(example / "routing.yaml")))
    docs = load_documents([str(Path(example) / "live.yaml")])
    lines = list(
        explain_requests(config, TrafficState(weight=20), docs, ["GET /"], registry=registry)
    )
    assert lines[2] == (
        "  configmap: ConfigMap shop/proxy-weights: 20% -> web-canary, 80% -> web-stable "
        "(via ConfigMap shop/proxy-weights key weights.json)  [as wanted]"
    )


def test_version_1_capability_keywords_fold_into_the_limits() -> None:
    """One value type for both route kinds; the flat v1 keywords still mean the same."""
    mirror = MatchLimits(path_match=frozenset({"prefix"}), max_matches_per_route=1)
    legacy = Capabilities(
        header_routes=True,
        header_match=frozenset({"exact"}),
        method_match=True,
        max_headers_per_match=1,
        mirror=MirrorSupport.FULL_ONLY,
        mirror_matches=mirror,
    )
    current = Capabilities(
        header_routes=True,
        header_limits=MatchLimits(frozenset({"exact"}), method_match=True, max_headers_per_match=1),
        mirror=MirrorSupport.FULL_ONLY,
        mirror_limits=mirror,
    )
    assert legacy == current
    assert current.limits(mirror=True) is mirror
    assert Capabilities(header_limits=ANY_MATCH).limits(mirror=True) is ANY_MATCH


def test_capabilities_wire_form_nests_one_limits_shape_per_route_kind() -> None:
    data = Capabilities(header_routes=True, header_limits=ANY_MATCH, max_routes=3).to_data()
    assert data["headerLimits"] == {
        "headerMatch": ["exact", "prefix", "regex"],
        "pathMatch": ["exact", "prefix", "regex"],
        "queryMatch": ["exact", "prefix", "regex"],
        "methodMatch": True,
        "maxMatchesPerRoute": None,
        "maxHeadersPerMatch": None,
        "unmatchableHeaders": [],
    }
    assert data["mirrorLimits"] == data["headerLimits"]
    assert data["maxRoutes"] == 3
    assert "headerMatch" not in data  # no flat copy of the limits any more
