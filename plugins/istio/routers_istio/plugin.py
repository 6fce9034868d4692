"""The Istio plugin: VirtualService weights (http/tls/tcp), DestinationRule subsets, header and
mirror routes, delegates.

Every edit is an explicit, guarded JSON-patch op on the live dict; nothing is rebuilt from a
model, so ``retries``, ``timeout``, ``withoutHeaders``, ``fault``, ``corsPolicy``, delegates and
destinations we do not own pass through untouched (Argo #2767, #2266, #3125).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

from routers.contract import (
    ANY_MATCH,
    API_VERSION,
    Capabilities,
    ClusterFacts,
    MirrorSupport,
    Observation,
    ObservedWeights,
    Permission,
)
from routers.errors import (
    PlanError,
    RoutersError,
    TargetNotFoundError,
    UnsupportedError,
    WeightFitError,
)
from routers.model import (
    Cleanup,
    Desired,
    HeaderRoute,
    ManagedRoute,
    MirrorRoute,
    RoutingConfig,
    TrafficState,
)
from routers.planning import weights
from routers.planning.objects import LiveObjects, ObjectRef, check_shapes
from routers.planning.ownership import SPLIT, OwnerLedger, read_ledger
from routers.planning.patch import PatchBuilder, json_equal, pointer
from routers.planning.plan import Note, Patch, Plan
from routers.planning.routes import ordered_routes
from routers.simulate import Request, Routed
from routers_istio import evaluate
from routers_istio.config import IstioConfig
from routers_istio.hosts import canonical, host_for
from routers_istio.matches import Disjoint, Undecidable, cross_product
from routers_istio.routes import (
    PLUGIN,
    Context,
    Dest,
    Owned,
    Selected,
    Style,
    Target,
    classify,
    copy_name,
    delegate_refs,
    dest_keys,
    managed_name,
    managed_routes,
    owned_routes,
    resolve,
    route_label,
)
from routers_istio.shapes import SHAPES

__all__ = ["IstioPlugin"]

MIRROR_KEYS = ("mirror", "mirrorPercentage", "mirrors", "mirror_percent", "mirrorPercent")
"""Fields that make a route mirror; a managed route sets its own (or none)."""


class IstioPlugin:
    name = PLUGIN
    api_version = API_VERSION
    services_optional = True
    """A subset-level split (destinationRule) needs no stable/canary Service, as in Argo."""
    crds: tuple[str, ...] = (
        "virtualservices.networking.istio.io",
        "destinationrules.networking.istio.io",
    )

    # -- declarations -----------------------------------------------------------------------

    def capabilities(
        self, config: Any | None = None, facts: ClusterFacts | None = None
    ) -> Capabilities:
        http = True if config is None else _config(config).http_enabled
        max_total: int | None = None
        if config is not None:
            max_total = _config(config).section.fixed_total
        notes = [
            "header and mirror routes get one copy right before each selected http route "
            "they overlap (named <route>, <route>.2, ...), with that route's behaviour "
            "(rewrite, timeout, retries, headers) and its match conditions ANDed",
            "path prefixes are element-wise: prefix P becomes uri exact P or prefix P/",
            "weights sum to weightTotal (default 100, accepted by every Istio version); other "
            "totals need Istio >= 1.15",
        ]
        if not http:
            notes.append("only tls/tcp routes are selected: no header or mirror routes")
        return Capabilities(
            header_routes=http,
            header_limits=replace(ANY_MATCH, unmatchable_headers=evaluate.IGNORED_HEADER_KEYS),
            mirror=MirrorSupport.FRACTION if http else MirrorSupport.NONE,
            max_total=max_total,
            notes=tuple(notes),
        )

    def parse_config(self, section: Mapping[str, Any], routing: RoutingConfig) -> IstioConfig:
        return IstioConfig.build(section, routing, self.name)

    def permissions(self, config: Any) -> Sequence[Permission]:
        cfg = _config(config)
        out = [Permission("networking.istio.io", "virtualservices", ("get", "patch"))]
        if cfg.destination_rule is not None:
            out.append(Permission("networking.istio.io", "destinationrules", ("get", "patch")))
        return out

    def targets(self, config: Any, live: LiveObjects) -> Sequence[ObjectRef]:
        cfg = _config(config)
        check_shapes(self.name, live, SHAPES)
        refs = [vs.ref for vs in cfg.virtual_services]
        if cfg.destination_rule is not None:
            refs.append(cfg.destination_rule)
        try:
            ctx = _base_context(cfg, live, None)
        except RoutersError:
            ctx = Context(cfg)
        refs.extend(r for r in delegate_refs(cfg, live, ctx) if r not in refs)
        return refs

    # -- planning ---------------------------------------------------------------------------

    def plan(self, config: Any, live: LiveObjects, desired: Desired, facts: ClusterFacts) -> Plan:
        cfg = _config(config)
        check_shapes(self.name, live, SHAPES)
        state = desired if isinstance(desired, TrafficState) else None
        base = _base_context(cfg, live, state)
        targets = resolve(cfg, live, base)
        managed = ordered_routes(state, cfg.managed_order) if state is not None else []
        if managed and not any(t.primary is not None for t in targets):
            kind = "setHeaderRoute" if isinstance(managed[0], HeaderRoute) else "setMirrorRoute"
            raise UnsupportedError(
                self.name,
                f"{kind} {managed[0].name!r}",
                "the selected routes are tls/tcp routes, which carry no HTTP attributes to "
                "match or mirror",
                hint="select an http route (virtualServices[].routes)",
            )
        notes: dict[str, Note] = {}
        for vs in cfg.virtual_services:
            obj = live.get(vs.ref)
            if obj is not None and vs.config.routes and not _http(obj):
                message = (
                    f"{vs.path}.routes names {', '.join(vs.config.routes)}, but VirtualService "
                    f"{vs.ref.namespace}/{vs.ref.name} has no http routes: only its tls/tcp "
                    "routes are weighted (as Argo Rollouts does)"
                )
                notes[message] = Note(self.name, message)
        vs_ops: list[Patch | None] = []
        decreasing = False
        produced: dict[str, int] = {}
        for t in targets:
            result = _plan_vs(cfg, t, base, desired, managed)
            vs_ops.append(result.patch)
            decreasing = decreasing or result.canary_decreasing
            for n in result.notes:
                notes.setdefault(n.message, n)
            for name, count in result.produced.items():
                produced[name] = produced.get(name, 0) + count
        for r in managed:
            if not produced.get(r.name):
                labels = ", ".join(
                    f"{t.describe()} {s.label}"
                    for t in targets
                    for s in t.selected
                    if s.kind == "http"
                )
                raise UnsupportedError(
                    self.name,
                    _instruction(r),
                    f"no request can satisfy both its matches and the conditions of a selected "
                    f"http route ({labels})",
                    hint="match requests that the selected routes serve",
                )
        dr_ops: list[Patch | None] = []
        removes_subsets = False
        if cfg.destination_rule is not None:
            patch, removes_subsets = _plan_dr(cfg, live, desired, _carried(targets))
            dr_ops.append(patch)
        # A subset's selector changes while the subset gets little traffic: repoint (or create)
        # subsets before weights move traffic onto them, move traffic away before a subset is
        # repointed to new pods or deleted (Argo PR #4564 / #4612).
        ops = [*vs_ops, *dr_ops] if decreasing or removes_subsets else [*dr_ops, *vs_ops]
        return Plan.of(self.name, ops, list(notes.values()))

    # -- data plane -------------------------------------------------------------------------

    def evaluate(self, config: Any, objects: LiveObjects, request: Request) -> Sequence[Routed]:
        return evaluate.evaluate(_config(config), objects, request)

    def sample_requests(self, config: Any, objects: LiveObjects) -> Sequence[Request]:
        return evaluate.sample_requests(_config(config), objects)

    # -- observing --------------------------------------------------------------------------

    def observe(self, config: Any, live: LiveObjects, facts: ClusterFacts) -> Observation:
        cfg = _config(config)
        try:
            base = _base_context(cfg, live, None)
            targets = resolve(cfg, live, base)
        except RoutersError as exc:
            return Observation(self.name, problems=(str(exc),))
        found: list[ObservedWeights] = []
        headers: list[str] = []
        mirrors: dict[str, float] = {}
        problems: list[str] = []
        for t in targets:
            view = _vs_ledger(cfg, t, base, None)
            ctx = base.with_ledger(view)
            for sel in t.selected:
                route = t.obj["spec"][sel.kind][sel.index]
                found.append(_observed(t, sel, classify(route, ctx, t.namespace)))
            http = _http(t.obj)
            owned = owned_routes(view, cfg)
            everyone = managed_routes(view, cfg)
            primaries = {s.index for s in t.selected if s.kind == "http"}
            present = set()
            for i, r in enumerate(http):
                if not _ours(r, owned):
                    continue
                name = r["name"]
                present.add(name)
                route_name = managed_name(name)
                after = next(
                    (j for j in range(i + 1, len(http)) if not _ours(http[j], everyone)), None
                )
                if after not in primaries:
                    problems.append(
                        f"{t.describe()}: managed route {name!r} is not right before a selected "
                        "http route, so it may capture requests they do not serve; the next plan "
                        "moves it"
                    )
                if any(k in r for k in MIRROR_KEYS):
                    pct = _mirror_percentage(r)
                    if mirrors.setdefault(route_name, pct) != pct:
                        problems.append(
                            f"{t.describe()}: copies of mirror route {route_name!r} mirror "
                            f"different percentages; the next plan re-syncs them"
                        )
                    if after in primaries and not json_equal(
                        r.get("route"), http[after].get("route")
                    ):
                        problems.append(
                            f"{t.describe()}: mirror route {name!r} serves different "
                            f"destinations than {route_label('http', http[after], after)}; the "
                            "next plan re-syncs it"
                        )
                elif route_name not in headers:
                    headers.append(route_name)
            for name in view.names("routes"):
                if name not in present:
                    problems.append(
                        f"{t.describe()}: managed route {name!r} is missing (deleted by someone "
                        "else?); the next plan restores it"
                    )
        return Observation(
            self.name,
            weights=tuple(found),
            header_routes=tuple(headers),
            mirror_routes=mirrors,
            problems=tuple(problems),
        )


# -- helpers ----------------------------------------------------------------------------------


def _config(config: Any) -> IstioConfig:
    if not isinstance(config, IstioConfig):
        raise TypeError(f"expected an IstioConfig (from parse_config), got {type(config).__name__}")
    return config


def _http(obj: Mapping[str, Any]) -> list[Any]:
    spec = obj.get("spec")
    routes = spec.get("http") if isinstance(spec, Mapping) else None
    return routes if isinstance(routes, list) else []


def _base_context(cfg: IstioConfig, live: LiveObjects, state: TrafficState | None) -> Context:
    dr_host: str | None = None
    dr_ns: str | None = None
    if cfg.destination_rule is not None:
        ref = cfg.destination_rule
        dr = live.get(ref)
        if dr is None:
            raise TargetNotFoundError(
                f"DestinationRule {ref.namespace}/{ref.name} (configured at "
                f"{cfg.path}.destinationRule.name) does not exist",
                plugin=PLUGIN,
                obj=f"DestinationRule {ref.namespace}/{ref.name}",
            )
        host = (dr.get("spec") or {}).get("host")
        if not isinstance(host, str) or not host:
            raise PlanError(
                "spec.host is missing",
                plugin=PLUGIN,
                obj=f"DestinationRule {ref.namespace}/{ref.name}",
            )
        dr_host, dr_ns = host, ref.namespace
    styles: dict[str, Style] = {}
    if state is not None:
        for d in state.additional_destinations:
            subset = cfg.subset_mode and d.pod_template_hash is not None
            styles[d.service] = "subset" if subset else "host"
    return Context(cfg, styles, dr_host, dr_ns)


def _carried_in(t: Target) -> set[str]:
    """Hosts (``name.namespace``) and subsets the routes this owner weights in ``t`` carry."""
    out: set[str] = set()
    for sel in t.selected:
        route = t.obj["spec"][sel.kind][sel.index]
        for entry in route.get("route") or []:
            dest = entry.get("destination") if isinstance(entry, Mapping) else None
            if isinstance(dest, Mapping) and isinstance(dest.get("host"), str):
                out.add(canonical(dest["host"], t.namespace))
                if isinstance(dest.get("subset"), str):
                    out.add(dest["subset"])
    return out


def _carried(targets: Sequence[Target]) -> set[str]:
    return {x for t in targets for x in _carried_in(t)}


def _to_canary(route: Mapping[str, Any], ctx: Context, namespace: str | None) -> bool:
    """The route sends to, or mirrors to, this owner's canary destination."""
    mirrors = [route.get("mirror")]
    if isinstance(route.get("mirrors"), list):
        mirrors += [m.get("destination") for m in route["mirrors"] if isinstance(m, Mapping)]
    entries = [*(route.get("route") or []), *({"destination": m} for m in mirrors if m)]
    return any(d.role == "canary" for d in classify({"route": entries}, ctx, namespace))


