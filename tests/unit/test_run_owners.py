"""``routers run`` progress and commands are kept per owner on the shared holder object."""

from __future__ import annotations

import json

from routers.cluster.run import _entries, _own_entry, _with_entry

A, B = "Rollout shop/a", "Rollout shop/b"


def test_each_owner_sets_and_clears_only_its_entry() -> None:
    raw = _with_entry(None, A, {"run": "r1", "step": 0}, adopt=lambda _: False)
    raw = _with_entry(raw, B, {"run": "r2", "step": 3}, adopt=lambda _: False)
    assert json.loads(raw or "") == {A: {"run": "r1", "step": 0}, B: {"run": "r2", "step": 3}}
    assert _own_entry(raw, A) == {"run": "r1", "step": 0}
    raw = _with_entry(raw, A, None, adopt=lambda _: False)
    assert json.loads(raw or "") == {B: {"run": "r2", "step": 3}}
    assert _own_entry(raw, A) is None
    assert _with_entry(raw, B, None, adopt=lambda _: False) is None


def test_a_value_written_before_owners_is_resumed_by_its_run_and_kept_otherwise() -> None:
    legacy = json.dumps({"run": "r1", "step": 2})
    assert _entries(legacy) == {"": {"run": "r1", "step": 2}}
    assert _own_entry(legacy, A) == {"run": "r1", "step": 2}
    mine = _with_entry(legacy, A, {"run": "r1", "step": 3}, adopt=lambda e: e.get("run") == "r1")
    assert json.loads(mine or "") == {A: {"run": "r1", "step": 3}}
    kept = _with_entry(legacy, B, {"run": "r9", "step": 0}, adopt=lambda e: e.get("run") == "r9")
    assert json.loads(kept or "") == {"": {"run": "r1", "step": 2}, B: {"run": "r9", "step": 0}}
    # An ownerless command (an older `routers abort`) reaches whichever run reads it.
    assert _own_entry("abort", B) == "abort"
    assert _with_entry("abort", B, None, adopt=lambda _: True) is None
