"""The HTTPRouteGroup that carries our header routes (v1alpha3/v1alpha4 ``spec.matches``).

One group per TrafficSplit, created and owned by us. Each request match of each header route is
one entry named ``<route>-<i>`` (conditions inside an entry are ANDed, entries ORed -- the same
semantics as our model). Header values and paths are regexes in SMI; literals become escaped,
anchored regexes that mean the same under full-match engines (Envoy) and search engines (Go).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from routers.model import HeaderRoute, RequestMatch
from routers.planning.matching import to_regex
from routers.planning.objects import JSON, ObjectRef
from routers.planning.ownership import OwnerLedger, empty_ledger, owner_metadata, read_ledger
from routers.planning.patch import PatchBuilder, json_equal, pointer
from routers.planning.plan import Create, Patch
from routers_smi.config import ROUTE_GROUP_KIND, SPECS_GROUP, HeadersShape

__all__ = [
    "build_entries",
    "create_group",
    "entry_route",
    "group_ledger",
    "patch_group",
    "routes_in_group",
]

_MANAGED_KEYS = ("headers", "pathRegex", "methods")


def _entry(route: str, index: int, match: RequestMatch, shape: HeadersShape) -> JSON:
    entry: JSON = {"name": f"{route}-{index}"}
    # Header names compare case-insensitively (RFC 9110) and HTTP/2 sends them lower-cased.
    headers = [(h.name.lower(), to_regex(h.kind, h.value)) for h in match.headers]
    if headers:
        entry["headers"] = dict(headers) if shape == "map" else [{k: v} for k, v in headers]
    if match.path is not None:
        entry["pathRegex"] = to_regex(match.path.kind, match.path.value)
    if match.method is not None:
        entry["methods"] = [match.method.value]
    return entry


def build_entries(routes: Sequence[HeaderRoute], shape: HeadersShape) -> list[JSON]:
    return [
        _entry(route.name, i, match, shape)
        for route in routes
        for i, match in enumerate(route.matches)
    ]


def entry_route(name: Any) -> str | None:
    """The route an entry name belongs to (``canary-beta-1`` -> ``canary-beta``)."""
    if not isinstance(name, str):
        return None
    route, sep, index = name.rpartition("-")
    return route if sep and route and index.isdigit() else None


def group_ledger(
    group: Mapping[str, Any], owner: str, ours: Collection[str], what: str
) -> OwnerLedger:
    """The group's ledger as this owner sees it; an ownerless one (written before per-owner
    ledgers) is this owner's when the group is one it names (``ours``: its configured group and
    the groups its TrafficSplit entries reference)."""
    name = (group.get("metadata") or {}).get("name")
    return read_ledger(group, owner, lambda _k, _n: name in ours, what=what)


def routes_in_group(group: Mapping[str, Any], view: OwnerLedger) -> list[str]:
    """Header routes the group expresses: listed in this owner's entries and present."""
    listed = view.names("headerRoutes")
    matches = (group.get("spec") or {}).get("matches")
    present = (
        {entry_route(m.get("name")) for m in matches if isinstance(m, Mapping)}
        if isinstance(matches, list)
        else set()
    )
    return [r for r in listed if r in present]


def _ledger(routes: Sequence[HeaderRoute]) -> dict[str, list[str]]:
    return {"headerRoutes": sorted(r.name for r in routes)}


def create_group(
    ref: ObjectRef,
    version: str,
    routes: Sequence[HeaderRoute],
    shape: HeadersShape,
    plugin: str,
    owner: str,
) -> Create:
    meta = owner_metadata(plugin)
    meta["annotations"].update(empty_ledger(owner).annotation(_ledger(routes)))
    body: JSON = {
        "apiVersion": f"{SPECS_GROUP}/{version}",
        "kind": ROUTE_GROUP_KIND,
        "metadata": {"name": ref.name, "namespace": ref.namespace, **meta},
        "spec": {"matches": build_entries(routes, shape)},
    }
    names = ", ".join(r.name for r in routes)
    return Create(ref, body, f"create the HTTPRouteGroup for header route(s) {names}")


def patch_group(
    ref: ObjectRef,
    live: Mapping[str, Any],
    routes: Sequence[HeaderRoute],
    shape: HeadersShape,
    view: OwnerLedger,
) -> Patch | None:
    """Bring our group's entries to the wanted ones, keeping fields we do not manage."""
    b = PatchBuilder(live)
    wanted = build_entries(routes, shape)
    current = b.get("/spec/matches", None)
    names_now = (
        [m.get("name") if isinstance(m, Mapping) else None for m in current]
        if isinstance(current, list)
        else None
    )
    if names_now != [e["name"] for e in wanted]:
        # A different set or order of entries: the list is ours, replace it as a whole.
        b.set("/spec/matches", wanted)
    else:
        for i, entry in enumerate(wanted):
            base = pointer("spec", "matches", i)
            fields = [(k, entry.get(k)) for k in _MANAGED_KEYS]
            if all(json_equal(b.get(f"{base}/{k}", None), v) for k, v in fields):
                continue
            b.test(f"{base}/name")
            for key, value in fields:
                if value is None:
                    b.remove(f"{base}/{key}")
                else:
                    b.set(f"{base}/{key}", value)
    view.write(b, _ledger(routes))
    names = ", ".join(r.name for r in routes)
    return b.patch(ref, f"update the HTTPRouteGroup of header route(s) {names}")