def _vs_ledger(
    cfg: IstioConfig, t: Target, base: Context, state: TrafficState | None
) -> OwnerLedger:
    """This owner's view of a VirtualService's ledger. Ownerless entries (written before
    per-owner ledgers) are this owner's when its config or state names them: a route that
    sends or mirrors to its canary (or, gone from the object, one its state or managedRoutes
    names), an additional destination its state lists or its weighted routes carry."""
    by_name = {
        r["name"]: r
        for r in _http(t.obj)
        if isinstance(r, Mapping) and isinstance(r.get("name"), str)
    }
    named = set(cfg.managed_order) | (set(state.route_names) if state is not None else set())
    extra = {d.service for d in state.additional_destinations} if state is not None else set()
    carried = _carried_in(t)

    def adopt(key: str, name: str) -> bool:
        if key == "routes":
            route = by_name.get(name)
            if route is None:
                return managed_name(name) in named
            return _to_canary(route, base, t.namespace)
        if key in ("destinations", "weights"):
            return name in extra or name in carried or canonical(name, cfg.namespace) in carried
        return False

    return read_ledger(t.obj, cfg.owner, adopt, what=t.describe())


def _total(cfg: IstioConfig, state: TrafficState) -> int:
    fixed = cfg.section.fixed_total
    return state.total if fixed is None else fixed


