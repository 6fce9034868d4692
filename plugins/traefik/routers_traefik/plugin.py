"""The Traefik target: a TraefikService's weighted round robin, and a canary mirror in front of it.

Weights are written on the ``spec.weighted.services[]`` entries of the stable and canary Services
(Argo's behaviour), each edit guarded by the entry's name; a canary entry, and entries for
additional destinations, are added when missing (with the stable entry's port) and listed in the
ledger, so cleanup removes exactly them. Entries for other services keep their share of the
round robin (the shared ``weights.place`` rule). Mirror routes put the canary Service, with a
whole ``percent``, into ``spec.mirroring.mirrors[]`` of the configured mirroring TraefikService.

What a TraefikService cannot express is refused: it matches no requests (its IngressRoute does),
so header routes and mirror routes limited to some requests are errors, never silent no-ops.

A weighted round robin is one owner's (its stable and canary are recorded as that owner's split
in the ledger): another owner whose config names it is refused (OwnershipConflictError), and
its cleanup leaves it alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from routers.contract import (
    API_VERSION,
    Capabilities,
    ClusterFacts,
    MatchLimits,
    MirrorSupport,
    Observation,
    ObservedWeights,
    Permission,
)
from routers.errors import (
    ConfigError,
    PlanError,
    Problem,
    TargetNotFoundError,
    UnsupportedError,
    WeightFitError,
)
from routers.model import Cleanup, Desired, MirrorRoute, RoutingConfig, TrafficState
from routers.planning import weights
from routers.planning.objects import LiveObjects, ObjectRef, Required, Shape, check_shapes
from routers.planning.ownership import SPLIT, Ledger, OwnerLedger, split_entry
from routers.planning.patch import PatchBuilder, pointer
from routers.planning.plan import Note, Operation, Plan
from routers.simulate import Request, Routed
from routers_traefik import config as config_mod
from routers_traefik import evaluate
from routers_traefik.config import CRD, GROUP, KIND, Config
from routers_traefik.evaluate import weight_of

__all__ = ["Plugin"]

PLUGIN = "traefik"
MAX_WEIGHT = 2**31 - 1
"""Bound for rescaled weights (the CRD sets none; Traefik's weight is a Go int)."""
SERVICES = pointer("spec", "weighted", "services")
MIRRORS = pointer("spec", "mirroring", "mirrors")

_MIRROR_LIMITS = MatchLimits(path_match=frozenset({"prefix"}), max_matches_per_route=1)
_NO_HEADERS = (
    "a TraefikService matches no requests (the IngressRoute in front of it does), so header "
    "routes cannot be expressed; use the gatewayapi plugin with Traefik's kubernetesGateway "
    "provider for header routes"
)
_MIRROR_ALL = (
    "mirror routes add the canary Service, with a whole percent, to the mirrors of the mirroring "
    "TraefikService in front of the weighted one (argo-mirror-<weighted> or "
    "mirrorTraefikServiceName), which copies every request it serves: their match is path prefix /"
)
_STICKY = (
    "with weighted.sticky, clients holding the sticky cookie keep their service: weights "
    "apply to new clients"
)


class Plugin:
    name = PLUGIN
    api_version = API_VERSION
    crds: tuple[str, ...] = (CRD,)

    # -- declarations -----------------------------------------------------------------------

    def capabilities(
        self, config: Any | None = None, facts: ClusterFacts | None = None
    ) -> Capabilities:
        return Capabilities(
            mirror=MirrorSupport.PERCENT,
            mirror_limits=_MIRROR_LIMITS,
            max_routes=1,
            notes=(_NO_HEADERS, _MIRROR_ALL, _STICKY),
        )

    def parse_config(self, section: Mapping[str, Any], routing: RoutingConfig) -> Config:
        return config_mod.parse(section, routing)

    def targets(self, config: Config, live: LiveObjects) -> Sequence[ObjectRef]:
        return [config.weighted, config.mirror]

    def permissions(self, config: Config) -> Sequence[Permission]:
        return [Permission(GROUP, "traefikservices", ("get", "patch"))]

    # -- planning ---------------------------------------------------------------------------

    def plan(
        self, config: Config, live: LiveObjects, desired: Desired, facts: ClusterFacts
    ) -> Plan:
        check_shapes(PLUGIN, live, {(GROUP, KIND): _SHAPE})
        notes: list[Note] = []
        ops = [_plan_weighted(config, live, desired, notes), _plan_mirror(config, live, desired)]
        return Plan.of(PLUGIN, ops, notes)

    # -- observing --------------------------------------------------------------------------

    def observe(self, config: Config, live: LiveObjects, facts: ClusterFacts) -> Observation:
        problems: list[str] = []
        found: list[ObservedWeights] = []
        ts = live.get(config.weighted)
        if ts is None:
            problems.append(f"{config.weighted} does not exist")
        else:
            entries = _Entries.of(config, ts, _weighted_ledger(config, ts))
            found.append(
                ObservedWeights(
                    f"TraefikService {config.weighted.namespace}/{config.weighted.name}",
                    sum(weight_of(entries.services[i]) for i in entries.stable),
                    sum(weight_of(entries.services[i]) for i in entries.canary),
                    tuple(
                        (name, sum(weight_of(entries.services[i]) for i in idx))
                        for name, idx in sorted(entries.added.items())
                    ),
                    foreign=sum(weight_of(entries.services[i]) for i in entries.foreign),
                )
            )
            missing = sorted(set(entries.ledger) - set(entries.added) - {config.canary})
            if config.canary in entries.ledger and not entries.canary:
                missing.insert(0, config.canary)
            problems.extend(
                f"{config.weighted}: the entry canary-routers added for Service {name!r} is "
                "missing (removed by someone else?); the next plan restores it"
                for name in missing
            )
        mirrors: dict[str, float] = {}
        mts = live.get(config.mirror)
        if mts is not None:
            view = _mirror_ledger(config, mts)
            route = next(iter(view.names("route")), None)
            ours = next(iter(_our_mirrors(config, mts, view)), None)
            if route is not None and ours is not None:
                mirrors[route] = float((_mirrors(mts)[ours]).get("percent", 0))
            elif route is not None:
                problems.append(
                    f"{config.mirror}: mirror route {route!r} has no mirrors entry for "
                    f"{config.canary!r} (removed by someone else?); the next plan restores it"
                )
        return Observation(
            PLUGIN, weights=tuple(found), mirror_routes=mirrors, problems=tuple(problems)
        )

    # -- data plane -------------------------------------------------------------------------

    def evaluate(self, config: Config, objects: LiveObjects, request: Request) -> Sequence[Routed]:
        return evaluate.evaluate(config, objects, request)

    def sample_requests(self, config: Config, objects: LiveObjects) -> Sequence[Request]:
        return evaluate.sample_requests(config, objects)


# -- the weighted round robin -------------------------------------------------------------------


# What we read of a TraefikService (traefik.io/v1alpha1 types): objects from manifest files were
# never validated by an API server.
_ENTRY: dict[str, Shape] = {
    "name": Required(str),
    "namespace": str,
    "kind": str,
    "port": (int, str),
}
_SHAPE: Shape = {
    "spec": {
        "weighted": {"services": [{**_ENTRY, "weight": int}]},
        "mirroring": {**_ENTRY, "name": str, "mirrors": [{**_ENTRY, "percent": int}]},
    }
}


def _is_service(entry: Any, name: str, namespace: str) -> bool:
    return (
        isinstance(entry, Mapping)
        and entry.get("name") == name
        and (entry.get("kind") or "Service") == "Service"
        and (entry.get("namespace") or namespace) == namespace
    )


@dataclass
class _Entries:
    """Indices of ``spec.weighted.services[]`` by role."""

    services: list[Any]
    ledger: list[str]
    stable: list[int] = field(default_factory=list)
    canary: list[int] = field(default_factory=list)
    added: dict[str, list[int]] = field(default_factory=dict)
    foreign: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, config: Config, ts: Mapping[str, Any], view: OwnerLedger) -> _Entries:
        services = ((ts.get("spec") or {}).get("weighted") or {}).get("services")
        book = view.names("services")
        out = cls(list(services) if isinstance(services, list) else [], book)
        for i, e in enumerate(out.services):
            if _is_service(e, config.stable, config.namespace):
                out.stable.append(i)
            elif _is_service(e, config.canary, config.namespace):
                out.canary.append(i)
            elif any(_is_service(e, n, config.namespace) for n in book):
                out.added.setdefault(str(e["name"]), []).append(i)
            else:
                out.foreign.append(i)
        return out

    def ours(self) -> list[int]:
        return [*self.stable, *self.canary, *(i for idx in self.added.values() for i in idx)]

    def weight(self, indices: Sequence[int]) -> int:
        return sum(weight_of(self.services[i]) for i in indices)

    def keys(self, namespace: str) -> set[str]:
        """Every Service entry as a ledger key, ``namespace/name``."""
        return {
            f"{e.get('namespace') or namespace}/{e['name']}"
            for e in self.services
            if isinstance(e, Mapping)
            and (e.get("kind") or "Service") == "Service"
            and isinstance(e.get("name"), str)
        }


