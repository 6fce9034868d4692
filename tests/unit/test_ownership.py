"""The per-owner ledger helper (routers.planning.ownership): format, migration, claims, writes."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
import pytest

from routers.cli import report
from routers.errors import LEGACY_HOLDER, OwnershipConflictError, PlanError, is_transient
from routers.planning.ownership import (
    LEDGER,
    Ledger,
    empty_ledger,
    read_ledger,
    split_entry,
)
from routers.planning.patch import PatchBuilder, apply_ops

A, B = "Rollout shop/a", "Rollout shop/b"


def obj(ledger: Any = None, **annotations: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "vs", "resourceVersion": "7"}
    anns = dict(annotations)
    if ledger is not None:
        anns[LEDGER] = ledger if isinstance(ledger, str) else json.dumps(ledger)
    if anns:
        meta["annotations"] = anns
    return {"metadata": meta, "spec": {"x": 1}}


def v2(owners: dict[str, Any], unowned: dict[str, Any] | None = None) -> str:
    doc: dict[str, Any] = {"owners": owners, "v": 2}
    if unowned:
        doc["unowned"] = unowned
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def written(o: dict[str, Any], owner: str, entries: dict[str, Any], **kw: Any) -> dict[str, Any]:
    b = PatchBuilder(o)
    read_ledger(o, owner, **kw).write(b, entries)
    return apply_ops(o, b.ops())


# -- format and migration ------------------------------------------------------------------------


def test_version_1_entries_are_kept_as_unowned_until_adopted() -> None:
    legacy = obj({"routes": ["a-header", "x"], "destinations": ["exp"]})
    view = read_ledger(legacy, A)
    assert view.mine == {}
    assert view.unowned == {"destinations": ["exp"], "routes": ["a-header", "x"]}
    assert view.held("routes") == {"a-header": LEGACY_HOLDER, "x": LEGACY_HOLDER}
    adopted = read_ledger(legacy, A, lambda field, name: name == "a-header")
    assert adopted.mine == {"routes": ["a-header"]}
    assert adopted.adopted == {"routes": ["a-header"]}
    assert adopted.unowned == {"destinations": ["exp"], "routes": ["x"]}


def test_adopting_writes_the_entries_under_the_owner_and_keeps_the_rest() -> None:
    legacy = obj({"routes": ["a-header", "x"]})
    after = written(legacy, A, {"routes": ["a-header"]}, adopt=lambda f, n: n == "a-header")
    assert after["metadata"]["annotations"][LEDGER] == v2(
        {A: {"routes": ["a-header"]}}, {"routes": ["x"]}
    )


def test_mapping_fields_are_adopted_with_their_data() -> None:
    rules = {"h": {"kind": "header", "sha256": "1"}, "m": {"kind": "mirror", "sha256": "2"}}
    view = read_ledger(obj({"rules": rules}), A, lambda f, n: n == "m")
    assert view.data("rules") == {"m": {"kind": "mirror", "sha256": "2"}}
    assert view.foreign("rules") == {"h": {"kind": "header", "sha256": "1"}}


def test_fields_an_older_version_adds_next_to_owners_are_unowned() -> None:
    mixed = json.dumps({"owners": {A: {"routes": ["a"]}}, "routes": ["old"], "v": 2})
    view = read_ledger(obj(mixed), B)
    assert view.others == {A: {"routes": ["a"]}}
    assert view.unowned == {"routes": ["old"]}


def test_unreadable_ledger_is_empty_and_a_newer_format_is_refused() -> None:
    assert read_ledger(obj("not json"), A).mine == {}
    assert read_ledger(obj("[1, 2]"), A).shared is False
    with pytest.raises(PlanError, match="format version 3, written by a newer canary-routers"):
        read_ledger(obj({"owners": {}, "v": 3}), A, what="VirtualService shop/vs")


# -- claims ---------------------------------------------------------------------------------------


def test_a_name_another_owner_holds_is_refused_with_a_typed_error() -> None:
    o = obj(v2({A: {"routes": ["a-header"]}}))
    view = read_ledger(o, B)
    with pytest.raises(OwnershipConflictError) as exc:
        view.claim(
            "routes", ["b-header", "a-header"], what=lambda n: f"route {n!r}", obj="VS shop/vs"
        )
    err = exc.value
    assert (err.owner, err.holder, err.claim) == (B, A, "route 'a-header'")
    assert "held by owner 'Rollout shop/a', not by 'Rollout shop/b'" in str(err)
    assert "nothing was written" in str(err)
    assert isinstance(err, PlanError)
    assert report(err) == 1  # the CLI's plan-error exit code
    assert not is_transient(err)
    view.claim("routes", ["b-header"], what=str)  # free names pass
    read_ledger(o, A).claim("routes", ["a-header"], what=str)  # own names pass


def test_claims_span_several_fields() -> None:
    o = obj(v2({A: {"subsets": ["exp"]}}))
    with pytest.raises(OwnershipConflictError, match="subset 'exp'"):
        read_ledger(o, B).claim(("labels", "subsets"), ["exp"], what=lambda n: f"subset {n!r}")


def test_legacy_entries_nobody_adopted_are_held_too() -> None:
    view = read_ledger(obj({"routes": ["x"]}), B)
    with pytest.raises(OwnershipConflictError) as exc:
        view.claim("routes", ["x"], what=lambda n: f"route {n!r}")
    assert exc.value.holder == LEGACY_HOLDER
    assert "is held by an ownerless ledger entry" in str(exc.value)


def test_a_route_carrying_another_owners_split_is_theirs() -> None:
    o = obj(v2({A: {"split": split_entry("a.shop", "a-canary.shop")}}))
    view = read_ledger(o, B)
    assert view.splitter({"a.shop", "a-canary.shop", "b.shop"}) == A
    assert view.splitter({"a.shop", "b.shop", "b-canary.shop"}) is None  # only A's stable
    with pytest.raises(OwnershipConflictError, match="the weights of http\\[p\\]"):
        view.claim_split({"a.shop", "a-canary.shop"}, what="http[p]")


# -- writes ---------------------------------------------------------------------------------------


def test_unchanged_entries_write_nothing_and_legacy_stays_as_is() -> None:
    o = obj(v2({A: {"routes": ["a"]}}))
    b = PatchBuilder(o)
    read_ledger(o, A).write(b, {"routes": ["a"]})
    assert b.ops() == ()
    legacy = obj({"routes": ["x"]})
    b = PatchBuilder(legacy)
    read_ledger(legacy, A).write(b, {})  # nothing of A's, nothing adopted: no migration write
    assert b.ops() == ()


def test_a_write_keeps_other_owners_and_is_guarded_by_the_value_read() -> None:
    o = obj(v2({A: {"routes": ["a"]}}), team="x")
    b = PatchBuilder(o)
    read_ledger(o, B).write(b, {"routes": ["b2", "b1", "b1"]})
    path = "/metadata/annotations/canary-routers.io~1managed"
    assert b.ops()[1:] == (
        {"op": "test", "path": path, "value": v2({A: {"routes": ["a"]}})},
        {
            "op": "replace",
            "path": path,
            "value": v2({A: {"routes": ["a"]}, B: {"routes": ["b1", "b2"]}}),
        },
    )


def test_the_first_write_tests_that_the_ledger_is_still_absent() -> None:
    with_map = obj(team="x")
    b = PatchBuilder(with_map)
    read_ledger(with_map, A).write(b, {"routes": ["a"]})
    path = "/metadata/annotations/canary-routers.io~1managed"
    assert b.ops()[1] == {"op": "test", "path": path, "value": None}
    without = obj()
    b = PatchBuilder(without)
    read_ledger(without, A).write(b, {"routes": ["a"]})
    assert b.ops()[1] == {"op": "test", "path": "/metadata/annotations", "value": None}
    assert apply_ops(without, b.ops())["metadata"]["annotations"] == {
        LEDGER: v2({A: {"routes": ["a"]}})
    }


def test_a_concurrent_ledger_write_fails_the_guard_even_without_the_resource_version() -> None:
    """What relaxed retries rely on: the resourceVersion test is dropped, the ledger's stays."""
    o = obj(team="x")
    b = PatchBuilder(o)
    read_ledger(o, A).write(b, {"routes": ["a"]})
    relaxed = [op for op in b.ops() if op["path"] != "/metadata/resourceVersion"]
    meanwhile = written(o, B, {"routes": ["b"]})
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        apply_ops(meanwhile, relaxed)
    b2 = PatchBuilder(meanwhile)
    read_ledger(meanwhile, A).write(b2, {"routes": ["a2"]})
    relaxed = [op for op in b2.ops() if op["path"] != "/metadata/resourceVersion"]
    again = written(meanwhile, B, {"routes": ["b", "b2"]})
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        apply_ops(again, relaxed)