@dataclass
class _VsResult:
    patch: Patch | None
    notes: list[Note] = field(default_factory=list)
    canary_decreasing: bool = False
    produced: dict[str, int] = field(default_factory=dict)
    """Managed route name -> Istio routes generated for it in this VirtualService."""


class _Editor:
    """Emits identity guards right before the first edit they protect, and only then."""

    def __init__(self, builder: PatchBuilder) -> None:
        self.b = builder
        self._guarded: set[str] = set()

    def guard(self, path: str) -> None:
        if path not in self._guarded and self.b.exists(path):
            self.b.test(path)
            self._guarded.add(path)

    def set(self, path: str, value: Any, guards: Sequence[str]) -> None:
        current = self.b.get(path, None)
        if current is not None and json_equal(current, value):
            return
        for g in guards:
            self.guard(g)
        self.b.set(path, value)

    def forget(self) -> None:
        """Indices shift after list inserts/removals: guards must be emitted again."""
        self._guarded.clear()


def _route_guards(kind: str, index: int, route: Mapping[str, Any]) -> list[str]:
    if kind == "http" and isinstance(route.get("name"), str):
        return [pointer("spec", kind, index, "name")]
    return []


def _plan_vs(
    cfg: IstioConfig,
    t: Target,
    base: Context,
    desired: Desired,
    managed: list[ManagedRoute],
) -> _VsResult:
    state = desired if isinstance(desired, TrafficState) else None
    view = _vs_ledger(cfg, t, base, state)
    added_before = set(view.names("destinations"))
    ctx = base.with_ledger(view)
    theirs: set[int] = set()
    result = _VsResult(None)
    for n, sel in enumerate(t.selected):
        keys = dest_keys(t.obj["spec"][sel.kind][sel.index], t.namespace)
        if state is not None:
            view.claim_split(keys, what=sel.label, plugin=PLUGIN, obj=t.describe())
        elif (holder := view.splitter(keys)) is not None:
            # Cleanup removes what this owner added; another owner's weights stay as they are.
            theirs.add(n)
            result.notes.append(
                Note(
                    PLUGIN,
                    f"{t.describe()} {sel.label} is weighted by owner {holder!r}: left as is",
                )
            )
    b = PatchBuilder(t.obj)
    ed = _Editor(b)
    # Per route, the weights of destinations we do not own before we rescaled them.
    kept = weights.foreign_record(view.data(weights.FOREIGN))
    added_after: set[str] = set()
    weighted_after: set[str] = set()
    wanted = {d.service: d for d in state.additional_destinations} if state is not None else {}

    for n, sel in enumerate(t.selected):
        if n in theirs:
            continue
        rpath = pointer("spec", sel.kind, sel.index)
        route = b.get(rpath)
        dests = classify(route, ctx, t.namespace)
        rguards = _route_guards(sel.kind, sel.index, route)
        by_role = {d.role: d for d in dests if d.role in ("stable", "canary")}
        stable, canary = by_role["stable"], by_role["canary"]
        present: dict[str, Dest] = {}
        remove: list[Dest] = []
        foreign = [d for d in dests if d.role == "foreign"]
        for d in dests:
            if d.role != "additional" or d.service is None:
                continue
            keep = d.service in wanted and not d.stale and d.service not in present
            if keep:
                present[d.service] = d
            elif d.service in added_before:
                remove.append(d)  # ours: no longer wanted, in the old form, or a duplicate
            else:
                foreign.append(d)  # pre-existing: it becomes someone else's again
        before = Fraction(canary.weight, sum(d.weight for d in dests) or 1)

        def dpath(d: Dest, *rest: str, rp: str = rpath) -> str:
            return rp + pointer("route", d.index, *rest)

        def guards(d: Dest, rg: list[str] = rguards, entries: Any = route["route"]) -> list[str]:
            # A destination's role rests on its host and subset (classify), never on its port:
            # guarding only those keeps relaxed patches small and still pins the identity.
            dest = entries[d.index].get("destination") or {}
            return [*rg, *(dpath(d, "destination", k) for k in ("host", "subset") if k in dest)]

        where = weights.location(route.get("name"), [sel.kind, route.get("match") or []])
        theirs_now = dict(zip(_foreign_keys(route, foreign, t.namespace), foreign, strict=True))

        if state is not None:
            requested = weights.split(state)
            ours_now = sum(d.weight for d in dests if d.role != "foreign" and d not in foreign)
            try:
                placed = weights.place(
                    requested,
                    ours_now,
                    [d.weight for d in foreign],
                    scope=cfg.weight_scope,
                    total=_total(cfg, state),
                )
            except WeightFitError as exc:
                raise exc.located(plugin=PLUGIN, obj=t.describe(), where=sel.label) from None
            emitted = placed.split
            if placed.rounded or placed.shares.foreign:
                result.notes.append(
                    Note(PLUGIN, f"{t.describe()} {sel.label}: {placed.describe(requested)}")
                )
            before_w = {k: d.weight for k, d in theirs_now.items()}
            weights.remember(kept, where, before_w, placed, ours=ours_now)
            for d, w in zip(foreign, placed.foreign, strict=True):
                ed.set(dpath(d, "weight"), w, guards(d))
            ed.set(dpath(stable, "weight"), emitted.stable, guards(stable))
            ed.set(dpath(canary, "weight"), emitted.canary, guards(canary))
            appended: list[dict[str, Any]] = []
            for service, w in emitted.additional:
                have = present.get(service)
                if have is not None:
                    ed.set(dpath(have, "weight"), w, guards(have))
                    (added_after if service in added_before else weighted_after).add(service)
                    continue
                appended.append(_new_destination(cfg, t, route, stable, service, ctx, w))
                added_after.add(service)
            after = Fraction(emitted.canary, placed.total or 1)
            if n == 0:
                result.canary_decreasing = after < before
        elif isinstance(desired, Cleanup):
            appended = []
            ours = stable.weight + canary.weight + sum(d.weight for d in remove)
            if desired.restore_stable:
                # The destinations we rescaled get their weights back (stable the sum that
                # keeps every share) when nobody changed them since.
                now = {k: d.weight for k, d in theirs_now.items()}
                got = weights.give_back(kept, where, now, ours)
                if got is not None:
                    given, ours = got
                    for k, d in theirs_now.items():
                        ed.set(dpath(d, "weight"), given[k], guards(d))
                if ours == 0 and not foreign:
                    ours = cfg.section.fixed_total or 100
                ed.set(dpath(stable, "weight"), ours, guards(stable))
                ed.set(dpath(canary, "weight"), 0, guards(canary))
            elif remove:
                ed.set(dpath(stable, "weight"), ours - canary.weight, guards(stable))
            if n == 0:
                result.canary_decreasing = True
        for body in appended:
            for g in rguards:
                ed.guard(g)
            b.add(rpath + "/route/-", body)
        for d in sorted(remove, key=lambda x: -x.index):
            for g in guards(d):
                ed.guard(g)
            b.remove(dpath(d))
        ed.forget()

    owned = owned_routes(view, cfg)
    everyone = managed_routes(view, cfg)
    http: list[Any] = b.get(pointer("spec", "http"), [])
    copies = (
        _wanted(cfg, t, http, managed, ctx, owned, everyone, view, result)
        if state is not None
        else []
    )
    _layout(b, ed, owned, everyone, copies)
    view.write(
        b,
        {
            "routes": [w.name for w in copies],
            "destinations": added_after,
            "weights": weighted_after,
            SPLIT: base.split() if state is not None else None,
            weights.FOREIGN: (kept or None) if state is not None else None,
        },
    )
    result.patch = b.patch(t.ref, _reason(t, desired))
    return result


