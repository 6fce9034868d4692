"""The Istio plugin: VirtualService weights (http/tls/tcp), DestinationRule subsets, header and
mirror routes, delegates.

Every edit is an explicit, guarded JSON-patch op on the live dict; nothing is rebuilt from a
model, so ``retries``, ``timeout``, ``withoutHeaders``, ``fault``, ``corsPolicy``, delegates and
destinations we do not own pass through untouched (Argo #2767, #2266, #3125).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from routers.contract import (
    ALL_MATCH_TYPES,
    API_VERSION,
    Capabilities,
    ClusterFacts,
    MirrorSupport,
    Observation,
    ObservedWeights,
    Permission,
)
from routers.errors import PlanError, RoutersError, TargetNotFoundError, UnsupportedError
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
from routers.planning.objects import LiveObjects, ObjectRef
from routers.planning.ownership import ledger, write_ledger
from routers.planning.patch import PatchBuilder, json_equal, pointer
from routers.planning.plan import Note, Patch, Plan
from routers.planning.routes import ordered_routes
from routers_istio.config import IstioConfig
from routers_istio.hosts import host_for
from routers_istio.matches import Disjoint, Undecidable, cross_product
from routers_istio.routes import (
    PLUGIN,
    Context,
    Dest,
    Selected,
    Style,
    Target,
    classify,
    delegate_refs,
    owned_routes,
    resolve,
)

__all__ = ["IstioPlugin"]

MIRROR_KEYS = ("mirror", "mirrorPercentage", "mirrors", "mirror_percent", "mirrorPercent")
"""Fields that make a route mirror; a managed route sets its own (or none)."""


class IstioPlugin:
    name = PLUGIN
    api_version = API_VERSION
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
            "header and mirror routes copy the primary http route's behaviour (rewrite, "
            "timeout, retries, headers) and AND its match conditions",
            "weights sum to weightTotal (default 100, accepted by every Istio version); other "
            "totals need Istio >= 1.15",
        ]
        if not http:
            notes.append("only tls/tcp routes are selected: no header or mirror routes")
        return Capabilities(
            weight=True,
            additional_destinations=True,
            header_routes=http,
            mirror=MirrorSupport.FRACTION if http else MirrorSupport.NONE,
            header_match=ALL_MATCH_TYPES if http else frozenset(),
            path_match=ALL_MATCH_TYPES if http else frozenset(),
            query_match=ALL_MATCH_TYPES if http else frozenset(),
            method_match=http,
            max_total=max_total,
            readiness=False,
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
        vs_ops: list[Patch | None] = []
        decreasing = False
        for t in targets:
            result = _plan_vs(cfg, t, base, desired, managed)
            vs_ops.append(result.patch)
            decreasing = decreasing or result.canary_decreasing
            for n in result.notes:
                notes.setdefault(n.message, n)
        dr_ops: list[Patch | None] = []
        removes_subsets = False
        if cfg.destination_rule is not None:
            patch, removes_subsets = _plan_dr(cfg, live, desired)
            dr_ops.append(patch)
        # A subset's selector changes while the subset gets little traffic: repoint (or create)
        # subsets before weights move traffic onto them, move traffic away before a subset is
        # repointed to new pods or deleted (Argo PR #4564 / #4612).
        ops = [*vs_ops, *dr_ops] if decreasing or removes_subsets else [*dr_ops, *vs_ops]
        return Plan.of(self.name, ops, list(notes.values()))

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
            ctx = base.with_ledger(t.obj)
            for sel in t.selected:
                route = t.obj["spec"][sel.kind][sel.index]
                found.append(_observed(t, sel, classify(route, ctx, t.namespace)))
            http = _http(t.obj)
            owned = owned_routes(t.obj, cfg)
            present = set()
            for r in http:
                name = r.get("name") if isinstance(r, Mapping) else None
                if name not in owned:
                    continue
                present.add(name)
                if any(k in r for k in MIRROR_KEYS):
                    mirrors[name] = _mirror_percentage(r)
                    primary = t.primary
                    if primary is not None and not json_equal(
                        r.get("route"), http[primary.index].get("route")
                    ):
                        problems.append(
                            f"{t.describe()}: mirror route {name!r} serves different "
                            f"destinations than {primary.label}; the next plan re-syncs it"
                        )
                elif name not in headers:
                    headers.append(name)
            for name in ledger(t.obj).get("routes") or []:
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


def _total(cfg: IstioConfig, state: TrafficState) -> int:
    fixed = cfg.section.fixed_total
    return state.total if fixed is None else fixed


@dataclass
class _VsResult:
    patch: Patch | None
    notes: list[Note] = field(default_factory=list)
    canary_decreasing: bool = False


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
    led = ledger(t.obj)
    added_before = {s for s in led.get("destinations") or [] if isinstance(s, str)}
    ctx = base.with_ledger(t.obj)
    b = PatchBuilder(t.obj)
    ed = _Editor(b)
    result = _VsResult(None)
    added_after: set[str] = set()
    weighted_after: set[str] = set()
    wanted = {d.service: d for d in state.additional_destinations} if state is not None else {}

    for n, sel in enumerate(t.selected):
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

        def guards(d: Dest, rg: list[str] = rguards) -> list[str]:
            return [*rg, dpath(d, "destination")]

        if state is not None:
            total = _total(cfg, state)
            room = total - sum(d.weight for d in foreign)
            if room < 1:
                raise PlanError(
                    f"{sel.label}: destinations we do not own take weight "
                    f"{total - room} of {total}; nothing is left for stable and canary",
                    plugin=PLUGIN,
                    obj=t.describe(),
                )
            requested = weights.split(state)
            emitted = requested.scaled(room)
            if emitted.rounded:
                result.notes.append(
                    Note(
                        PLUGIN,
                        f"{t.describe()} {sel.label}: {emitted.describe_rounding(requested)}",
                    )
                )
            if foreign and room != total:
                result.notes.append(
                    Note(
                        PLUGIN,
                        f"{t.describe()} {sel.label}: destinations we do not own keep weight "
                        f"{total - room} of {total}; the split applies to the remaining {room}",
                    )
                )
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
            after = Fraction(emitted.canary, sum(emitted.weights) + sum(d.weight for d in foreign))
            if n == 0:
                result.canary_decreasing = after < before
        elif isinstance(desired, Cleanup):
            appended = []
            ours = stable.weight + canary.weight + sum(d.weight for d in remove)
            if desired.restore_stable:
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

    names = _layout(cfg, t, b, ed, managed, state, ctx)
    data = dict(led)
    data["routes"] = sorted(names)
    data["destinations"] = sorted(added_after)
    data["weights"] = sorted(weighted_after)
    write_ledger(b, data)
    result.patch = b.patch(t.ref, _reason(t, desired))
    return result


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
        if not _is_label(service):
            raise UnsupportedError(
                PLUGIN,
                f"additional destination {service!r}",
                "its DestinationRule subset would be named after the Service, which must then be "
                "a DNS-1123 label",
            )
        host = route["route"][stable.index]["destination"]["host"]
        return {"destination": {"host": host, "subset": service}, "weight": weight}
    return {
        "destination": {"host": host_for(service, cfg.namespace, t.namespace)},
        "weight": weight,
    }


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _is_label(value: str) -> bool:
    return len(value) <= 63 and _DNS_LABEL.match(value) is not None


# -- managed routes ---------------------------------------------------------------------------


def _managed_body(
    t: Target,
    primary: Selected,
    route: ManagedRoute,
    doc_route: Mapping[str, Any],
    cfg: IstioConfig,
    ctx: Context,
) -> dict[str, Any]:
    """A managed route: the primary route's behaviour, our matches, our destinations."""
    kind = "setHeaderRoute" if isinstance(route, HeaderRoute) else "setMirrorRoute"
    instruction = f"{kind} {route.name!r}"
    where = f"{t.describe()} {primary.label}"
    try:
        match = cross_product(doc_route.get("match"), route.matches)
    except Undecidable as exc:
        raise UnsupportedError(
            PLUGIN,
            instruction,
            f"its matches cannot be ANDed with the conditions of {where}: {exc}",
            hint="use matches compatible with the primary route's (e.g. a narrower path prefix)",
        ) from None
    except Disjoint:
        raise UnsupportedError(
            PLUGIN,
            instruction,
            f"no request can satisfy both its matches and the conditions of {where}",
        ) from None
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


