"""Resource-level operations over the transport: discovery, get, create, JSON patch, delete.

Objects are addressed by :class:`ObjectRef`; the version is the ref's own when the server serves
it, else the group's preferred version. Discovery is cached per instance (groups and resource
lists change only when CRDs are installed; a miss refreshes once).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from routers.cluster._transport import ApiStatus, Transport
from routers.planning.objects import JSON, ObjectRef, SelectorRef

__all__ = ["FIELD_MANAGER", "Kube", "ResourceInfo"]

FIELD_MANAGER = "canary-routers"


@dataclass(frozen=True)
class ResourceInfo:
    group: str
    version: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None, name: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced:
            base += f"/namespaces/{quote(namespace or 'default', safe='')}"
        base += f"/{self.plural}"
        return base + (f"/{quote(name, safe='')}" if name else "")

    def collection(self, namespace: str | None) -> str:
        """Where to list or watch: one namespace, or every namespace when ``None``."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{quote(namespace, safe='')}"
        return f"{base}/{self.plural}"

    @property
    def resource(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


class Kube:
    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._lock = threading.Lock()
        self._groups: dict[str, tuple[str, ...]] | None = None
        self._resources: dict[tuple[str, str], dict[str, tuple[str, bool]]] = {}

    # -- discovery ------------------------------------------------------------------------------

    def served_groups(self, *, refresh: bool = False) -> dict[str, tuple[str, ...]]:
        """API group -> served versions, preferred first ("" is the core group)."""
        with self._lock:
            if self._groups is None or refresh:
                groups: dict[str, tuple[str, ...]] = {"": ("v1",)}
                for g in (self.transport.request("GET", "/apis") or {}).get("groups", []):
                    preferred = (g.get("preferredVersion") or {}).get("version")
                    versions = [v["version"] for v in g.get("versions", [])]
                    ordered = ([preferred] if preferred else []) + [
                        v for v in versions if v != preferred
                    ]
                    groups[g["name"]] = tuple(ordered)
                self._groups = groups
            return dict(self._groups)

    def _resource_list(self, group: str, version: str) -> dict[str, tuple[str, bool]]:
        key = (group, version)
        with self._lock:
            cached = self._resources.get(key)
        if cached is not None:
            return cached
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        data = self.transport.request("GET", path) or {}
        kinds = {
            r["kind"]: (r["name"], bool(r.get("namespaced")))
            for r in data.get("resources", [])
            if "/" not in r["name"]
        }
        with self._lock:
            self._resources[key] = kinds
        return kinds

    def resource(self, ref: ObjectRef) -> ResourceInfo:
        groups = self.served_groups()
        versions = groups.get(ref.group)
        if versions is None:
            versions = self.served_groups(refresh=True).get(ref.group)
        if not versions:
            raise ApiStatus(
                404,
                "NotFound",
                f"API group {ref.group or 'core'!r} is not served (is its CRD installed?)",
            )
        # A kind may be served by only some versions of its group (TCPRoute: v1alpha2 only on
        # older Gateway API bundles), so the version is chosen per kind: the ref's own first.
        order = ([ref.version] if ref.version in versions else []) + [
            v for v in versions if v != ref.version
        ]
        for refresh in (False, True):
            for version in order:
                if refresh:
                    with self._lock:
                        self._resources.pop((ref.group, version), None)
                kinds = self._resource_list(ref.group, version)
                if ref.kind in kinds:
                    plural, namespaced = kinds[ref.kind]
                    return ResourceInfo(ref.group, version, plural, namespaced)
        raise ApiStatus(
            404,
            "NotFound",
            f"kind {ref.kind} is not served by {ref.group or 'core'} in any of {', '.join(versions)}",
        )

    # -- objects ----------------------------------------------------------------------------------

    def get(self, ref: ObjectRef) -> JSON | None:
        try:
            info = self.resource(ref)
        except ApiStatus as exc:
            if exc.code == 404:
                return None  # the API is not served, so no such object can exist
            raise
        try:
            obj: JSON = self.transport.request("GET", info.path(ref.namespace, ref.name))
        except ApiStatus as exc:
            if exc.code == 404:
                return None
            raise
        return obj

    def list_selected(self, selector: SelectorRef) -> list[JSON]:
        """Every object of the selector's kind in its namespace whose labels match: one LIST
        request (``labelSelector``), paged by 500. Items come back with ``apiVersion`` and
        ``kind`` set, as a GET returns them."""
        try:
            info = self.resource(
                ObjectRef(selector.group, selector.kind, selector.namespace, "", selector.version)
            )
        except ApiStatus as exc:
            if exc.code == 404:
                return []  # the API is not served, so nothing can match
            raise
        items: list[JSON] = []
        token: str | None = None
        while True:
            query = [("labelSelector", selector.query)] if selector.query else []
            query.append(("limit", "500"))
            if token:
                query.append(("continue", token))
            data = self.transport.request("GET", info.path(selector.namespace), query=query) or {}
            for item in data.get("items") or []:
                item.setdefault("apiVersion", info.api_version)
                item.setdefault("kind", selector.kind)
                items.append(item)
            token = (data.get("metadata") or {}).get("continue") or None
            if token is None:
                return items

    def crd(self, name: str) -> JSON | None:
        try:
            obj: JSON = self.transport.request(
                "GET",
                f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{quote(name, safe='')}",
            )
        except ApiStatus as exc:
            if exc.code == 404:
                return None
            raise
        return obj

    def _write_query(self, dry_run: bool, *, validate: bool = True) -> list[tuple[str, str]]:
        q = [("fieldManager", FIELD_MANAGER)]
        if validate:
            q.append(("fieldValidation", "Strict"))
        if dry_run:
            q.append(("dryRun", "All"))
        return q

    def create(self, ref: ObjectRef, body: JSON, *, dry_run: bool = False) -> JSON:
        info = self.resource(ref)
        obj: JSON = self.transport.request(
            "POST", info.path(ref.namespace), query=self._write_query(dry_run), body=body
        )
        return obj

    def json_patch(self, ref: ObjectRef, ops: Sequence[JSON], *, dry_run: bool = False) -> JSON:
        info = self.resource(ref)
        # fieldValidation=Strict looks for unknown or duplicate fields; a patch that only
        # replaces scalars cannot add any, and skipping it saves the server real work per step.
        validate = any(
            op["op"] in ("add", "copy", "move") or isinstance(op.get("value"), (dict, list))
            for op in ops
            if op["op"] != "test"
        )
        obj: JSON = self.transport.request(
            "PATCH",
            info.path(ref.namespace, ref.name),
            query=self._write_query(dry_run, validate=validate),
            body=list(ops),
            content_type="application/json-patch+json",
        )
        return obj

    def delete(
        self,
        ref: ObjectRef,
        *,
        uid: str | None,
        resource_version: str | None,
        dry_run: bool = False,
    ) -> None:
        info = self.resource(ref)
        preconditions = {
            k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v
        }
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": preconditions,
        }
        query = [("dryRun", "All")] if dry_run else []
        self.transport.request("DELETE", info.path(ref.namespace, ref.name), query=query, body=body)