def _foreign_keys(route: Mapping[str, Any], foreign: Sequence[Dest], ns: str | None) -> list[str]:
    """Ledger keys of the destinations we do not own: host, subset and port."""
    keys = []
    for d in foreign:
        entry = route["route"][d.index]
        dest = entry.get("destination") if isinstance(entry, Mapping) else None
        if not isinstance(dest, Mapping) or not isinstance(dest.get("host"), str):
            keys.append(f"#{d.index}")
            continue
        port = (
            (dest.get("port") or {}).get("number")
            if isinstance(dest.get("port"), Mapping)
            else None
        )
        keys.append(
            canonical(dest["host"], ns)
            + (f"#{dest['subset']}" if isinstance(dest.get("subset"), str) else "")
            + (f":{port}" if port is not None else "")
        )
    return weights.unique_keys(keys)


def _reason(t: Target, desired: Desired) -> str:
    routes = ", ".join(s.label for s in t.selected)
    if isinstance(desired, Cleanup):
        restore = "; 100% to stable" if desired.restore_stable else ""
        return f"cleanup {t.describe()}: remove managed routes and destinations{restore}"
    return (
        f"{t.describe()}: canary {desired.weight}/{desired.total} on {routes}; managed routes: "
        f"{', '.join(desired.route_names) or 'none'}"
    )


