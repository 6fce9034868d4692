"""The one JSON-patch builder: explicit ops, JSON-pointer escaping, guards, no-op detection.

Plugins do not diff whole objects (list diffs of atomic lists such as ``spec.http`` or
``rules`` produce index-shifting edits that clobber concurrent writers). They state each edit
explicitly against a working copy; the builder

* drops edits that would not change anything, so an unchanged state yields an empty patch;
* inserts ``test`` guards inline, so each edit is checked against exactly what we read
  (RFC 6902 applies ops in order, and the working copy mirrors the server's doc at that point);
* prefixes a ``test`` on ``/metadata/resourceVersion``, the optimistic-concurrency token.

What goes on the wire is decided here too (:func:`wire_ops`): while the resourceVersion guard is
sent, it pins the whole object and every other guard is implied, so only it is sent; when the
cluster layer relaxes it (a hot foreign writer), the identity and value guards are sent instead.
"""

from __future__ import annotations

import copy
import marshal
from collections.abc import Mapping, Sequence
from typing import Any

import jsonpatch

from routers.planning.objects import JSON, ObjectRef, resource_version
from routers.planning.plan import Patch

__all__ = [
    "RV_GUARD",
    "PatchBuilder",
    "apply_ops",
    "escape",
    "json_equal",
    "pointer",
    "share_unchanged",
    "wire_ops",
]

_MISSING: Any = object()

RV_GUARD = "/metadata/resourceVersion"
"""Path of the optimistic-concurrency guard every patch of a read object starts with."""


def escape(token: str | int) -> str:
    """Escape one reference token (RFC 6901): ``~`` -> ``~0``, ``/`` -> ``~1``."""
    return str(token).replace("~", "~0").replace("/", "~1")


def pointer(*tokens: str | int) -> str:
    """Build a JSON pointer from unescaped tokens: ``pointer("metadata", "annotations", "a/b")``."""
    return "".join("/" + escape(t) for t in tokens)


