"""References to Kubernetes objects and read-only access to live ones.

Live objects are plain dicts (never partial models) so that every field we do not know survives.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias, Union

from routers.errors import PlanError

__all__ = [
    "LiveObjects",
    "ObjectRef",
    "Required",
    "Shape",
    "check_shapes",
    "get_annotations",
    "get_labels",
    "resource_version",
    "shape_problem",
    "short_host",
    "uid",
]

JSON = dict[str, Any]
Shape: TypeAlias = Union[Mapping[str, "Shape"], list["Shape"], type, tuple[type, ...], "Required"]
"""What a plugin relies on in a live object: ``{key: shape}`` a mapping whose listed keys, when
present, have their shapes and are not null (others are free; ``"*"`` stands for every key not
listed; ``Required(shape)`` for a key that must be there); ``[shape]`` a list of such items; a
type (or tuple of types) for anything else."""


@dataclass(frozen=True)
class Required:
    """A mapping key that must be present (and not null), with its shape."""

    shape: Shape


@dataclass(frozen=True, order=True)
class ObjectRef:
    """Identity of an object: group, kind, namespace, name. ``version`` is a preference only.

    Two refs that differ only in version name the same object (the API server converts), so
    equality and hashing ignore it.
    """

    group: str
    kind: str
    namespace: str | None
    name: str
    version: str | None = field(default=None, compare=False)

    @classmethod
    def of(cls, obj: Mapping[str, Any], default_namespace: str | None = None) -> ObjectRef:
        api_version = str(obj.get("apiVersion", ""))
        group, _, version = api_version.rpartition("/")
        meta = obj.get("metadata") or {}
        return cls(
            group=group,
            kind=str(obj.get("kind", "")),
            namespace=meta.get("namespace") or default_namespace,
            name=str(meta.get("name", "")),
            version=version or None,
        )

    @property
    def api_version(self) -> str | None:
        if self.version is None:
            return None
        return f"{self.group}/{self.version}" if self.group else self.version

    def with_version(self, version: str) -> ObjectRef:
        return ObjectRef(self.group, self.kind, self.namespace, self.name, version)

    def __str__(self) -> str:
        kind = f"{self.kind}.{self.group}" if self.group else self.kind
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{kind} {ns}{self.name}"


class LiveObjects(Mapping[ObjectRef, JSON]):
    """What the core read for a plan. Absent refs are objects that do not exist (yet)."""

    def __init__(
        self, objects: Iterable[tuple[ObjectRef, JSON]] = (), absent: Iterable[ObjectRef] = ()
    ) -> None:
        self._objects: dict[ObjectRef, JSON] = dict(objects)
        self.absent: frozenset[ObjectRef] = frozenset(absent) - self._objects.keys()
        """Refs read and found missing: a caller can hand them back as known-absent."""

    @classmethod
    def from_manifests(
        cls, docs: Iterable[JSON], default_namespace: str | None = None
    ) -> LiveObjects:
        return cls((ObjectRef.of(d, default_namespace), d) for d in docs)

    def __getitem__(self, ref: ObjectRef) -> JSON:
        return self._objects[ref]

    def __iter__(self) -> Iterator[ObjectRef]:
        return iter(self._objects)

    def __len__(self) -> int:
        return len(self._objects)

    def of_kind(self, group: str, kind: str) -> list[tuple[ObjectRef, JSON]]:
        return [(r, o) for r, o in self._objects.items() if r.group == group and r.kind == kind]

    def known(self) -> dict[ObjectRef, JSON | None]:
        """Everything known, missing objects as ``None`` (what ``live=`` accepts)."""
        out: dict[ObjectRef, JSON | None] = dict.fromkeys(self.absent)
        out.update(self._objects)
        return out

    def merged(self, more: Mapping[ObjectRef, JSON]) -> LiveObjects:
        combined = dict(self._objects)
        combined.update(more)
        return LiveObjects(combined.items())


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def get_annotations(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return _meta(obj).get("annotations") or {}


def get_labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return _meta(obj).get("labels") or {}


def resource_version(obj: Mapping[str, Any]) -> str | None:
    rv = _meta(obj).get("resourceVersion")
    return str(rv) if rv else None


def uid(obj: Mapping[str, Any]) -> str | None:
    value = _meta(obj).get("uid")
    return str(value) if value else None


def short_host(host: str, namespace: str | None) -> str:
    """A Service's cluster DNS name (``svc.ns``, ``svc.ns.svc``, ``svc.ns.svc.cluster.local``) as
    its short name when it lives in ``namespace``; any other host unchanged."""
    parts = host.split(".")
    if (
        namespace
        and len(parts) >= 2
        and parts[1] == namespace
        and ".".join(parts[2:]) in ("", "svc", "svc.cluster.local")
    ):
        return parts[0]
    return host


def shape_problem(value: Any, shape: Shape, path: str = "") -> str | None:
    """Where ``value`` lacks ``shape``, as ``"spec.rules[2] is not a mapping"``; None if it fits.

    Offline, live objects come from files that no API server validated; a plugin states the
    structure it reads once, checks it before planning and reports a malformed object as a
    typed error instead of crashing on it.
    """
    if isinstance(shape, Mapping):
        if not isinstance(value, Mapping):
            return f"{path or 'the object'} is not a mapping"
        for key, wanted in shape.items():
            if isinstance(wanted, Required) and value.get(key) is None:
                return f"{f'{path}.{key}' if path else key} is missing"
        rest = shape.get("*")
        for key, item in value.items():
            inner = shape.get(key, rest) if key != "*" else rest
            if inner is None:
                continue
            where = f"{path}.{key}" if path else str(key)
            if item is None:
                # The API server prunes nulls of non-nullable fields: a reader never sees one.
                return f"{where} is null (omit the field instead)"
            problem = shape_problem(item, inner, where)
            if problem is not None:
                return problem
        return None
    if isinstance(shape, list):
        if not isinstance(value, list):
            return f"{path} is not a list"
        for i, item in enumerate(value):
            problem = shape_problem(item, shape[0], f"{path}[{i}]")
            if problem is not None:
                return problem
        return None
    if isinstance(shape, Required):  # a list item or the top level: required anyway
        return shape_problem(value, shape.shape, path)
    types = shape if isinstance(shape, tuple) else (shape,)
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        names = " or ".join(t.__name__ for t in types)
        return f"{path} is not a {names}"
    return None


def check_shapes(plugin: str, live: LiveObjects, shapes: Mapping[tuple[str, str], Shape]) -> None:
    """Refuse the first object of ``live`` whose ``(group, kind)`` has a shape it lacks."""
    for ref, obj in live.items():
        shape = shapes.get((ref.group, ref.kind))
        problem = shape_problem(obj, shape) if shape is not None else None
        if problem is not None:
            raise PlanError(f"malformed {ref.kind}: {problem}", plugin=plugin, obj=str(ref))