def _rank(http: list[Any], owned: set[str], index: int) -> int:
    return sum(1 for r in http[:index] if r.get("name") not in owned)


def _layout(
    cfg: IstioConfig,
    t: Target,
    b: PatchBuilder,
    ed: _Editor,
    managed: list[ManagedRoute],
    state: TrafficState | None,
    ctx: Context,
) -> list[str]:
    """Managed routes as one block, in precedence order, right before the first route that
    could shadow them; returns the names now managed here."""
    http_path = pointer("spec", "http")
    http: list[Any] = b.get(http_path, [])
    owned = owned_routes(t.obj, cfg)
    primary = t.primary
    wanted: list[tuple[str, dict[str, Any]]] = []
    if primary is not None and state is not None:
        doc_route = http[primary.index]
        wanted = [(r.name, _managed_body(t, primary, r, doc_route, cfg, ctx)) for r in managed]
    names = {n for n, _ in wanted}
    for i, r in enumerate(http):
        name = r.get("name") if isinstance(r, Mapping) else None
        if name in names and name not in owned:
            raise PlanError(
                f"http[{i}] is named {name!r} but was not added by us (no ledger entry, not in "
                "managedRoutes); rename it, or list it in managedRoutes to hand it over",
                plugin=PLUGIN,
                obj=t.describe(),
            )
    owned |= names
    # Ranks among routes that are not ours do not change when ours are removed or inserted;
    # the selected indices are those of the object as read.
    selected = [s.index for s in t.selected if s.kind == "http"]
    ranks = [_rank(http, owned, i) for i in selected]
    ranks += [
        _rank(http, owned, i)
        for i, r in enumerate(http)
        if r.get("name") not in owned and not r.get("match")
    ]
    anchor_rank = min(ranks, default=len(http))

    # 1. Managed routes that are no longer wanted go (descending, each guarded by its name).
    for i in range(len(http) - 1, -1, -1):
        name = http[i].get("name") if isinstance(http[i], Mapping) else None
        if name in owned and name not in names:
            ed.guard(pointer("spec", "http", i, "name"))
            b.remove(pointer("spec", "http", i))
            ed.forget()
    if not wanted:
        return []
    http = b.get(http_path)

    def anchor() -> int:
        current = b.get(http_path)
        seen = 0
        for i, r in enumerate(current):
            if r.get("name") not in owned:
                if seen == anchor_rank:
                    return i
                seen += 1
        return len(current)

    # 2. Keep the current block if it is in order and in place; otherwise rebuild it.
    order = [n for n, _ in wanted]
    current = [(i, r.get("name")) for i, r in enumerate(http) if r.get("name") in owned]
    a = anchor()
    in_place = [i for i, _ in current] == list(range(a - len(current), a)) and _subsequence(
        [n for _, n in current], order
    )
    if not in_place:
        for i, _ in reversed(current):
            ed.guard(pointer("spec", "http", i, "name"))
            b.remove(pointer("spec", "http", i))
            ed.forget()
        current = []
    start = anchor() - len(current)
    # 3. Insert what is missing, rewrite what drifted.
    for k, (name, body) in enumerate(wanted):
        i = start + k
        routes = b.get(http_path)
        if i < len(routes) and routes[i].get("name") == name:
            if not json_equal(routes[i], body):
                ed.guard(pointer("spec", "http", i, "name"))
                b.replace(pointer("spec", "http", i), body)
        else:
            b.add(pointer("spec", "http", i), body)
            ed.forget()
    return order