def _weighted_ledger(config: Config, ts: Mapping[str, Any]) -> OwnerLedger:
    """The round robin's ledger as this owner sees it; ownerless entries (written before
    per-owner ledgers) are this owner's when the round robin lists its stable Service."""
    services = ((ts.get("spec") or {}).get("weighted") or {}).get("services")
    mine = any(_is_service(e, config.stable, config.namespace) for e in services or [])
    what = f"TraefikService {config.weighted.namespace}/{config.weighted.name}"
    return Ledger.of(ts, what=what).view(config.owner, lambda _k, _n: mine)


def _mirror_ledger(config: Config, ts: Mapping[str, Any]) -> OwnerLedger:
    """The mirroring service's ledger as this owner sees it; ownerless entries are this owner's
    when they list its canary among the mirrors."""
    book = Ledger.of(ts, what=f"TraefikService {config.mirror.namespace}/{config.mirror.name}")
    legacy = book.unowned.get("mirrors")
    mine = isinstance(legacy, list) and config.canary in legacy
    return book.view(config.owner, lambda _k, _n: mine)


def _split_of(config: Config) -> dict[str, str]:
    return split_entry(f"{config.namespace}/{config.stable}", f"{config.namespace}/{config.canary}")


def _set_weight(b: PatchBuilder, i: int, value: int) -> None:
    """Set one entry's weight, guarded by its name (indices shift under concurrent writers)."""
    if b.get(f"{SERVICES}/{i}/weight", None) != value:
        b.test(f"{SERVICES}/{i}/name")
        b.set(f"{SERVICES}/{i}/weight", value)