def _split(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError(f"JSON pointer must start with '/': {path!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def json_equal(a: Any, b: Any) -> bool:
    """Equality that keeps JSON types apart (``True != 1``, ``1 != 1.5``; ``1 == 1.0``)."""
    if type(a) in (dict, list) and type(a) is type(b):
        # Equal under Python's == (which conflates True and 1) and marshalled alike (marshal
        # writes each value's exact type, so it does not) is JSON-equal: two C-speed passes
        # instead of a Python walk of big trees (300 Ingress paths on every step). Version 2
        # writes no back-references, so how objects are shared inside a tree does not matter.
        # Anything else (key order, 1 vs 1.0, a Mapping type marshal refuses) takes the walk.
        try:
            if a == b and marshal.dumps(a, 2) == marshal.dumps(b, 2):
                return True
        except (TypeError, ValueError):
            pass
    return _json_equal(a, b)


def share_unchanged(old: Mapping[str, Any] | None, new: JSON) -> JSON:
    """``new`` (a fresh write response, changed in place) with every top-level field that is
    JSON-equal to ``old``'s replaced by ``old``'s very value.

    A response repeats what the write did not touch (a canary Ingress's 300 paths when only its
    weight annotation changed); sharing it lets the next step's identity memos (shape checks,
    derivations) recognise it instead of walking it again. Compared, never assumed: a mutating
    webhook may have changed fields the patch did not name. Both stay read-only plan inputs.
    """
    if old is None:
        return new
    for key, value in new.items():
        prior = old.get(key, _MISSING)
        if key != "metadata" and prior is not value and json_equal(prior, value):
            new[key] = prior
    return new


def _json_equal(a: Any, b: Any) -> bool:
    ta, tb = type(a), type(b)
    # Exact-type fast paths for what decoded JSON is made of (no ABC checks: no-op detection
    # compares whole rule lists on every step).
    if ta is str or tb is str:
        return ta is tb and a == b
    if ta is dict and tb is dict:
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if ta is list and tb is list:
        return len(a) == len(b) and all(map(_json_equal, a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


class PatchBuilder:
    """Accumulates a guarded, minimal JSON patch against one live object."""

    def __init__(self, live: Mapping[str, Any], *, guard_resource_version: bool = True) -> None:
        # Copy-on-write: nested containers stay shared with ``live`` until an edit touches them,
        # so planning a 500-route VirtualService does not deep-copy 500 routes.
        self._doc: JSON = dict(live)
        self._own: dict[int, Any] = {id(self._doc): self._doc}
        self._ops: list[JSON] = []
        self._edits = 0
        rv = resource_version(live) if guard_resource_version else None
        if rv is not None:
            self._ops.append({"op": "test", "path": RV_GUARD, "value": rv})

    # -- reading the working copy ---------------------------------------------------------

    @property
    def doc(self) -> JSON:
        """The object as it will be after the edits so far (treat as read-only)."""
        return self._doc

    def get(self, path: str, default: Any = _MISSING) -> Any:
        node: Any = self._doc
        for token in _split(path):
            if isinstance(node, Mapping) and token in node:
                node = node[token]
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                if default is _MISSING:
                    raise KeyError(path)
                return default
        return node

    def exists(self, path: str) -> bool:
        absent = object()
        return self.get(path, absent) is not absent

    # -- guards -----------------------------------------------------------------------------

    def test(self, path: str) -> None:
        """Guard: the value at ``path`` must still be what we read."""
        self._ops.append({"op": "test", "path": path, "value": copy.deepcopy(self.get(path))})

    def test_absent(self, path: str) -> None:
        """Guard: ``path`` must still be missing (or null), as it is in the working copy.

        RFC 6902 has no "absent" test; the Kubernetes API server's JSON patch (evanphx
        json-patch v4) passes a ``test`` with value ``null`` on a missing member, and
        :func:`apply_ops` does the same. It keeps an ``add`` of a new key from replacing one a
        concurrent writer added since our read, without the resourceVersion guard.
        """
        if self.exists(path) and self.get(path) is not None:
            raise ValueError(f"{path} exists: test_absent guards only missing members")
        self._ops.append({"op": "test", "path": path, "value": None})

    # -- edits ------------------------------------------------------------------------------

    def replace(self, path: str, value: Any) -> bool:
        current = self.get(path)
        if json_equal(current, value):
            return False
        self._emit({"op": "replace", "path": path, "value": copy.deepcopy(value)})
        return True

    def set(self, path: str, value: Any) -> bool:
        """Replace or add, creating missing parent objects; no-op when already equal."""
        if self.exists(path):
            return self.replace(path, value)
        tokens = _split(path)
        for depth in range(1, len(tokens)):
            parent = "".join("/" + escape(t) for t in tokens[:depth])
            if not self.exists(parent) or self.get(parent) is None:
                rest = tokens[depth:]
                nested: Any = copy.deepcopy(value)
                for token in reversed(rest):
                    nested = {token: nested}
                op = "replace" if self.exists(parent) else "add"
                self._emit({"op": op, "path": parent, "value": nested})
                return True
        self._emit({"op": "add", "path": path, "value": copy.deepcopy(value)})
        return True

    def add(self, path: str, value: Any) -> None:
        """Insert into a list (``.../3`` or ``.../-``) or add a new key."""
        self._emit({"op": "add", "path": path, "value": copy.deepcopy(value)})

    def remove(self, path: str) -> bool:
        if not self.exists(path):
            return False
        self._emit({"op": "remove", "path": path})
        return True

    def _own_path(self, path: str) -> None:
        """Shallow-copy each still-shared container from the root down to the op's parent."""
        node: Any = self._doc
        for token in _split(path)[:-1]:
            if isinstance(node, dict) and token in node:
                key: str | int = token
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                key = int(token)
            else:
                return
            child = node[key]
            if isinstance(child, (dict, list)) and id(child) not in self._own:
                child = copy.copy(child)
                node[key] = child
                self._own[id(child)] = child
            node = child

    def _emit(self, op: JSON) -> None:
        self._own_path(op["path"])
        if "from" in op:
            self._own_path(op["from"])
        if not self._apply_simple(op):
            jsonpatch.JsonPatch([op]).apply(self._doc, in_place=True)
        self._ops.append(op)
        if op["op"] != "test":
            self._edits += 1

    def _apply_simple(self, op: JSON) -> bool:
        """Apply a replace/add/remove whose parent exists, as RFC 6902 does (the builder's own
        ops, every step); False leaves anything else to ``jsonpatch`` (and its errors)."""
        kind = op["op"]
        if kind not in ("replace", "add", "remove"):
            return False
        tokens = _split(op["path"])
        if not tokens:
            return False
        parent: Any = self._doc
        for token in tokens[:-1]:
            if type(parent) is dict and token in parent:
                parent = parent[token]
            elif type(parent) is list and token.isdigit() and int(token) < len(parent):
                parent = parent[int(token)]
            else:
                return False
        last = tokens[-1]
        if type(parent) is dict:
            if kind == "add" or (last in parent):
                if kind == "remove":
                    del parent[last]
                else:
                    parent[last] = op["value"]
                return True
            return False
        if type(parent) is list:
            if kind == "add" and last == "-":
                parent.append(op["value"])
                return True
            if not (last.isdigit() and (last == "0" or not last.startswith("0"))):
                return False
            index = int(last)
            if kind == "add" and index <= len(parent):
                parent.insert(index, op["value"])
                return True
            if index < len(parent):
                if kind == "remove":
                    del parent[index]
                else:
                    parent[index] = op["value"]
                return True
        return False

    # -- result -----------------------------------------------------------------------------

    @property
    def changed(self) -> bool:
        return self._edits > 0

    def ops(self) -> tuple[JSON, ...]:
        if not self._edits:
            return ()
        # Guards after the last edit protect nothing; keep the patch minimal.
        last = max(i for i, op in enumerate(self._ops) if op["op"] != "test")
        return tuple(self._ops[: last + 1])

    def patch(self, ref: ObjectRef, reason: str) -> Patch | None:
        ops = self.ops()
        return Patch(ref, ops, reason) if ops else None


def _is_rv_guard(op: Mapping[str, Any]) -> bool:
    return bool(op["op"] == "test" and op["path"] == RV_GUARD)


def wire_ops(ops: Sequence[JSON], *, relaxed: bool = False) -> tuple[JSON, ...]:
    """The ops to send for a planned patch: every guard that can still fail, and no other.

    A ``test`` of the resourceVersion passes only on the exact object the plan was made from,
    where every identity and value guard passes too: sending them costs bytes and server work
    and protects nothing. ``relaxed`` drops the resourceVersion guard instead (a foreign writer
    changes unrelated fields faster than we can read and write), and then the identity and value
    guards are what keeps each edit in its place. A patch without a resourceVersion guard (an
    object that had none) keeps all of its guards.
    """
    if relaxed:
        return tuple(op for op in ops if not _is_rv_guard(op))
    if not any(_is_rv_guard(op) for op in ops):
        return tuple(ops)
    return tuple(op for op in ops if op["op"] != "test" or _is_rv_guard(op))


def apply_ops(doc: Mapping[str, Any], ops: Sequence[JSON]) -> JSON:
    """Apply ops to a copy with the API server's semantics (``test`` failures raise
    ``jsonpatch.JsonPatchTestFailed``): RFC 6902, plus a ``test`` with value ``null`` passes
    on a missing member whose parent exists (see :meth:`PatchBuilder.test_absent`)."""
    result: JSON = copy.deepcopy(dict(doc))
    pending: list[JSON] = []
    for op in ops:
        if op["op"] == "test" and op.get("value", 0) is None:
            result = (
                jsonpatch.JsonPatch(pending).apply(result, in_place=True) if pending else result
            )
            pending = []
            if not _absent(result, op["path"]):
                raise jsonpatch.JsonPatchTestFailed(f"{op['path']} is present (want absent)")
            continue
        pending.append(op)
    if pending:
        result = jsonpatch.JsonPatch(pending).apply(result, in_place=True)
    return result


def _absent(doc: Any, path: str) -> bool:
    """Missing or null, with the parent present (the server's rule for a ``null`` test)."""
    tokens = _split(path)
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, Mapping) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise jsonpatch.JsonPatchTestFailed(f"{path}: parent is missing")
    if not tokens:
        return doc is None
    last = tokens[-1]
    if isinstance(node, Mapping):
        return node.get(last) is None
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        return node[int(last)] is None
    return False


def inverse_ops(after: Mapping[str, Any], before: Mapping[str, Any]) -> list[JSON]:
    """Ops that take ``after`` back to ``before``, each guarded by a ``test`` of what it changes.

    Used to revert our own write. The guards name only the values we wrote -- not the
    resourceVersion -- so a foreign edit of *other* fields since our write does not block the
    revert, while a foreign edit of the same fields does (and is reported, never overwritten).
    """
    ops: list[JSON] = []
    work: JSON = copy.deepcopy(dict(after))
    for op in jsonpatch.make_patch(dict(after), dict(before)).patch:
        kind = op["op"]
        if kind in ("replace", "remove"):
            ops.append({"op": "test", "path": op["path"], "value": _at(work, op["path"])})
        elif kind in ("move", "copy"):
            ops.append({"op": "test", "path": op["from"], "value": _at(work, op["from"])})
        ops.append(op)
        jsonpatch.JsonPatch([op]).apply(work, in_place=True)
    return ops


def _at(doc: Any, path: str) -> Any:
    node = doc
    for token in _split(path):
        node = node[int(token)] if isinstance(node, list) else node[token]
    return copy.deepcopy(node)
