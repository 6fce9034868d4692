"""References to Kubernetes objects and read-only access to live ones.

Live objects are plain dicts (never partial models) so that every field we do not know survives.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, TypeAlias, TypeVar, Union

from routers.errors import PlanError
from routers.model._validators import is_dns_label, is_path_segment_name
from routers.model.selectors import LabelSelector

__all__ = [
    "IdentityMemo",
    "LiveObjects",
    "ObjectRef",
    "Required",
    "SelectorRef",
    "Shape",
    "check_shapes",
    "get_annotations",
    "get_labels",
    "resource_version",
    "shape_problem",
    "short_host",
    "uid",
    "without_nulls",
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


@dataclass(frozen=True, order=True)
class SelectorRef:
    """Every object of a kind in a namespace whose labels match ``selector``: a target a plugin
    cannot name (Argo's ``httpRouteSelector``). The core lists them (offline: among the
    manifests; on a cluster: one LIST call) and hands them over in ``LiveObjects``."""

    group: str
    kind: str
    namespace: str
    selector: LabelSelector = field(compare=False)
    version: str | None = field(default=None, compare=False)
    query: str = field(default="", init=False)
    """The selector's ``labelSelector`` form: its identity (equal selectors list the same)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "query", self.selector.query())

    def matches(self, ref: ObjectRef, obj: Mapping[str, Any]) -> bool:
        return (ref.group, ref.kind, ref.namespace) == (
            self.group,
            self.kind,
            self.namespace,
        ) and self.selector.matches(get_labels(obj))

    def __str__(self) -> str:
        kind = f"{self.kind}.{self.group}" if self.group else self.kind
        return f"{kind} in {self.namespace} with labels {self.selector.describe()}"


class LiveObjects(Mapping[ObjectRef, JSON]):
    """What the core read for a plan. Absent refs are objects that do not exist (yet)."""

    def __init__(
        self,
        objects: Iterable[tuple[ObjectRef, JSON]] = (),
        absent: Iterable[ObjectRef] = (),
        listed: Iterable[SelectorRef] = (),
    ) -> None:
        self._objects: dict[ObjectRef, JSON] = dict(objects)
        self.absent: frozenset[ObjectRef] = frozenset(absent) - self._objects.keys()
        """Refs read and found missing: a caller can hand them back as known-absent."""
        self.listed: frozenset[SelectorRef] = frozenset(listed)
        """Selectors the core listed: every object they match is among the objects."""

    @classmethod
    def from_manifests(
        cls, docs: Iterable[JSON], default_namespace: str | None = None
    ) -> LiveObjects:
        """Objects read from files, as the API server would have stored them (nulls dropped);
        a name or namespace no API server would hold is a :class:`PlanError`."""
        out: list[tuple[ObjectRef, JSON]] = []
        for d in docs:
            ref = ObjectRef.of(d, default_namespace)
            meta = d.get("metadata") or {}
            where = f"malformed {ref.kind} in the manifests: metadata"
            if meta.get("namespace") and not is_dns_label(str(meta["namespace"])):
                raise PlanError(
                    f"{where}.namespace {meta['namespace']!r} is not a valid namespace "
                    "(DNS-1123 label)"
                )
            if ref.name and not is_path_segment_name(ref.name):
                raise PlanError(
                    f"{where}.name {ref.name!r} is not a valid object name (no '/', '%' or "
                    "control characters, not '.' or '..', at most 253 characters)"
                )
            out.append((ref, without_nulls(d)))
        return cls(out)

    def select(self, selector: SelectorRef) -> list[tuple[ObjectRef, JSON]]:
        """The objects ``selector`` matches, by name (a complete answer only once it is in
        :attr:`listed`; use :meth:`selected` in plugins)."""
        return sorted(
            ((r, o) for r, o in self._objects.items() if selector.matches(r, o)),
            key=lambda item: item[0],
        )

    def selected(self, selector: SelectorRef) -> list[tuple[ObjectRef, JSON]] | None:
        """What ``selector`` matches, or ``None`` while the core has not listed it yet."""
        return self.select(selector) if selector in self.listed else None

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
        return LiveObjects(combined.items(), listed=self.listed)


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


def without_nulls(obj: JSON) -> JSON:
    """``obj`` without its null mapping values, at any depth.

    The API server prunes a null it is sent for a field (kubectl apply of ``matches:`` with
    nothing after it, as Argo's own Gateway API guides write) and applies the field's default, so
    no reader of a cluster sees one; read offline, such a manifest reads the same way instead of
    failing the shape checks (which refuse a null where a plugin relies on a value).
    """
    return {k: _pruned(v) for k, v in obj.items() if v is not None}


