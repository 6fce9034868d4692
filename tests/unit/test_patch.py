from __future__ import annotations

import copy
import sys

import jsonpatch
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routers.planning.objects import ObjectRef
from routers.planning.patch import (
    PatchBuilder,
    apply_ops,
    escape,
    json_equal,
    pointer,
    share_unchanged,
    wire_ops,
)

LIVE = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "x", "resourceVersion": "7", "annotations": {"a/b": "1"}},
    "spec": {"list": [{"name": "a", "w": 1}, {"name": "b", "w": 2}], "flag": True},
}


def test_pointer_escaping() -> None:
    assert escape("a/b~c") == "a~1b~0c"
    assert (
        pointer("metadata", "annotations", "canary-routers.io/managed")
        == "/metadata/annotations/canary-routers.io~1managed"
    )


def test_unchanged_edits_give_an_empty_patch() -> None:
    b = PatchBuilder(LIVE)
    b.test("/spec/list/0/name")
    assert not b.replace("/spec/list/0/w", 1)
    assert not b.set(pointer("metadata", "annotations", "a/b"), "1")
    assert b.ops() == ()
    assert b.patch(ObjectRef("", "ConfigMap", None, "x"), "noop") is None


def test_guards_are_inline_and_resource_version_first() -> None:
    b = PatchBuilder(LIVE)
    b.test("/spec/list/1/name")
    b.replace("/spec/list/1/w", 5)
    ops = b.ops()
    assert ops[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "7"}
    assert ops[1] == {"op": "test", "path": "/spec/list/1/name", "value": "b"}
    assert ops[2] == {"op": "replace", "path": "/spec/list/1/w", "value": 5}
    assert apply_ops(LIVE, ops)["spec"]["list"][1]["w"] == 5


def test_guards_follow_index_shifts() -> None:
    b = PatchBuilder(LIVE)
    b.add("/spec/list/0", {"name": "new"})
    b.test("/spec/list/2/name")  # "b" moved from 1 to 2
    b.remove("/spec/list/2")
    result = apply_ops(LIVE, b.ops())
    assert [e["name"] for e in result["spec"]["list"]] == ["new", "a"]


def test_set_creates_missing_parents_once() -> None:
    b = PatchBuilder({"metadata": {"name": "x"}})
    b.set(pointer("metadata", "annotations", "k/1"), "v")
    b.set(pointer("metadata", "annotations", "k/2"), "w")
    assert b.ops() == (
        {"op": "add", "path": "/metadata/annotations", "value": {"k/1": "v"}},
        {"op": "add", "path": "/metadata/annotations/k~12", "value": "w"},
    )


def test_stale_guard_fails_when_applied() -> None:
    b = PatchBuilder(LIVE)
    b.test("/spec/list/0/name")
    b.replace("/spec/list/0/w", 9)
    moved = {**LIVE, "metadata": {**LIVE["metadata"], "resourceVersion": "8"}}  # type: ignore[dict-item]
    import jsonpatch

    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        apply_ops(moved, b.ops())


def test_trailing_guards_are_dropped() -> None:
    b = PatchBuilder(LIVE)
    b.replace("/spec/flag", False)
    b.test("/spec/list/0/name")
    assert b.ops()[-1]["op"] == "replace"


_SHARED = {"p": [1, True]}


@pytest.mark.parametrize(
    ("a", "b", "eq"),
    [
        (True, 1, False),
        (1, 1.0, True),
        ({"a": [1]}, {"a": [1]}, True),
        ("1", 1, False),
        (None, None, True),
        # Containers (the C-speed path must agree with the exact walk):
        ({"a": [True]}, {"a": [1]}, False),  # Python's == says equal
        ([{"w": 1}], [{"w": 1.0}], True),  # serialised differently, JSON-equal
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, True),  # key order
        ([[1, 2]], [(1, 2)], True),  # a tuple from code against a decoded list
        ({"a": [0]}, {"a": [False]}, False),
        ({"a": {"b": "x"}}, {"a": {"b": "y"}}, False),
        # The same string interned on one side only, and a subtree shared on one side only
        # (marshal would tell both apart; neither changes the JSON):
        ({"k": sys.intern("name")}, {"k": "".join(["na", "me"])}, True),
        ([_SHARED, _SHARED], [{"p": [1, True]}, {"p": [1, True]}], True),
        ([_SHARED, _SHARED], [{"p": [1, True]}, {"p": [1, 1]}], False),
    ],
)
def test_json_equal(a: object, b: object, eq: bool) -> None:
    assert json_equal(a, b) is eq


