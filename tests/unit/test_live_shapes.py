"""Malformed live objects from manifest files are typed errors, never crashes (found by the fuzz
campaign in tests/fuzz: ``metadata: true``, a ``null`` rule, ``match: true``)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from routers.errors import ConfigError, PlanError
from routers.io import load_documents
from routers.planning.objects import shape_problem
from routers.registry import Registry

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("value", "shape", "problem"),
    [
        (
            {"spec": {"rules": [{"name": None}]}},
            {"spec": {"rules": [{"name": str}]}},
            "spec.rules[0].name is null (omit the field instead)",
        ),
        ({"spec": {"other": None}}, {"spec": {"rules": [{}]}}, None),
        (
            {"spec": {"rules": [{}, None]}},
            {"spec": {"rules": [{}]}},
            "spec.rules[1] is not a mapping",
        ),
        (
            {"spec": {"rules": [{}, True]}},
            {"spec": {"rules": [{}]}},
            "spec.rules[1] is not a mapping",
        ),
        ({"spec": {"rules": {}}}, {"spec": {"rules": [{}]}}, "spec.rules is not a list"),
        ({"spec": []}, {"spec": {}}, "spec is not a mapping"),
        ({"a": {"x": 1, "y": "2"}}, {"a": {"*": int}}, "a.y is not a int"),
        ({"a": {"x": 1, "y": "2"}}, {"a": {"y": str, "*": int}}, None),
        ({"w": True}, {"w": int}, "w is not a int"),
        ({"w": 1.5}, {"w": (int, float)}, None),
        ({"unknown": [1]}, {"spec": {}}, None),
        ([], {}, "the object is not a mapping"),
    ],
)
def test_shape_problem(value: Any, shape: Any, problem: str | None) -> None:
    assert shape_problem(value, shape) == problem


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("kind: Ingress\nmetadata: true\n", "metadata must be a mapping"),
        ("kind: Ingress\nmetadata: {name: 3}\n", "metadata.name must be a string"),
        ("kind: Ingress\nmetadata: {name: a, labels: true}\n", "metadata.labels must map"),
        ("kind: Ingress\nmetadata: {name: a, annotations: {a: 1}}\n", "metadata.annotations must"),
        ("kind: [Ingress]\nmetadata: {name: a}\n", "kind and apiVersion must be strings"),
        ("- a\n", "needs kind and metadata"),
    ],
)
def test_manifests_that_no_api_server_returns_are_refused(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "live.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_documents([str(path)])
    assert problem in str(info.value)
    assert info.value.problems[0].path == "document[0]"


def _plan(example: str, edit: Any) -> None:
    from routers.engine import plan_offline
    from routers.io import load_one
    from routers.model import RoutingConfig, TrafficState

    base = ROOT / "examples" / example
    live = load_documents([str(base / "live.yaml")])
    edit(live)
    plan_offline(
        RoutingConfig.from_document(load_one(str(base / "routing.yaml"))),
        TrafficState.parse(load_one(str(base / "state.yaml"))),
        live,
    )


def test_malformed_virtual_service_is_a_plan_error() -> None:
    def edit(live: list[Any]) -> None:
        vs = next(o for o in live if o["kind"] == "VirtualService")
        vs["spec"]["http"][0]["match"] = True

    with pytest.raises(
        PlanError, match=r"malformed VirtualService: spec\.http\[0\]\.match is not a list"
    ):
        _plan("istio", edit)


def test_malformed_http_route_is_a_plan_error() -> None:
    def edit(live: list[Any]) -> None:
        route = next(o for o in live if o["kind"] == "HTTPRoute")
        route["spec"]["rules"].append(None)
        route["spec"]["rules"][0]["matches"][0]["headers"] = [True]

    with pytest.raises(
        PlanError, match=r"spec\.rules\[0\]\.matches\[0\]\.headers\[0\] is not a mapping"
    ):
        _plan("gatewayapi", edit)


def test_malformed_ingress_is_a_plan_error() -> None:
    def edit(live: list[Any]) -> None:
        ingress = next(o for o in live if o["kind"] == "Ingress")
        ingress["spec"]["tls"] = [{"hosts": True}]

    with pytest.raises(PlanError, match=r"malformed Ingress: spec\.tls\[0\]\.hosts is not a list"):
        _plan("nginx", edit)


def test_malformed_destination_rule_fails_while_gathering_targets() -> None:
    """Istio reads the DestinationRule in targets(), before plan(): checked there too."""

    def edit(live: list[Any]) -> None:
        next(o for o in live if o["kind"] == "DestinationRule")["spec"] = True

    with pytest.raises(PlanError, match="malformed DestinationRule: spec is not a mapping"):
        _plan("istio", edit)


def test_malformed_configmap_in_the_thirdparty_plugin(cm_registry: Registry) -> None:
    from routers.engine import plan_offline
    from routers.model import RoutingConfig, TrafficState

    config = RoutingConfig.from_document(
        {"stableService": "a", "canaryService": "b", "plugins": {"x/configmap": {"configMap": "w"}}}
    )
    live = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w"}, "data": "x"}]
    with pytest.raises(PlanError, match="malformed ConfigMap: data is not a mapping"):
        plan_offline(config, TrafficState(weight=1), live, registry=cm_registry)


def test_malformed_traffic_split_is_a_plan_error() -> None:
    def edit(live: list[Any]) -> None:
        split = next(o for o in live if o["kind"] == "TrafficSplit")
        split["spec"]["matches"] = [{"kind": "HTTPRouteGroup", "name": ["x"]}]

    with pytest.raises(PlanError, match=r"malformed TrafficSplit: spec\.matches\[0\]\.name is not"):
        _plan("smi", edit)


def test_required_keys() -> None:
    from routers.planning.objects import Required

    shape = {"spec": {"services": [{"name": Required(str), "weight": int}]}}
    assert shape_problem({"spec": {"services": [{"name": "a"}]}}, shape) is None
    assert shape_problem({"spec": {"services": [{"weight": 1}]}}, shape) == (
        "spec.services[0].name is missing"
    )
    assert shape_problem({"spec": {"services": [{"name": 1}]}}, shape) == (
        "spec.services[0].name is not a str"
    )


def test_check_shapes_names_the_object() -> None:
    from routers.planning.objects import LiveObjects, ObjectRef, check_shapes

    ref = ObjectRef("g", "K", "ns", "a")
    shapes = {("g", "K"): {"spec": {"x": int}}}
    check_shapes("p", LiveObjects([(ref, {"spec": {"x": 1}})]), shapes)
    check_shapes("p", LiveObjects([(ObjectRef("", "Other", "ns", "b"), {"spec": 1})]), shapes)
    with pytest.raises(PlanError) as info:
        check_shapes("p", LiveObjects([(ref, {"spec": {"x": "1"}})]), shapes)
    assert str(info.value).endswith("malformed K: spec.x is not a int")
    assert info.value.obj == str(ref)


def test_an_object_is_walked_once_per_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same dict is walked once per shape; an equal copy, a copy edited by hand that kept its
    uid and resourceVersion (found by the CLI fuzz campaign), or a stricter shape walks again."""
    from routers.planning import objects
    from routers.planning.objects import LiveObjects, ObjectRef, Required, check_shapes

    walks: list[Any] = []
    real = objects.shape_problem

    def counting(value: Any, shape: Any, path: str = "") -> str | None:
        walks.append(value)
        return real(value, shape, path)

    monkeypatch.setattr(objects, "shape_problem", counting)
    monkeypatch.setattr(objects, "_FITS", objects.IdentityMemo())
    ref = ObjectRef("g", "K", "ns", "walked-once")
    loose: Any = {"spec": {}}
    strict: Any = {"spec": {"x": int, "y": Required(str)}}
    shapes = {("g", "K"): {"spec": {"x": int}}}
    meta = {"name": ref.name, "uid": "u1", "resourceVersion": "7"}
    served = {"metadata": meta, "spec": {"x": 1}}
    for _ in range(3):
        check_shapes("p", LiveObjects([(ref, served)]), shapes)
    assert len(walks) == 1
    check_shapes("p", LiveObjects([(ref, copy.deepcopy(served))]), shapes)
    assert len(walks) == 2
    check_shapes("p", LiveObjects([(ref, served)]), {("g", "K"): loose})
    with pytest.raises(PlanError, match="spec.y is missing"):  # fits the loose shape only
        check_shapes("p", LiveObjects([(ref, served)]), {("g", "K"): strict})
    edited = {"metadata": dict(meta), "spec": {"x": ["1"]}}
    with pytest.raises(PlanError, match="spec.x is not a int"):
        check_shapes("p", LiveObjects([(ref, edited)]), shapes)
    with pytest.raises(PlanError, match="spec.x is not a int"):  # a misfit is refused again
        check_shapes("p", LiveObjects([(ref, edited)]), shapes)


