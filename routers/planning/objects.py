"""References to Kubernetes objects and read-only access to live ones.

Live objects are plain dicts (never partial models) so that every field we do not know survives.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from routers.model.selectors import LabelSelector

__all__ = [
    "LiveObjects",
    "ObjectRef",
    "SelectorRef",
    "get_annotations",
    "get_labels",
    "resource_version",
    "short_host",
    "uid",
]

JSON = dict[str, Any]


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
        return cls((ObjectRef.of(d, default_namespace), d) for d in docs)

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
