"""Reading VirtualServices: which routes are selected, which destination is whose.

Everything here is read-only over plain dicts; planning (``plugin.py``) turns the result into
guarded edits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from routers.errors import ConfigError, PlanError, Problem, TargetNotFoundError
from routers.planning.objects import JSON, LiveObjects, ObjectRef
from routers.planning.ownership import OwnerLedger, read_ledger
from routers_istio.config import GROUP, VERSION, IstioConfig, VirtualServiceTarget
from routers_istio.hosts import canonical, same_host

__all__ = [
    "Context",
    "Dest",
    "Owned",
    "Selected",
    "Target",
    "classify",
    "copy_name",
    "dest_keys",
    "ledger_view",
    "managed_name",
    "managed_routes",
    "owned_routes",
    "resolve",
    "route_label",
]

PLUGIN = "istio"

Role = Literal["stable", "canary", "additional", "foreign"]
Kind = Literal["http", "tls", "tcp"]


@dataclass(frozen=True)
class Dest:
    index: int
    role: Role
    service: str | None
    weight: int
    stale: bool = False
    """An additional destination we added in the other form (host-level vs subset) than the
    state now asks for: ours, to be replaced."""


@dataclass(frozen=True)
class Selected:
    kind: Kind
    index: int
    label: str
    """``http[primary]`` / ``tls[0]``: how messages and observations name the route."""


@dataclass
class Target:
    """A VirtualService we write into (a configured one, or the delegate it hands off to)."""

    ref: ObjectRef
    obj: JSON
    path: str
    selected: list[Selected] = field(default_factory=list)

    @property
    def namespace(self) -> str | None:
        return self.ref.namespace

    @property
    def primary(self) -> Selected | None:
        """The first selected http route; without one there is nowhere to put managed routes."""
        return next((s for s in self.selected if s.kind == "http"), None)

    def describe(self) -> str:
        return f"VirtualService {self.ref.namespace}/{self.ref.name}"


Style = Literal["host", "subset", "any"]


@dataclass(frozen=True)
class Context:
    """Who is who: the Services, the DestinationRule host, the additional services."""

    config: IstioConfig
    additional: Mapping[str, Style] = field(default_factory=dict)
    """Services whose destinations count as additional, and how they are expressed: a
    host-level destination, a DestinationRule subset named after the Service (it carries a
    pod-template hash), or either (recorded in a ledger, no longer in the state)."""
    dr_host: str | None = None
    dr_namespace: str | None = None
    added: frozenset[str] = frozenset()
    """Additional services whose destinations we appended (this owner's ledger entries)."""

    def with_ledger(self, view: OwnerLedger) -> Context:
        extra: dict[str, Style] = dict(self.additional)
        for key in ("destinations", "weights"):
            for svc in view.names(key):
                extra.setdefault(svc, "any")
        added = frozenset(view.names("destinations"))
        return Context(self.config, extra, self.dr_host, self.dr_namespace, added)

    def split(self) -> dict[str, str]:
        """This owner's stable and canary destinations as ledger keys (see :func:`dest_keys`)."""
        cfg = self.config
        dr = cfg.section.destination_rule
        if dr is not None and self.dr_host is not None:
            host = canonical(self.dr_host, self.dr_namespace)
            return {
                "stable": f"{host}#{dr.stable_subset_name}",
                "canary": f"{host}#{dr.canary_subset_name}",
            }
        stable, canary = cfg.stable_service, cfg.canary_service
        if stable is None or canary is None:  # subset level, DestinationRule unread: no split
            return {}
        return {
            "stable": canonical(stable, cfg.namespace),
            "canary": canonical(canary, cfg.namespace),
        }


def dest_keys(route: Mapping[str, Any], namespace: str | None) -> set[str]:
    """Every destination of a route as ledger keys: ``name.namespace`` and, with a subset,
    ``name.namespace#subset`` (so host-level and subset-level splits both match)."""
    out: set[str] = set()
    entries = route.get("route")
    for entry in entries if isinstance(entries, list) else []:
        dest = entry.get("destination") if isinstance(entry, Mapping) else None
        if not isinstance(dest, Mapping) or not isinstance(dest.get("host"), str):
            continue
        host = canonical(dest["host"], namespace)
        out.add(host)
        if isinstance(dest.get("subset"), str):
            out.add(f"{host}#{dest['subset']}")
    return out


def _http(obj: Mapping[str, Any]) -> list[Any]:
    spec = obj.get("spec") or {}
    routes = spec.get("http") if isinstance(spec, Mapping) else None
    return routes if isinstance(routes, list) else []


def _list(obj: Mapping[str, Any], kind: str) -> list[Any]:
    spec = obj.get("spec") or {}
    routes = spec.get(kind) if isinstance(spec, Mapping) else None
    return routes if isinstance(routes, list) else []


def route_label(kind: str, route: Mapping[str, Any], index: int) -> str:
    name = route.get("name") if kind == "http" else None
    return f"{kind}[{name}]" if isinstance(name, str) and name else f"{kind}[{index}]"


_COPY = re.compile(r"(?P<base>.+)\.(?P<n>[1-9][0-9]*)")


def copy_name(route: str, k: int) -> str:
    """Istio name of the ``k``-th (0-based) http route generated for managed route ``route``.

    A managed route gets one Istio route per selected http route it overlaps; managed route
    names are DNS-1123 labels, so the ``.n`` suffix never collides with another one.
    """
    return route if k == 0 else f"{route}.{k + 1}"


def managed_name(name: str) -> str:
    """The managed route an Istio route name of ours stands for (inverse of :func:`copy_name`)."""
    m = _COPY.fullmatch(name)
    return m["base"] if m is not None and int(m["n"]) >= 2 else name


class Owned:
    """A set of managed route names: ledger entries, ``managedRoutes`` (Argo's rule) and the
    copies (``<name>.<n>``) of the ``managedRoutes`` entries."""

    def __init__(self, names: Iterable[str], bases: Iterable[str]) -> None:
        self.names = frozenset(names)
        self.bases = frozenset(bases)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if name in self.names:
            return True
        base = managed_name(name)
        return base != name and base in self.bases

    def with_names(self, names: Iterable[str]) -> Owned:
        return Owned(self.names | frozenset(names), self.bases)


def owned_routes(view: OwnerLedger, config: IstioConfig) -> Owned:
    """Routes this owner may remove or rewrite: its ledger entries, plus the ``managedRoutes``
    names (and their copies) no other owner holds."""
    held = view.held("routes")
    bases = [n for n in config.managed_order if n not in held]
    return Owned({*view.names("routes"), *bases}, bases)


def managed_routes(view: OwnerLedger, config: IstioConfig) -> Owned:
    """Routes managed by anyone (every owner, ownerless entries, ``managedRoutes``): never a
    primary, and invisible when placing an owner's routes right before its primaries."""
    return Owned(view.everyone("routes") | set(config.managed_order), config.managed_order)


def ledger_view(obj: Mapping[str, Any], config: IstioConfig) -> OwnerLedger:
    """The VirtualService's ledger as this owner sees it, without adopting anything."""
    return read_ledger(obj, config.owner)


def _weight(entry: Mapping[str, Any]) -> int:
    w = entry.get("weight", 0)
    return w if isinstance(w, int) and not isinstance(w, bool) else 0


def classify(route: Mapping[str, Any], ctx: Context, namespace: str | None) -> list[Dest]:
    """Role of every destination of one route; never guesses: unknown ones are foreign."""
    cfg = ctx.config
    out: list[Dest] = []
    entries = route.get("route")
    if not isinstance(entries, list):
        return out
    dr = cfg.section.destination_rule
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            continue
        dest = entry.get("destination")
        if not isinstance(dest, Mapping) or not isinstance(dest.get("host"), str):
            out.append(Dest(i, "foreign", None, _weight(entry)))
            continue
        host: str = dest["host"]
        subset = dest.get("subset")
        role: Role = "foreign"
        service: str | None = None
        stale = False
        on_dr = (
            dr is not None
            and ctx.dr_host is not None
            and same_host(host, namespace, ctx.dr_host, ctx.dr_namespace)
        )
        if dr is not None and on_dr:
            if subset == dr.stable_subset_name:
                role = "stable"
            elif subset == dr.canary_subset_name:
                role = "canary"
            elif isinstance(subset, str) and subset in ctx.additional:
                stale = ctx.additional[subset] == "host"
                if not stale or subset in ctx.added:
                    role, service = "additional", subset
        elif (
            dr is None
            and cfg.stable_service is not None
            and same_host(host, namespace, cfg.stable_service, cfg.namespace)
        ):
            role = "stable"
        elif (
            dr is None
            and cfg.canary_service is not None
            and same_host(host, namespace, cfg.canary_service, cfg.namespace)
        ):
            role = "canary"
        if role == "foreign" and not subset:
            for svc, style in ctx.additional.items():
                if same_host(host, namespace, svc, cfg.namespace):
                    stale = style == "subset"
                    if not stale or svc in ctx.added:
                        role, service = "additional", svc
                    break
        out.append(Dest(i, role, service, _weight(entry), stale and role == "additional"))
    return out


def _has_both(route: Mapping[str, Any], ctx: Context, namespace: str | None) -> bool:
    roles = {d.role for d in classify(route, ctx, namespace)}
    return {"stable", "canary"} <= roles


def _splittable(route: Mapping[str, Any], ctx: Context, namespace: str | None) -> bool:
    roles = [d.role for d in classify(route, ctx, namespace)]
    return roles.count("stable") == 1 and roles.count("canary") == 1


def _delegate_ref(route: Mapping[str, Any], namespace: str | None) -> ObjectRef | None:
    d = route.get("delegate")
    if not isinstance(d, Mapping) or not isinstance(d.get("name"), str):
        return None
    ns = d.get("namespace") if isinstance(d.get("namespace"), str) and d.get("namespace") else None
    return ObjectRef(GROUP, "VirtualService", ns or namespace, d["name"], VERSION)


def _describe_routes(routes: Sequence[Any], skip: Owned) -> str:
    labels = [
        route_label("http", r, i)
        for i, r in enumerate(routes)
        if isinstance(r, Mapping) and r.get("name") not in skip
    ]
    return ", ".join(labels) or "none"


def _select_http(
    obj: Mapping[str, Any],
    ref: ObjectRef,
    names: Sequence[str],
    ctx: Context,
    where: str,
    *,
    delegate: ObjectRef | None = None,
    field: str = "routes",
) -> list[int]:
    routes = _http(obj)
    owned = managed_routes(ledger_view(obj, ctx.config), ctx.config)
    what = f"VirtualService {ref.namespace}/{ref.name}"
    if names:
        picked: list[int] = []
        by_name: dict[str, list[int]] = {}  # one pass: configs may name hundreds of routes
        for i, r in enumerate(routes):
            if isinstance(r, Mapping) and isinstance(r.get("name"), str):
                by_name.setdefault(r["name"], []).append(i)
        for n in names:
            if n in owned:
                raise ConfigError(
                    [
                        Problem(
                            where,
                            f"route {n!r} is a managed route (ledger or managedRoutes); "
                            "name the route that carries the stable and canary destinations",
                        )
                    ]
                )
            hits = by_name.get(n, [])
            if not hits:
                raise TargetNotFoundError(
                    f"http route {n!r} (named at {where}) does not exist; routes: "
                    f"{_describe_routes(routes, owned)}",
                    plugin=PLUGIN,
                    obj=what,
                )
            if len(hits) > 1:
                raise PlanError(
                    f"{len(hits)} http routes are named {n!r}; route names must be unique",
                    plugin=PLUGIN,
                    obj=what,
                )
            picked.append(hits[0])
        return picked
    candidates: list[int] = []
    for i, r in enumerate(routes):
        if not isinstance(r, Mapping) or r.get("name") in owned:
            continue
        target = _delegate_ref(r, ref.namespace)
        if delegate is not None:
            if target == delegate:
                candidates.append(i)
        elif target is not None or _has_both(r, ctx, ref.namespace):
            candidates.append(i)
    if len(candidates) == 1:
        return candidates
    if not candidates:
        wanted = (
            f"delegating to VirtualService {delegate.namespace}/{delegate.name}"
            if delegate is not None
            else "with both the stable and the canary destination (or a delegate)"
        )
        reason = f"no http route {wanted}; routes: {_describe_routes(routes, owned)}"
    else:
        labels = ", ".join(route_label("http", routes[i], i) for i in candidates)
        reason = f"several http routes qualify ({labels}); name the ones to weight"
    raise ConfigError(
        [
            Problem(
                f"{where}.{field}",
                f"{what}: {reason}",
            )
        ]
    )


def _matches_tls(route: Mapping[str, Any], port: int | None, sni: frozenset[str]) -> bool:
    for m in route.get("match") or []:
        if not isinstance(m, Mapping):
            continue
        if port is not None and m.get("port") != port:
            continue
        if sni and frozenset(m.get("sniHosts") or []) != sni:
            continue
        return True
    return False


def _matches_tcp(route: Mapping[str, Any], port: int) -> bool:
    return any(isinstance(m, Mapping) and m.get("port") == port for m in route.get("match") or [])


def _select_l4(
    obj: Mapping[str, Any], ref: ObjectRef, vs: VirtualServiceTarget, ctx: Context
) -> list[Selected]:
    out: list[Selected] = []
    what = f"VirtualService {ref.namespace}/{ref.name}"
    for j, sel in enumerate(vs.config.tls_routes):
        routes = _list(obj, "tls")
        hits = [
            i
            for i, r in enumerate(routes)
            if isinstance(r, Mapping) and _matches_tls(r, sel.port, frozenset(sel.sni_hosts))
        ]
        desc = f"tls route with port {sel.port} and sniHosts {sorted(sel.sni_hosts)}"
        _one(hits, desc, f"{vs.path}.tlsRoutes[{j}]", what)
        out.append(Selected("tls", hits[0], f"tls[{hits[0]}]"))
    for j, tcp in enumerate(vs.config.tcp_routes):
        routes = _list(obj, "tcp")
        hits = [
            i for i, r in enumerate(routes) if isinstance(r, Mapping) and _matches_tcp(r, tcp.port)
        ]
        _one(hits, f"tcp route with port {tcp.port}", f"{vs.path}.tcpRoutes[{j}]", what)
        out.append(Selected("tcp", hits[0], f"tcp[{hits[0]}]"))
    if not vs.config.tls_routes:
        out.extend(_unconfigured(obj, "tls", vs, ctx, ref))
    if not vs.config.tcp_routes:
        out.extend(_unconfigured(obj, "tcp", vs, ctx, ref))
    return out


def _unconfigured(
    obj: Mapping[str, Any], kind: Kind, vs: VirtualServiceTarget, ctx: Context, ref: ObjectRef
) -> list[Selected]:
    """tls/tcp routes the config does not select: Argo weights them too (the single one, when
    the VirtualService has one). We take the routes that reach our Services: exactly one may,
    and it needs both; routes to other Services are not ours to weight."""
    routes = _list(obj, kind)
    ours = [
        i
        for i, r in enumerate(routes)
        if isinstance(r, Mapping)
        and any(d.role in ("stable", "canary") for d in classify(r, ctx, ref.namespace))
    ]
    if len(ours) > 1:
        raise ConfigError(
            [
                Problem(
                    f"{vs.path}.{kind}Routes",
                    f"VirtualService {ref.namespace}/{ref.name}: {len(ours)} {kind} routes reach "
                    f"the stable or canary destination ({', '.join(f'{kind}[{i}]' for i in ours)}); "
                    f"select the ones to weight in {kind}Routes",
                )
            ]
        )
    return [Selected(kind, i, f"{kind}[{i}]") for i in ours]


def _one(hits: list[int], desc: str, where: str, what: str) -> None:
    if not hits:
        raise TargetNotFoundError(f"no {desc} (configured at {where})", plugin=PLUGIN, obj=what)
    if len(hits) > 1:
        raise ConfigError(
            [
                Problem(
                    where,
                    f"{what}: {len(hits)} routes match ({', '.join(map(str, hits))}); "
                    "make the selector specific",
                )
            ]
        )


def _missing(ref: ObjectRef, where: str, role: str = "VirtualService") -> TargetNotFoundError:
    return TargetNotFoundError(
        f"{role} {ref.namespace}/{ref.name} (configured at {where}) does not exist",
        plugin=PLUGIN,
        obj=f"{ref.kind} {ref.namespace}/{ref.name}",
    )


def delegate_refs(config: IstioConfig, live: LiveObjects, ctx: Context) -> list[ObjectRef]:
    """Delegates of the selected routes, as far as they can be known from what was read."""
    out: list[ObjectRef] = []
    for vs in config.virtual_services:
        if vs.delegate is not None:
            out.append(vs.delegate)
        obj = live.get(vs.ref)
        if obj is None or not vs.http_enabled or not _http(obj):
            continue
        try:
            picked = _select_http(obj, vs.ref, vs.config.routes, ctx, vs.path, delegate=vs.delegate)
        except (ConfigError, PlanError):
            continue
        routes = _http(obj)
        for i in picked:
            ref = _delegate_ref(routes[i], vs.ref.namespace)
            if ref is not None and ref not in out:
                out.append(ref)
    return out


def resolve(config: IstioConfig, live: LiveObjects, ctx: Context) -> list[Target]:
    """Every VirtualService to write, with its selected routes; raises before any write."""
    targets: dict[ObjectRef, Target] = {}
    for vs in config.virtual_services:
        obj = live.get(vs.ref)
        if obj is None:
            raise _missing(vs.ref, vs.path)
        root = Target(vs.ref, obj, vs.path)
        delegated = False
        # Argo weights http routes only where the VirtualService has some: a TLS-only one with
        # `routes: [primary]` next to its tlsRoutes is weighted on tls alone (Argo's e2e fixture
        # istio-host-only-tls-split); plan() notes the ignored names.
        if vs.http_enabled and _http(obj):
            picked = _select_http(obj, vs.ref, vs.config.routes, ctx, vs.path, delegate=vs.delegate)
            routes = _http(obj)
            for i in picked:
                ref = _delegate_ref(routes[i], vs.ref.namespace)
                if ref is None:
                    if not _splittable(routes[i], ctx, vs.ref.namespace):
                        raise _no_split(routes[i], i, vs.ref, ctx)
                    root.selected.append(Selected("http", i, route_label("http", routes[i], i)))
                    continue
                if vs.delegate is not None and ref != vs.delegate:
                    raise ConfigError(
                        [
                            Problem(
                                f"{vs.path}.delegate",
                                f"{route_label('http', routes[i], i)} of VirtualService "
                                f"{vs.ref.namespace}/{vs.ref.name} delegates to "
                                f"{ref.namespace}/{ref.name}, not {vs.delegate.namespace}/"
                                f"{vs.delegate.name}",
                            )
                        ]
                    )
                delegated = True
                if ref in targets:
                    continue
                dobj = live.get(ref)
                if dobj is None:
                    raise TargetNotFoundError(
                        f"delegate VirtualService {ref.namespace}/{ref.name} of "
                        f"{route_label('http', routes[i], i)} in {vs.ref.namespace}/{vs.ref.name} "
                        "does not exist",
                        plugin=PLUGIN,
                        obj=f"VirtualService {ref.namespace}/{ref.name}",
                    )
                target = Target(ref, dobj, f"{vs.path}.delegate")
                dpicked = _select_http(
                    dobj, ref, vs.config.delegate_routes, ctx, vs.path, field="delegateRoutes"
                )
                droutes = _http(dobj)
                for k in dpicked:
                    if _delegate_ref(droutes[k], ref.namespace) is not None:
                        raise PlanError(
                            f"{route_label('http', droutes[k], k)} delegates again; Istio allows "
                            "one level of delegation",
                            plugin=PLUGIN,
                            obj=target.describe(),
                        )
                    if not _splittable(droutes[k], ctx, ref.namespace):
                        raise _no_split(droutes[k], k, ref, ctx)
                    target.selected.append(Selected("http", k, route_label("http", droutes[k], k)))
                targets[ref] = target
            if vs.delegate is not None and not delegated:
                raise ConfigError(
                    [
                        Problem(
                            f"{vs.path}.delegate",
                            f"no selected route of VirtualService {vs.ref.namespace}/"
                            f"{vs.ref.name} delegates to {vs.delegate.namespace}/{vs.delegate.name}",
                        )
                    ]
                )
        root.selected.extend(_select_l4(obj, vs.ref, vs, ctx))
        if not root.selected and not delegated:
            raise PlanError(
                f"no route to weight: {_nothing(obj, vs)}",
                plugin=PLUGIN,
                obj=f"VirtualService {vs.ref.namespace}/{vs.ref.name}",
            )
        for s in root.selected:
            if s.kind != "http":
                route = _list(obj, s.kind)[s.index]
                if not _splittable(route, ctx, vs.ref.namespace):
                    raise _no_split(route, s.index, vs.ref, ctx, kind=s.kind)
        if root.selected:
            if vs.ref in targets:
                targets[vs.ref].selected.extend(root.selected)
            else:
                targets[vs.ref] = root
    return list(targets.values())


def _nothing(obj: Mapping[str, Any], vs: VirtualServiceTarget) -> str:
    kinds = [k for k in ("http", "tls", "tcp") if _list(obj, k)]
    if not kinds:
        return "it has no http, tls or tcp routes"
    return (
        f"it has {', '.join(kinds)} routes, none selected by {vs.path} and none reaching the "
        "stable or canary destination"
    )


def _no_split(
    route: Mapping[str, Any], index: int, ref: ObjectRef, ctx: Context, kind: str = "http"
) -> PlanError:
    cfg = ctx.config
    dr = cfg.section.destination_rule
    if dr is not None:
        want = (
            f"destinations for host {ctx.dr_host} with subsets {dr.stable_subset_name!r} "
            f"(stable) and {dr.canary_subset_name!r} (canary)"
        )
    else:
        want = (
            f"destinations for the stable Service {cfg.stable_service!r} and the canary Service "
            f"{cfg.canary_service!r}"
        )
    roles = [d.role for d in classify(route, ctx, ref.namespace)]
    dupes: list[Role] = [r for r in ("stable", "canary") if roles.count(r) > 1]
    if dupes:
        return PlanError(
            f"{route_label(kind, route, index)} has {roles.count(dupes[0])} {dupes[0]} "
            "destinations; which one to weight is ambiguous",
            plugin=PLUGIN,
            obj=f"VirtualService {ref.namespace}/{ref.name}",
        )
    return PlanError(
        f"{route_label(kind, route, index)} needs {want} (add the missing one with weight 0)",
        plugin=PLUGIN,
        obj=f"VirtualService {ref.namespace}/{ref.name}",
    )