def _subsequence(items: list[Any], of: list[Any]) -> bool:
    it = iter(of)
    return len(set(items)) == len(items) and all(any(x == y for y in it) for x in items)


# -- DestinationRule --------------------------------------------------------------------------


def _plan_dr(cfg: IstioConfig, live: LiveObjects, desired: Desired) -> tuple[Patch | None, bool]:
    """Pod-template-hash labels on the stable/canary subsets (Argo's UpdateHash) and subsets for
    additional destinations; every other subset and field stays. Returns the patch and whether
    it removes a subset."""
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
    led = ledger(obj)
    created_before = {s for s in led.get("subsets") or [] if isinstance(s, str)}
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
                    continue
                if not _is_label(d.service):
                    raise UnsupportedError(
                        PLUGIN,
                        f"additional destination {d.service!r}",
                        "its DestinationRule subset would be named after the Service, which must "
                        "then be a DNS-1123 label",
                    )
                body = {"name": d.service, "labels": {key: d.pod_template_hash}}
                if b.exists(pointer("spec", "subsets")):
                    b.add(pointer("spec", "subsets", "-"), body)
                else:
                    b.set(pointer("spec", "subsets"), [body])
                created_after.add(d.service)
    removes = False
    current = b.get(pointer("spec", "subsets"), [])
    for i in range(len(current) - 1, -1, -1):
        name = current[i].get("name") if isinstance(current[i], Mapping) else None
        if name in created_before and name not in created_after:
            ed.guard(pointer("spec", "subsets", i, "name"))
            b.remove(pointer("spec", "subsets", i))
            ed.forget()
            removes = True
    data = dict(led)
    data["subsets"] = sorted(created_after)
    write_ledger(b, data)
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
    return ObservedWeights(
        f"{t.describe()} {sel.label}", stable, canary, tuple(sorted(extra.items()))
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