def test_the_last_owner_leaving_removes_the_annotation_and_an_empty_map() -> None:
    o = obj(v2({A: {"routes": ["a"]}}))
    after = written(o, A, {})
    assert "annotations" not in after["metadata"]
    kept = written(obj(v2({A: {"routes": ["a"]}}), team="x"), A, {})
    assert kept["metadata"]["annotations"] == {"team": "x"}
    shared = written(obj(v2({A: {"routes": ["a"]}, B: {"routes": ["b"]}})), A, {})
    assert shared["metadata"]["annotations"][LEDGER] == v2({B: {"routes": ["b"]}})


def test_annotation_for_created_objects_and_apply_ops_absence_semantics() -> None:
    assert empty_ledger(A).annotation({"keys": ["k"]}) == {LEDGER: v2({A: {"keys": ["k"]}})}
    assert empty_ledger(A).annotation({}) == {}
    doc = {"a": {"b": None}}
    apply_ops(doc, [{"op": "test", "path": "/a/c", "value": None}])
    apply_ops(doc, [{"op": "test", "path": "/a/b", "value": None}])
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        apply_ops({"a": {"c": 1}}, [{"op": "test", "path": "/a/c", "value": None}])
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        apply_ops({}, [{"op": "test", "path": "/a/c", "value": None}])
    with pytest.raises(ValueError, match="test_absent guards only missing members"):
        PatchBuilder({"a": 1}).test_absent("/a")


def test_parse_is_pure() -> None:
    raw = v2({A: {"routes": ["a"]}}, {"routes": ["x"]})
    o = obj(raw)
    before = copy.deepcopy(o)
    read_ledger(o, A, lambda f, n: True).write(PatchBuilder(o), {"routes": []})
    assert o == before
    assert Ledger.parse(raw).owners == {A: {"routes": ["a"]}}


def test_a_single_value_of_an_older_ledger_is_adopted_whole_and_read_as_a_name() -> None:
    legacy = obj({"mirrors": ["c"], "route": "shadow"})
    view = read_ledger(legacy, A, lambda field, name: True)
    assert view.names("route") == ["shadow"]
    assert view.unowned == {}
    kept = read_ledger(legacy, A, lambda field, name: field == "mirrors")
    assert kept.unowned == {"route": "shadow"}
    assert kept.held("route") == {"shadow": LEGACY_HOLDER}