def _new_destination(
    cfg: IstioConfig,
    t: Target,
    route: Mapping[str, Any],
    stable: Dest,
    service: str,
    ctx: Context,
    weight: int,
) -> dict[str, Any]:
    if ctx.additional.get(service) == "subset":
        # The subset is named after the Service: a DNS-1035 label (ServiceName), so a valid one.
        host = route["route"][stable.index]["destination"]["host"]
        return {"destination": {"host": host, "subset": service}, "weight": weight}
    return {
        "destination": {"host": host_for(service, cfg.namespace, t.namespace)},
        "weight": weight,
    }


# -- managed routes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Wanted:
    """One Istio route generated for a managed route, and where it goes."""

    name: str
    route: str
    """The managed route it stands for."""
    rank: int
    """It goes right before the route (not ours) with this many routes not ours before it: its
    primary, so it only ever captures requests that primary serves."""
    body: dict[str, Any]


def _instruction(route: ManagedRoute) -> str:
    kind = "setHeaderRoute" if isinstance(route, HeaderRoute) else "setMirrorRoute"
    return f"{kind} {route.name!r}"


def _managed_match(
    t: Target, primary: Selected, route: ManagedRoute, doc_route: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Our matches ANDed with the primary's; empty when no request satisfies both."""
    try:
        rewrite = doc_route.get("rewrite")
        fixed_uri = isinstance(rewrite, Mapping) and "uri" in rewrite
        return cross_product(doc_route.get("match"), route.matches, fixed_uri=fixed_uri)
    except Undecidable as exc:
        raise UnsupportedError(
            PLUGIN,
            _instruction(route),
            f"its matches cannot be ANDed with the conditions of {t.describe()} "
            f"{primary.label}: {exc}",
            hint="use matches compatible with the primary route's (e.g. a narrower path prefix)",
        ) from None
    except Disjoint:
        return []


def _managed_body(
    t: Target,
    route: ManagedRoute,
    doc_route: Mapping[str, Any],
    match: list[dict[str, Any]],
    cfg: IstioConfig,
    ctx: Context,
) -> dict[str, Any]:
    """A managed route: the primary route's behaviour, our matches, our destinations."""
    entries = doc_route.get("route") or []
    canary = next(d for d in classify(doc_route, ctx, t.namespace) if d.role == "canary")
    canary_entry = copy.deepcopy(entries[canary.index])
    body: dict[str, Any] = {"name": route.name, "match": match}
    if isinstance(route, MirrorRoute):
        body["route"] = copy.deepcopy(entries)
        dest = {
            k: copy.deepcopy(v)
            for k, v in canary_entry["destination"].items()
            if k in ("host", "subset", "port")
        }
        pct = {"value": route.percentage}
        if cfg.section.mirror_field == "mirrors":
            body["mirrors"] = [{"destination": dest, "percentage": pct}]
        else:
            body["mirror"] = dest
            body["mirrorPercentage"] = pct
    else:
        canary_entry["weight"] = 100
        body["route"] = [canary_entry]
    for key, value in doc_route.items():
        if key not in body and key not in ("delegate", *MIRROR_KEYS):
            body[key] = copy.deepcopy(value)
    return body


def _wanted(
    cfg: IstioConfig,
    t: Target,
    http: list[Any],
    managed: list[ManagedRoute],
    ctx: Context,
    owned: Owned,
    everyone: Owned,
    view: OwnerLedger,
    result: _VsResult,
) -> list[_Wanted]:
    """Per selected http route, in ``http[]`` order: a copy of every managed route whose matches
    overlap it, in precedence order. Istio evaluates first match: a copy placed right before
    its primary sees exactly the requests that primary would serve, whatever else the
    VirtualService holds (foreign routes between the primaries, a catch-all before one)."""
    primaries = sorted((s for s in t.selected if s.kind == "http"), key=lambda s: s.index)
    per_route: dict[str, list[tuple[Selected, dict[str, Any]]]] = {r.name: [] for r in managed}
    # One pass over http[] (VirtualServices with hundreds of routes are real): the first foreign
    # catch-all shadows every primary after it.
    first_all = next((i for i, r in enumerate(http) if not _ours(r, everyone) and _all(r)), None)
    for primary in primaries:
        doc_route = http[primary.index]
        shadow = first_all if first_all is not None and first_all < primary.index else None
        if managed and shadow is not None:
            catch_all = route_label("http", http[shadow], shadow)
            result.notes.append(
                Note(
                    PLUGIN,
                    f"{t.describe()} {primary.label} comes after {catch_all}, which matches "
                    "every request: neither it nor its header/mirror routes get traffic",
                    level="warning",
                )
            )
        for r in managed:
            match = _managed_match(t, primary, r, doc_route)
            if match:
                per_route[r.name].append((primary, _managed_body(t, r, doc_route, match, cfg, ctx)))
    copies: list[tuple[str, str, int, dict[str, Any]]] = []
    for r in managed:
        result.produced[r.name] = result.produced.get(r.name, 0) + len(per_route[r.name])
        for k, (primary, body) in enumerate(per_route[r.name]):
            body["name"] = copy_name(r.name, k)
            copies.append((body["name"], r.name, primary.index, body))
    names = {c[0] for c in copies}
    view.claim(
        "routes",
        sorted(names),
        what=lambda name: f"http route name {name!r}",
        plugin=PLUGIN,
        obj=t.describe(),
        hint="two owners can never hold one route name on one VirtualService: rename the "
        "managed route",
    )
    for i, route in enumerate(http):
        name = route.get("name") if isinstance(route, Mapping) else None
        if name in names and name not in owned:
            raise PlanError(
                f"http[{i}] is named {name!r} but was not added by us (no ledger entry, not in "
                "managedRoutes); rename it, or list it in managedRoutes to hand it over",
                plugin=PLUGIN,
                obj=t.describe(),
            )
    # Ranks among routes not ours do not change when ours are removed or inserted; the primary
    # indices are those of the object as read.
    order = {r.name: n for n, r in enumerate(managed)}
    rank = _ranks(http, everyone.with_names(names))
    out = [_Wanted(n, r, rank[i], body) for n, r, i, body in copies]
    return sorted(out, key=lambda w: (w.rank, order[w.route]))


def _ranks(http: list[Any], owned: Owned) -> list[int]:
    """For each index, how many routes not ours precede it (prefix counts, one pass)."""
    out: list[int] = []
    seen = 0
    for r in http:
        out.append(seen)
        if not _ours(r, owned):
            seen += 1
    return out


def _all(route: Any) -> bool:
    """A route without conditions (Istio: only the last route should be one). A delegating
    one falls through when no delegate route matches."""
    return isinstance(route, Mapping) and not route.get("match") and not route.get("delegate")


def _ours(route: Any, owned: Owned) -> bool:
    return isinstance(route, Mapping) and route.get("name") in owned


def _layout(
    b: PatchBuilder, ed: _Editor, owned: Owned, everyone: Owned, wanted: list[_Wanted]
) -> None:
    """Each primary's copies as one block right before it; copies already in their block and in
    order stay (rewritten if they drifted), the rest are removed and re-inserted.

    Routes managed by anyone (other owners, ownerless entries) are invisible to the placement:
    they neither count as primaries nor move; only this owner's routes are removed or added."""
    http_path = pointer("spec", "http")
    names = {w.name for w in wanted}
    owned = owned.with_names(names)
    everyone = everyone.with_names(names)
    by_rank: dict[int, list[str]] = {}
    for w in wanted:
        by_rank.setdefault(w.rank, []).append(w.name)

    def remove(indices: list[int]) -> None:
        for i in sorted(indices, reverse=True):
            ed.guard(pointer("spec", "http", i, "name"))
            b.remove(pointer("spec", "http", i))
            ed.forget()

    # 1. Ours that are no longer wanted go (each guarded by its name).
    http: list[Any] = b.get(http_path, [])
    remove([i for i, r in enumerate(http) if _ours(r, owned) and r.get("name") not in names])
    # 2. A block that is not an in-order part of what its primary needs is rebuilt.
    http = b.get(http_path, [])
    blocks: dict[int, list[tuple[int, str]]] = {}
    ranks = _ranks(http, everyone)
    for i, r in enumerate(http):
        if _ours(r, owned):
            blocks.setdefault(ranks[i], []).append((i, r["name"]))
    remove(
        [
            i
            for rank, block in blocks.items()
            if not _subsequence([n for _, n in block], by_rank.get(rank, []))
            for i, _ in block
        ]
    )
    # 3. Insert what is missing, rewrite what drifted: after the last of ours placed so far in
    #    the block, else at the first of ours there, else right before the primary.
    for rank in sorted(by_rank):
        pos: int | None = None
        for w in (x for x in wanted if x.rank == rank):
            routes: list[Any] = b.get(http_path, [])
            theirs = [i for i, r in enumerate(routes) if not _ours(r, everyone)]
            lo = theirs[rank - 1] + 1 if rank > 0 else 0
            hi = theirs[rank] if rank < len(theirs) else len(routes)
            if pos is None:
                pos = next((i for i in range(lo, hi) if _ours(routes[i], owned)), hi)
            at = next(
                (
                    i
                    for i in range(pos, hi)
                    if _ours(routes[i], owned) and routes[i].get("name") == w.name
                ),
                None,
            )
            if at is not None:
                if not json_equal(routes[at], w.body):
                    ed.guard(pointer("spec", "http", at, "name"))
                    b.replace(pointer("spec", "http", at), w.body)
                pos = at + 1
            else:
                b.add(pointer("spec", "http", pos), w.body)
                ed.forget()
                pos += 1


def _subsequence(items: list[Any], of: list[Any]) -> bool:
    it = iter(of)
    return len(set(items)) == len(items) and all(any(x == y for y in it) for x in items)


# -- DestinationRule --------------------------------------------------------------------------


def _plan_dr(
    cfg: IstioConfig, live: LiveObjects, desired: Desired, carried: set[str]
) -> tuple[Patch | None, bool]:
    """Pod-template-hash labels on the stable/canary subsets (Argo's UpdateHash) and subsets for
    additional destinations; every other subset and field stays. Returns the patch and whether
    it removes a subset. ``carried``: subsets this owner's weighted routes reference (ownerless
    ledger entries among them are this owner's)."""
    dr_cfg = cfg.section.destination_rule
    ref = cfg.destination_rule
    assert dr_cfg is not None
    assert ref is not None
    obj = live[ref]
    what = f"DestinationRule {ref.namespace}/{ref.name}"
    b = PatchBuilder(obj)
    ed = _Editor(b)
    key = cfg.section.pod_template_hash_key
    state = desired if isinstance(desired, TrafficState) else None
    hashed = {d.service for d in state.additional_destinations} if state is not None else set()
    view = read_ledger(
        obj, cfg.owner, lambda f, n: f == "subsets" and (n in hashed or n in carried), what=what
    )
    created_before = set(view.names("subsets"))
    labelled: list[str] = []
    subsets: list[Any] = b.get(pointer("spec", "subsets"), [])
    index = {
        s["name"]: i
        for i, s in enumerate(subsets)
        if isinstance(s, Mapping) and isinstance(s.get("name"), str)
    }
    created_after: set[str] = set()
    if state is not None:
        for subset, value in (
            (dr_cfg.stable_subset_name, state.stable_hash),
            (dr_cfg.canary_subset_name, state.canary_hash),
        ):
            i = index.get(subset)
            if i is None:
                raise TargetNotFoundError(
                    f"subset {subset!r} (configured in {cfg.path}.destinationRule) does not exist; "
                    f"subsets: {', '.join(sorted(index)) or 'none'}",
                    plugin=PLUGIN,
                    obj=what,
                )
            if value is not None:
                labelled.append(subset)
                name_guard = pointer("spec", "subsets", i, "name")
                ed.set(pointer("spec", "subsets", i, "labels", key), value, [name_guard])
        if cfg.subset_mode:
            for d in state.additional_destinations:
                if d.pod_template_hash is None:
                    continue
                i = index.get(d.service)
                if i is not None:
                    ed.set(
                        pointer("spec", "subsets", i, "labels", key),
                        d.pod_template_hash,
                        [pointer("spec", "subsets", i, "name")],
                    )
                    if d.service in created_before:
                        created_after.add(d.service)
                    else:
                        labelled.append(d.service)
                    continue
                created_after.add(d.service)
                body = {"name": d.service, "labels": {key: d.pod_template_hash}}
                if b.exists(pointer("spec", "subsets")):
                    b.add(pointer("spec", "subsets", "-"), body)
                else:
                    b.set(pointer("spec", "subsets"), [body])
    view.claim(
        ("labels", "subsets"),
        [*labelled, *sorted(created_after)],
        what=lambda name: f"subset {name!r}",
        plugin=PLUGIN,
        obj=what,
        hint="two owners setting one subset's pod-template-hash label would undo each other",
    )
    removes = False
    current = b.get(pointer("spec", "subsets"), [])
    for i in range(len(current) - 1, -1, -1):
        name = current[i].get("name") if isinstance(current[i], Mapping) else None
        if name in created_before and name not in created_after:
            ed.guard(pointer("spec", "subsets", i, "name"))
            b.remove(pointer("spec", "subsets", i))
            ed.forget()
            removes = True
    view.write(b, {"subsets": created_after, "labels": labelled})
    if isinstance(desired, Cleanup):
        reason = f"cleanup {what}: remove subsets we added"
    else:
        reason = f"{what}: pod-template-hash labels of the stable/canary subsets"
    return b.patch(ref, reason), removes


# -- observation ------------------------------------------------------------------------------


def _observed(t: Target, sel: Selected, dests: list[Dest]) -> ObservedWeights:
    stable = sum(d.weight for d in dests if d.role == "stable")
    canary = sum(d.weight for d in dests if d.role == "canary")
    extra: dict[str, int] = {}
    for d in dests:
        if d.role == "additional" and d.service:
            extra[d.service] = extra.get(d.service, 0) + d.weight
    foreign = sum(d.weight for d in dests if d.role == "foreign")
    return ObservedWeights(
        f"{t.describe()} {sel.label}", stable, canary, tuple(sorted(extra.items())), foreign
    )


def _mirror_percentage(route: Mapping[str, Any]) -> float:
    """Istio's default is 100% when no percentage is given."""
    mirrors = route.get("mirrors")
    if isinstance(mirrors, list) and mirrors and isinstance(mirrors[0], Mapping):
        pct = mirrors[0].get("percentage")
    else:
        pct = route.get("mirrorPercentage")
    value = pct.get("value") if isinstance(pct, Mapping) else None
    return (
        float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 100.0
    )