def _new_entry(config: Config, stable: Mapping[str, Any], name: str, weight: int) -> dict[str, Any]:
    """An entry for a Service we add: the stable entry's port (the same application's ports)."""
    entry: dict[str, Any] = {"name": name}
    if "port" in stable:
        entry["port"] = stable["port"]
    entry["weight"] = weight
    return entry


def _plan_weighted(
    config: Config, live: LiveObjects, desired: Desired, notes: list[Note]
) -> Operation | None:
    ref = config.weighted
    ts = live.get(ref)
    if ts is None:
        raise TargetNotFoundError(
            "does not exist (weightedTraefikServiceName)", plugin=PLUGIN, obj=str(ref)
        )
    view = _weighted_ledger(config, ts)
    entries = _Entries.of(config, ts, view)
    if not isinstance(((ts.get("spec") or {}).get("weighted") or {}).get("services"), list):
        raise PlanError(
            "has no spec.weighted.services: weightedTraefikServiceName must name a weighted "
            "round robin TraefikService",
            plugin=PLUGIN,
            obj=str(ref),
        )
    if len(entries.stable) != 1 or len(entries.canary) > 1:
        twice = config.stable if len(entries.stable) > 1 else config.canary
        raise PlanError(
            f"lists Service {twice!r} more than once in spec.weighted.services"
            if entries.stable
            else f"lists no entry for the stable Service {config.stable!r} in "
            "spec.weighted.services (kind Service, with its port); canary-routers weights the "
            "entries of the round robin, it does not invent the stable one",
            plugin=PLUGIN,
            obj=str(ref),
        )
    holder = view.splitter(entries.keys(config.namespace))
    if isinstance(desired, TrafficState):
        view.claim_split(
            entries.keys(config.namespace), what="its round robin", plugin=PLUGIN, obj=str(ref)
        )
    elif holder is not None:
        notes.append(Note(PLUGIN, f"{ref} is weighted by owner {holder!r}: left as is"))
        return None
    if isinstance(desired, Cleanup) and not desired.restore_stable:
        return None  # weights and the entries that carry them stay; the ledger keeps them listed
    split = weights.split(desired) if isinstance(desired, TrafficState) else None
    wanted = dict(split.additional) if split is not None else {}
    for i, name in enumerate(wanted):
        if name in (config.stable, config.canary):
            raise ConfigError(
                [
                    Problem(
                        f"additionalDestinations[{i}].service",
                        f"{name!r} is the stable or canary Service; the round robin lists each "
                        "Service once",
                    )
                ]
            )
        if any(_is_service(entries.services[i], name, config.namespace) for i in entries.foreign):
            raise PlanError(
                f"already lists Service {name!r}, which the state names as an additional "
                "destination; canary-routers only weights entries it added (remove that entry "
                "or the destination)",
                plugin=PLUGIN,
                obj=str(ref),
            )
    ours_before = entries.weight(entries.ours())
    b = PatchBuilder(ts)
    drop = [i for name, idx in entries.added.items() if name not in wanted for i in idx]
    if split is None and config.canary in entries.ledger:
        drop += entries.canary
    for i in sorted(drop, reverse=True):
        b.test(f"{SERVICES}/{i}/name")
        b.remove(f"{SERVICES}/{i}")
    entries = _Entries.of(config, b.doc, view)
    (s,) = entries.stable
    stable_entry = entries.services[s]
    added: list[str] = [config.canary] if config.canary in entries.ledger else []
    kept = weights.foreign_record(view.data(weights.FOREIGN))
    if split is None:
        _set_weight(b, s, _unscale(entries, kept, ours_before or 1, b))
        for c in entries.canary:
            _set_weight(b, c, 0)
        added = [n for n in added if n != config.canary]
        kept = {}
    else:
        split = _place(config, entries, split, ours_before, b, notes, kept)
        _set_weight(b, s, split.stable)
        if entries.canary:
            _set_weight(b, entries.canary[0], split.canary)
        else:
            b.add(f"{SERVICES}/-", _new_entry(config, stable_entry, config.canary, split.canary))
            added = [config.canary]
        for name, w in split.additional:
            for i in entries.added.get(name, []):
                _set_weight(b, i, w)
            if name not in entries.added:
                b.add(f"{SERVICES}/-", _new_entry(config, stable_entry, name, w))
            added.append(name)
    view.write(
        b,
        {
            "services": added,
            SPLIT: _split_of(config) if split is not None else None,
            weights.FOREIGN: kept or None,
        },
    )
    return b.patch(ref, _reason(desired))


