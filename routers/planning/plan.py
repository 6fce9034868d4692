"""A plan: ordered Create / Patch / Delete operations, each with the reason it exists.

Plans are data. The offline applier and the cluster layer execute the same plan, so what
``routers plan`` prints is exactly what ``routers apply`` sends.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from routers.planning.objects import JSON, ObjectRef

__all__ = ["Create", "Delete", "Note", "Operation", "Patch", "Plan"]


@dataclass(frozen=True)
class Create:
    ref: ObjectRef
    body: JSON
    reason: str
    verb: Literal["create"] = "create"


@dataclass(frozen=True)
class Patch:
    """An RFC 6902 JSON patch. Its first ops are ``test`` guards (resourceVersion, identities)."""

    ref: ObjectRef
    ops: tuple[JSON, ...]
    reason: str
    verb: Literal["patch"] = "patch"

    @property
    def edits(self) -> tuple[JSON, ...]:
        return tuple(op for op in self.ops if op["op"] != "test")

    @property
    def guards(self) -> tuple[JSON, ...]:
        return tuple(op for op in self.ops if op["op"] == "test")


@dataclass(frozen=True)
class Delete:
    """Delete guarded by uid (and resourceVersion when known): never someone else's object."""

    ref: ObjectRef
    uid: str | None
    resource_version: str | None
    reason: str
    verb: Literal["delete"] = "delete"


Operation = Create | Patch | Delete


@dataclass(frozen=True)
class Note:
    """Something the user should know that is not an error (e.g. weight rounding)."""

    plugin: str
    message: str
    level: Literal["info", "warning"] = "info"


@dataclass(frozen=True)
class Plan:
    plugin: str
    operations: tuple[Operation, ...] = ()
    notes: tuple[Note, ...] = field(default=())

    def __iter__(self) -> Iterator[Operation]:
        return iter(self.operations)

    def __len__(self) -> int:
        return len(self.operations)

    @property
    def empty(self) -> bool:
        return not self.operations

    @classmethod
    def of(cls, plugin: str, ops: Sequence[Operation | None], notes: Sequence[Note] = ()) -> Plan:
        """Build a plan, dropping ``None`` entries (unchanged objects)."""
        return cls(plugin, tuple(op for op in ops if op is not None), tuple(notes))

    def to_data(self) -> list[dict[str, Any]]:
        """Wire form for ``-o patch``: one entry per operation."""
        out: list[dict[str, Any]] = []
        for op in self.operations:
            entry: dict[str, Any] = {
                "plugin": self.plugin,
                "verb": op.verb,
                "apiVersion": op.ref.api_version,
                "kind": op.ref.kind,
                "namespace": op.ref.namespace,
                "name": op.ref.name,
                "reason": op.reason,
            }
            if isinstance(op, Patch):
                entry["patch"] = list(op.ops)
            elif isinstance(op, Create):
                entry["body"] = op.body
            else:
                entry["preconditions"] = {
                    k: v
                    for k, v in (("uid", op.uid), ("resourceVersion", op.resource_version))
                    if v
                }
            out.append({k: v for k, v in entry.items() if v is not None})
        return out