def test_inverse_ops_restore_and_guard_only_what_we_wrote() -> None:
    from routers.planning.patch import inverse_ops

    before = {
        "metadata": {"annotations": {"x": "1"}},
        "spec": {"list": [{"name": "a", "w": 1}], "keep": 1},
    }
    b = PatchBuilder(before)
    b.add("/spec/list/0", {"name": "ours"})
    b.replace("/spec/list/1/w", 9)
    after = apply_ops(before, b.ops())
    inverse = inverse_ops(after, before)
    assert apply_ops(after, inverse) == before
    # A foreign edit of another field does not block the revert ...
    foreign = {**after, "spec": {**after["spec"], "keep": 2}}
    assert apply_ops(foreign, inverse)["spec"]["keep"] == 2
    # ... but an edit of a field we wrote does.
    import jsonpatch

    touched = apply_ops(after, [{"op": "replace", "path": "/spec/list/1/w", "value": 5}])
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        apply_ops(touched, inverse)


def _weights_patch() -> tuple[dict[str, object], ...]:
    b = PatchBuilder(LIVE)
    b.test("/spec/list/1/name")
    b.replace("/spec/list/1/w", 5)
    return b.ops()


def test_wire_ops_strict_sends_the_resource_version_guard_and_the_edits_only() -> None:
    ops = _weights_patch()
    sent = wire_ops(ops)
    assert sent == (ops[0], ops[2])
    assert apply_ops(LIVE, sent) == apply_ops(LIVE, ops)
    # The one guard left still refuses any other version of the object.
    moved = {**LIVE, "metadata": {**LIVE["metadata"], "resourceVersion": "8"}}  # type: ignore[dict-item]
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        apply_ops(moved, sent)


def test_wire_ops_relaxed_keeps_identity_guards_and_drops_only_the_resource_version() -> None:
    ops = _weights_patch()
    sent = wire_ops(ops, relaxed=True)
    assert sent == ops[1:]
    # Someone reordered the list: the identity guard catches it, whatever the resourceVersion.
    reordered = {**LIVE, "spec": {"list": [{"name": "b", "w": 2}, {"name": "a", "w": 1}]}}
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        apply_ops(reordered, sent)


def test_wire_ops_keeps_every_guard_without_a_resource_version() -> None:
    b = PatchBuilder({"spec": LIVE["spec"]})
    b.test("/spec/list/1/name")
    b.replace("/spec/list/1/w", 5)
    assert wire_ops(b.ops()) == b.ops()
    assert wire_ops(b.ops(), relaxed=True) == b.ops()


def _paths(doc: object, prefix: str = "") -> list[str]:
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, prefix + "/" + escape(k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, f"{prefix}/{i}")
    return out


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text("ab/~", max_size=2),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text("ab/~", max_size=2), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(doc=st.dictionaries(st.text("ab/~", max_size=2), _json, max_size=4), data=st.data())
def test_the_builders_working_copy_is_what_rfc_6902_makes_of_its_ops(
    doc: dict[str, object], data: st.DataObject
) -> None:
    """The builder applies its own ops natively (fast path); jsonpatch must agree, every time."""
    before = copy.deepcopy(doc)
    b = PatchBuilder(doc)
    for _ in range(data.draw(st.integers(1, 6))):
        paths = _paths(b.doc)
        if not paths:
            b.set("/new", data.draw(_json))
            continue
        path = data.draw(st.sampled_from(paths))
        parent = b.get(path.rsplit("/", 1)[0]) if path.count("/") > 1 else b.doc
        action = data.draw(st.sampled_from(["replace", "remove", "add", "set"]))
        if action == "replace":
            b.replace(path, data.draw(_json))
        elif action == "remove":
            b.remove(path)
        elif action == "add" and isinstance(parent, list):
            b.add(path, data.draw(_json))  # insert before an existing element
        else:
            b.set(path + "/x" if isinstance(b.get(path), dict) else path, data.draw(_json))
    assert doc == before, "the live object must never change"
    assert json_equal(apply_ops(doc, b.ops()), b.doc)


def test_a_write_response_shares_what_did_not_change_with_the_object_it_was_planned_from() -> None:
    old = {
        "metadata": {"name": "a", "resourceVersion": "1"},
        "spec": {"rules": [{"w": 1}]},
        "status": {"ok": True},
    }
    new = {
        "metadata": {"name": "a", "resourceVersion": "2"},
        "spec": {"rules": [{"w": 1}]},
        "status": {"ok": 1},  # equal under Python's ==, not in JSON
        "extra": [],
    }
    out = share_unchanged(old, new)
    assert out is new
    assert out["spec"] is old["spec"]
    assert out["status"] == {"ok": 1} and out["status"] is not old["status"]
    assert out["metadata"]["resourceVersion"] == "2"  # metadata is never shared
    assert share_unchanged(None, new) is new