_WRR = "weighted"
"""The one weighted list of a round robin, as a location in the ledger's ``foreign`` record."""


def _foreign_keys(entries: _Entries) -> list[str]:
    keys = []
    for i in entries.foreign:
        e = entries.services[i]
        if isinstance(e, Mapping):
            keys.append(f"{e.get('kind') or 'Service'}:{e.get('namespace') or ''}/{e.get('name')}")
        else:
            keys.append(f"#{i}")
    return weights.unique_keys(keys)


def _unscale(
    entries: _Entries, kept: dict[str, dict[str, int]], stable: int, b: PatchBuilder
) -> int:
    """Cleanup gives the entries we rescaled their weights back (and stable the weight that
    keeps every share), when nobody changed them since; returns stable's weight."""
    keys = dict(zip(_foreign_keys(entries), entries.foreign, strict=True))
    now = {k: weight_of(entries.services[i]) for k, i in keys.items()}
    got = weights.give_back(kept, _WRR, now, stable)
    if got is None:
        return stable
    before, back = got
    for k, i in keys.items():
        _set_weight(b, i, before[k])
    return back


def _place(
    config: Config,
    entries: _Entries,
    split: weights.Split,
    ours: int,
    b: PatchBuilder,
    notes: list[Note],
    kept: dict[str, dict[str, int]],
) -> weights.Split:
    """Our split beside the services we do not own (``weights.place``: they keep their share of
    the round robin, the canary gets its weight/total of all of it); ``kept`` records their
    weights before a rescale, for cleanup."""
    foreign = [(i, weight_of(entries.services[i])) for i in entries.foreign]
    try:
        placed = weights.place(
            split,
            ours,
            [w for _, w in foreign],
            scope=config.weight_scope,
            max_weight=MAX_WEIGHT,
        )
    except WeightFitError as exc:
        raise exc.located(plugin=PLUGIN, obj=str(config.weighted)) from None
    before = dict(zip(_foreign_keys(entries), (w for _, w in foreign), strict=True))
    weights.remember(kept, _WRR, before, placed, ours=ours)
    for (i, w), new in zip(foreign, placed.foreign, strict=True):
        if new != w:
            _set_weight(b, i, new)
    if placed.shares.foreign:
        notes.append(
            Note(
                PLUGIN,
                f"{config.weighted}: {placed.describe(split)}",
                level="warning" if placed.rounded else "info",
            )
        )
    return placed.split


def _reason(desired: Desired) -> str:
    if isinstance(desired, Cleanup):
        return "cleanup: all traffic to stable, entries canary-routers added removed"
    split = weights.split(desired)
    return f"canary weight {split.canary}/{split.total}"


# -- the mirroring service ----------------------------------------------------------------------


def _mirrors(ts: Mapping[str, Any]) -> list[Any]:
    mirrors = ((ts.get("spec") or {}).get("mirroring") or {}).get("mirrors")
    return list(mirrors) if isinstance(mirrors, list) else []


