"""Selector targets: label selectors evaluated offline and listed on a cluster, one contract.

A plugin's ``targets()`` may return a :class:`SelectorRef`; ``gather`` lists it once per plan
(``list_objects``), marks it listed, and ``LiveObjects.selected`` hands the matches to the plugin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from routers.engine import gather, offline_lister
from routers.errors import ConfigError, PlanError
from routers.model.selectors import LabelSelector
from routers.planning.objects import JSON, LiveObjects, ObjectRef, SelectorRef

GROUP = "gateway.networking.k8s.io"


def sel(**body: Any) -> LabelSelector:
    return LabelSelector.parse(body)


def route(name: str, namespace: str = "shop", **labels: str) -> JSON:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
    }


def test_match_labels_and_expressions_are_anded() -> None:
    s = sel(
        matchLabels={"app": "web"},
        matchExpressions=[
            {"key": "tier", "operator": "In", "values": ["a", "b"]},
            {"key": "legacy", "operator": "DoesNotExist"},
            {"key": "env", "operator": "NotIn", "values": ["dev"]},
            {"key": "team", "operator": "Exists"},
        ],
    )
    assert s.matches({"app": "web", "tier": "a", "team": "x"})
    assert s.matches({"app": "web", "tier": "b", "team": "x", "env": "prod"})
    assert not s.matches({"app": "web", "tier": "c", "team": "x"})
    assert not s.matches({"app": "web", "tier": "a", "team": "x", "legacy": "1"})
    assert not s.matches({"app": "web", "tier": "a", "team": "x", "env": "dev"})
    assert not s.matches({"app": "web", "tier": "a"})
    assert s.query() == "app=web,tier in (a,b),!legacy,env notin (dev),team"
    assert sel().matches({}) and sel().query() == ""


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"matchLabels": {"app": "a,b"}}, "not a valid label value"),
        ({"matchLabels": {"a b": "x"}}, "not a valid label key"),
        ({"matchExpressions": [{"key": "k", "operator": "In"}]}, "needs at least one value"),
        ({"matchExpressions": [{"key": "k", "operator": "Exists", "values": ["x"]}]}, "no values"),
        ({"matchExpressions": [{"key": "k", "operator": "Like"}]}, "operator"),
        ({"matchLabels": {"app": "x"}, "extra": 1}, "unknown field"),
    ],
)
def test_selectors_that_could_change_the_query_are_refused(
    body: dict[str, Any], words: str
) -> None:
    with pytest.raises(ConfigError, match=words):
        LabelSelector.parse(body)


class Selecting:
    """A plugin that asks for one selector and, once listed, for a Service per match."""

    name = "selecting"

    def __init__(self, ref: SelectorRef) -> None:
        self.ref = ref
        self.config = None

    def targets(self, config: Any, live: LiveObjects) -> Sequence[ObjectRef | SelectorRef]:
        found = live.selected(self.ref)
        services = [ObjectRef("", "Service", r.namespace, r.name) for r, _ in found or ()]
        return [self.ref, *services]


class _Binding:
    def __init__(self, plugin: Selecting) -> None:
        self.plugin = plugin
        self.config = None


def test_gather_lists_each_selector_once_and_follows_what_it_found() -> None:
    ref = SelectorRef(GROUP, "HTTPRoute", "shop", sel(matchLabels={"app": "web"}))
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "a", "namespace": "shop"},
    }
    pool = LiveObjects.from_manifests(
        [
            route("a", app="web"),
            route("b", app="other"),
            route("c", "elsewhere", app="web"),
            service,
        ]
    )
    calls: list[SelectorRef] = []
    lister = offline_lister(pool)

    def list_objects(s: SelectorRef) -> list[JSON]:
        calls.append(s)
        return list(lister(s))

    live = gather([_Binding(Selecting(ref))], pool.get, list_objects=list_objects)  # type: ignore[list-item]
    assert calls == [ref]
    assert [r.name for r, _ in live.selected(ref) or ()] == ["a"]
    assert ObjectRef("", "Service", "shop", "a") in live
    assert ref in live.listed


def test_a_caller_without_a_lister_gets_a_plan_error_not_a_silent_empty_list() -> None:
    ref = SelectorRef(GROUP, "HTTPRoute", "shop", sel())
    with pytest.raises(PlanError, match="cannot list HTTPRoute.gateway.networking.k8s.io in shop"):
        gather([_Binding(Selecting(ref))], lambda r: None)  # type: ignore[list-item]
    assert LiveObjects().selected(ref) is None