def _pruned(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _pruned(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def shape_problem(value: Any, shape: Shape, path: str = "") -> str | None:
    """Where ``value`` lacks ``shape``, as ``"spec.rules[2] is not a mapping"``; None if it fits.

    Offline, live objects come from files that no API server validated; a plugin states the
    structure it reads once, checks it before planning and reports a malformed object as a
    typed error instead of crashing on it. Every plan walks its whole objects this way, so the
    walk builds no path text unless it finds a problem (it was most of a steady step's CPU).
    """
    found = _walk(value, shape, _FIELDS)
    if found is None:
        return None
    trail, problem = found
    where = path + "".join(reversed(trail))
    if not path and where.startswith("."):
        where = where[1:]
    if problem == _NOT_A_MAPPING and not where:
        return f"the object {problem}"
    return f"{where} {problem}"


_NOT_A_MAPPING = "is not a mapping"
_Found: TypeAlias = tuple[list[str], str]
"""A problem's place (``.key`` and ``[i]`` steps, innermost first, appended on the way out) and
what is wrong there."""


def _walk(
    value: Any, shape: Shape, memo: IdentityMemo[_Found | None] | None = None
) -> _Found | None:
    # Plain isinstance checks only (an ABC check costs ten times more), the leaf case first.
    # ``memo``: look each field of this mapping up there first (the top level of an object).
    if isinstance(shape, (type, tuple)):
        types = shape if isinstance(shape, tuple) else (shape,)
        if not isinstance(value, types) or (type(value) is bool and bool not in types):
            return [], f"is not a {' or '.join(t.__name__ for t in types)}"
        return None
    if isinstance(shape, list):
        if not isinstance(value, list):
            return [], "is not a list"
        inner = shape[0]
        for i, item in enumerate(value):
            found = _walk(item, inner)
            if found is not None:
                found[0].append(f"[{i}]")
                return found
        return None
    if isinstance(shape, Required):  # a list item or the top level: required anyway
        return _walk(value, shape.shape)
    if type(value) is not dict and not isinstance(value, Mapping):
        return [], _NOT_A_MAPPING
    for key, wanted in shape.items():
        if isinstance(wanted, Required) and value.get(key) is None:
            return [f".{key}"], "is missing"
    rest = shape.get("*")
    for key, item in value.items():
        wanted_here = shape.get(key, rest) if key != "*" else rest
        if wanted_here is None:
            continue
        if item is None:
            # The API server prunes nulls of non-nullable fields: a reader never sees one.
            return [f".{key}"], "is null (omit the field instead)"
        if memo is None:
            found = _walk(item, wanted_here)
        else:
            found = memo.get((item, wanted_here), partial(_walk, item, wanted_here))
            found = None if found is None else (list(found[0]), found[1])  # the memo's stays
        if found is not None:
            found[0].append(f".{key}")
            return found
    return None


def check_shapes(plugin: str, live: LiveObjects, shapes: Mapping[tuple[str, str], Shape]) -> None:
    """Refuse the first object of ``live`` whose ``(group, kind)`` has a shape it lacks.

    One step hands the same object to targets() (twice while gathering) and plan(), and a
    300-path Ingress takes about 1 ms per walk, so an object already found to fit this very
    shape is not walked again (:class:`IdentityMemo`). Identity, not uid and resourceVersion:
    a file from ``kubectl get`` edited by hand keeps both (the CLI fuzz campaign found exactly
    that), and a plugin may check one object against a looser shape in targets() than in plan().
    """
    for ref, obj in live.items():
        shape = shapes.get((ref.group, ref.kind))
        if shape is None:
            continue
        problem = _FITS.get((obj, shape), partial(shape_problem, obj, shape))
        if problem is not None:
            raise PlanError(f"malformed {ref.kind}: {problem}", plugin=plugin, obj=str(ref))


T = TypeVar("T")


class IdentityMemo(Generic[T]):
    """What a pure function computed from read-only plan inputs, remembered by the inputs'
    identity: one step hands the same live objects to targets() (twice while gathering),
    plan() and observe(), and some derivations walk a whole object (every path of a 300-path
    Ingress). "The same" means these very objects, never equal ones (a dict may be edited in
    place by its owner before it is handed over again; plan inputs are read-only once handed
    over). Entries hold their inputs, so no id is reused while remembered; at most ``limit``
    are kept, the oldest dropped first. Errors are not remembered.
    """

    def __init__(self, limit: int = 64) -> None:
        self._limit = limit
        self._entries: dict[tuple[int, ...], tuple[tuple[object, ...], T]] = {}
        self._lock = threading.Lock()

    def get(self, inputs: tuple[object, ...], compute: Callable[[], T]) -> T:
        key = tuple(map(id, inputs))
        found = self._entries.get(key)  # one dict operation: no lock needed to read
        if found is not None and all(a is b for a, b in zip(found[0], inputs, strict=True)):
            return found[1]
        value = compute()
        with self._lock:
            self._entries[key] = (inputs, value)
            while len(self._entries) > self._limit:
                del self._entries[next(iter(self._entries))]
        return value


_FITS: IdentityMemo[str | None] = IdentityMemo()
"""(object, shape) pairs walked, with the problem found (None: it fits)."""
_FIELDS: IdentityMemo[_Found | None] = IdentityMemo(256)
"""(top-level field, its shape) pairs walked. A write response shares the fields the write
did not change with the object it was planned from (``share_unchanged``), so the next step
walks only what changed: the metadata of a canary Ingress, not its 300 paths again."""