def _our_mirrors(config: Config, ts: Mapping[str, Any], view: OwnerLedger) -> list[int]:
    if config.canary not in view.names("mirrors"):
        return []
    return [
        i for i, m in enumerate(_mirrors(ts)) if _is_service(m, config.canary, config.namespace)
    ]


def _check_front(config: Config, ref: ObjectRef, ts: Mapping[str, Any]) -> None:
    """The mirroring service's main service must be the weighted one, or mirrors copy traffic
    that the weights do not split."""
    main = (ts.get("spec") or {}).get("mirroring")
    if not isinstance(main, Mapping):
        raise PlanError(
            "has no spec.mirroring: mirrorTraefikServiceName must name a mirroring TraefikService",
            plugin=PLUGIN,
            obj=str(ref),
        )
    weighted = config.weighted
    if not (
        main.get("name") == weighted.name
        and main.get("kind") == "TraefikService"
        and (main.get("namespace") or config.namespace) == weighted.namespace
    ):
        raise PlanError(
            f"spec.mirroring does not serve TraefikService {weighted.name!r} (its main service "
            f"is {main.get('kind') or 'Service'} {main.get('name')!r}): the mirrors would copy "
            "requests the weights do not split",
            plugin=PLUGIN,
            obj=str(ref),
        )


def _mirror_percent(route: MirrorRoute) -> int:
    for m in route.matches:
        if m.path is None or m.path.kind != "prefix" or m.path.value.rstrip("/"):
            raise UnsupportedError(
                PLUGIN,
                f"setMirrorRoute {route.name!r}",
                "a mirroring TraefikService copies every request it serves, so the only match it "
                "can express is path prefix /",
                hint="narrow the traffic in the IngressRoute that references the TraefikService",
            )
    return int(route.percentage)


def _plan_mirror(config: Config, live: LiveObjects, desired: Desired) -> Operation | None:
    ref = config.mirror
    ts = live.get(ref)
    routes = desired.mirror_routes if isinstance(desired, TrafficState) else ()
    if ts is None:
        if routes:
            raise TargetNotFoundError(
                "does not exist: mirror routes need a mirroring TraefikService whose main service "
                f"is {config.weighted.name!r} (named argo-mirror-<weightedTraefikServiceName> or "
                "mirrorTraefikServiceName), referenced by the IngressRoute",
                plugin=PLUGIN,
                obj=str(ref),
            )
        return None
    if isinstance(desired, TrafficState):
        _check_front(config, ref, ts)
    b = PatchBuilder(ts)
    view = _mirror_ledger(config, ts)
    ours = _our_mirrors(config, ts, view)
    book: dict[str, list[str]] = {}
    if routes:
        (route,) = routes
        percent = _mirror_percent(route)
        if ours:
            if b.get(f"{MIRRORS}/{ours[0]}/percent", None) != percent:
                b.test(f"{MIRRORS}/{ours[0]}/name")
                b.set(f"{MIRRORS}/{ours[0]}/percent", percent)
        else:
            taken = [
                i
                for i, m in enumerate(_mirrors(ts))
                if _is_service(m, config.canary, config.namespace)
            ]
            view.claim(
                "mirrors",
                [config.canary],
                what=lambda svc: f"the mirror to Service {svc!r}",
                plugin=PLUGIN,
                obj=str(ref),
            )
            if taken:
                raise PlanError(
                    f"spec.mirroring.mirrors[{taken[0]}] already mirrors to the canary Service "
                    "and was not added by canary-routers",
                    plugin=PLUGIN,
                    obj=str(ref),
                )
            port = _stable_port(config, live)
            entry = {"name": config.canary, **({"port": port} if port is not None else {})}
            entry["percent"] = percent
            if b.exists(MIRRORS):
                b.add(f"{MIRRORS}/-", entry)
            else:
                b.set(MIRRORS, [entry])
        book.update(mirrors=[config.canary], route=[route.name])
    else:
        for i in reversed(ours):
            b.test(f"{MIRRORS}/{i}/name")
            b.remove(f"{MIRRORS}/{i}")
        if ours and b.get(MIRRORS, None) == []:
            # The list held only our entry (an empty list and none mean the same to Traefik):
            # leave the object as it was before.
            b.remove(MIRRORS)
    view.write(b, book)
    reason = f"mirror route {routes[0].name!r}" if routes else "no mirror route: canary mirror off"
    return b.patch(ref, reason)


def _stable_port(config: Config, live: LiveObjects) -> Any:
    ts = live.get(config.weighted) or {}
    entries = _Entries.of(config, ts, _weighted_ledger(config, ts))
    return entries.services[entries.stable[0]].get("port") if entries.stable else None