def test_a_field_shared_with_a_checked_object_is_not_walked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A write response shares the fields the write did not change (``share_unchanged``): the
    next check walks only the others, and still finds a problem in them."""
    from routers.planning import objects
    from routers.planning.objects import LiveObjects, ObjectRef, check_shapes

    walked: list[Any] = []
    real = objects._walk

    def counting(value: Any, shape: Any, memo: Any = None) -> Any:
        walked.append(value)
        return real(value, shape, memo)

    monkeypatch.setattr(objects, "_walk", counting)
    ref = ObjectRef("g", "K", "ns", "shared")
    shapes = {("g", "K"): {"metadata": {"annotations": {"*": str}}, "spec": {"x": [int]}}}
    spec = {"x": [1, 2, 3]}
    first = {"metadata": {"annotations": {"a": "1"}}, "spec": spec}
    check_shapes("p", LiveObjects([(ref, first)]), shapes)
    assert spec in walked
    walked.clear()
    second = {"metadata": {"annotations": {"a": "2"}}, "spec": spec}
    check_shapes("p", LiveObjects([(ref, second)]), shapes)
    assert walked and all(v is not spec and v is not spec["x"] for v in walked)
    third = {"metadata": {"annotations": {"a": 3}}, "spec": spec}
    with pytest.raises(PlanError, match=r"metadata.annotations.a is not a str"):
        check_shapes("p", LiveObjects([(ref, third)]), shapes)
    bad = {"x": [1, "2"]}
    for _ in range(2):  # a remembered problem keeps its place in the message
        with pytest.raises(PlanError, match=r"spec.x\[1\] is not a int"):
            check_shapes("p", LiveObjects([(ref, {"metadata": {}, "spec": bad})]), shapes)


def test_identity_memo_keys_by_the_objects_themselves() -> None:
    """Equal inputs are not the same inputs; errors are not remembered; the oldest goes first."""
    from routers.planning.objects import IdentityMemo

    memo: IdentityMemo[int] = IdentityMemo(limit=2)
    calls: list[object] = []

    def count(obj: object) -> int:
        calls.append(obj)
        return len(calls)

    a, b, c = {"x": 1}, {"x": 1}, {"x": 2}
    assert memo.get((a,), lambda: count(a)) == 1
    assert memo.get((a,), lambda: count(a)) == 1
    assert memo.get((b,), lambda: count(b)) == 2  # equal to a, but another dict
    assert memo.get((a, b), lambda: count(a)) == 3  # another tuple of inputs

    def fail() -> int:
        raise PlanError("bad")

    for _ in range(2):
        with pytest.raises(PlanError):
            memo.get((c,), fail)
    assert memo.get((c,), lambda: count(c)) == 4
    # The limit is 2: (b,) and (a, b) were added after (a,), so (a,) is computed again.
    assert memo.get((a,), lambda: count(a)) == 5
    assert memo.get((c,), lambda: count(c)) == 4


def _planned(example: str, edit: Any) -> Any:
    from routers.engine import plan_offline
    from routers.io import load_one
    from routers.model import RoutingConfig, TrafficState

    base = ROOT / "examples" / example
    live = load_documents([str(base / "live.yaml")])
    edit(live)
    try:
        result = plan_offline(
            RoutingConfig.from_document(load_one(str(base / "routing.yaml"))),
            TrafficState.parse(load_one(str(base / "state.yaml"))),
            live,
        )
    except PlanError as exc:
        return str(exc)
    return [p.to_data() for p in result.plans], dict(result.after)


@pytest.mark.parametrize(
    ("example", "kind", "path"),
    [
        ("istio", "DestinationRule", ("spec", "subsets")),
        ("gatewayapi", "HTTPRoute", ("spec", "rules", 0, "matches")),
        ("nginx", "Ingress", ("spec", "tls")),
    ],
)
def test_a_null_in_a_manifest_reads_as_the_field_left_out(
    example: str, kind: str, path: tuple[Any, ...]
) -> None:
    """The API server prunes the null of a field it is sent (``matches:`` with nothing after it,
    as in Argo's agentgateway guide), so a manifest plans as if the field were absent. Found by
    the fuzz campaign: ``subsets: null`` had crashed the DestinationRule planner."""

    def edit(value: Any) -> Any:
        def apply(live: list[Any]) -> None:
            node = next(o for o in live if o["kind"] == kind)
            for part in path[:-1]:
                node = node[part]
            if value is None:
                node[path[-1]] = None
            else:
                node.pop(path[-1], None)

        return apply

    assert _planned(example, edit(None)) == _planned(example, edit("drop"))


def test_a_null_that_reaches_a_plugin_is_a_plan_error() -> None:
    """Objects handed over other than as manifests still meet the shape gate."""
    from routers.planning.objects import LiveObjects, ObjectRef, check_shapes

    ref = ObjectRef("networking.istio.io", "DestinationRule", "shop", "web")
    live = LiveObjects([(ref, {"spec": {"subsets": None}})])
    with pytest.raises(PlanError, match=r"spec\.subsets is null \(omit the field instead\)"):
        check_shapes("istio", live, {(ref.group, ref.kind): {"spec": {"subsets": [{}]}}})


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("name", "web\n", r"metadata\.name 'web\\n' is not a valid object name"),
        ("name", "a/b", r"metadata\.name 'a/b' is not a valid object name"),
        ("namespace", "shop\n", r"metadata\.namespace 'shop\\n' is not a valid namespace"),
    ],
)
def test_a_manifest_name_no_api_server_would_hold_is_a_plan_error(
    field: str, value: str, words: str
) -> None:
    """Offline, names come from files: one with a line break would reach the output and the
    namespace the config falls back to (the manifests' shared namespace)."""

    def edit(live: list[Any]) -> None:
        for obj in live:
            obj["metadata"][field] = value

    with pytest.raises(PlanError, match=words):
        _plan("istio", edit)
