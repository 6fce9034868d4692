"""Planning one TrafficSplit: create it, or edit the backends and matches we own in place.

Backends are found by Service name (never by position) and every edit is guarded by a ``test``
of that name at the index we touch. Backends and ``matches`` entries we add to a TrafficSplit
are listed in its ledger, so cleanup removes exactly those; backends others listed keep their
weight (Argo replaces the whole list and drops them).

A TrafficSplit splits one root Service: its weights are one owner's. A second owner's config
naming the same TrafficSplit is refused (OwnershipConflictError), and so is an HTTPRouteGroup
another owner's header routes live in (a TrafficSplit's matches take whole groups).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from routers.errors import LEGACY_HOLDER, OwnershipConflictError, PlanError, WeightFitError
from routers.model import Cleanup, WeightScope
from routers.planning import weights
from routers.planning.objects import JSON, ObjectRef
from routers.planning.ownership import (
    SPLIT,
    OwnerLedger,
    empty_ledger,
    is_created_by_us,
    owner_metadata,
    read_ledger,
)
from routers.planning.patch import PatchBuilder, json_equal, pointer
from routers.planning.plan import Create, Note, Patch
from routers_smi.config import ROUTE_GROUP_KIND, SPLIT_GROUP, Config
from routers_smi.quantity import as_integers, parse_weight

__all__ = [
    "Backend",
    "SplitPlanner",
    "conflict",
    "create_split",
    "header_reason",
    "our_match_names",
    "split_ledger",
]

Backend = tuple[str, int]

_LOCATION = "backends"
"""The one weighted list of a TrafficSplit, as a location in the ledger's ``foreign`` record."""


def split_ledger(config: Config, obj: Mapping[str, Any]) -> OwnerLedger:
    """The TrafficSplit's ledger as this owner sees it; ownerless entries (written before
    per-owner ledgers) are this owner's when the split's backends hold its stable and canary."""
    spec = obj.get("spec")
    backends = spec.get("backends") if isinstance(spec, Mapping) else None
    services = {b.get("service") for b in backends or [] if isinstance(b, Mapping)}
    mine = {config.stable, config.canary} <= services
    what = f"TrafficSplit {config.namespace}/{config.split_name}"
    return read_ledger(obj, config.owner, lambda _k, _n: mine, what=what)


def our_match_names(config: Config, obj: Mapping[str, Any]) -> list[str]:
    """HTTPRouteGroup names this owner added to ``spec.matches`` (from the ledger)."""
    return split_ledger(config, obj).names("matches")


def conflict(
    config: Config, what: str, obj: str, view: OwnerLedger, plugin: str
) -> OwnershipConflictError:
    holder = sorted(view.others)[0] if view.others else LEGACY_HOLDER
    return OwnershipConflictError(
        what,
        owner=config.owner,
        holder=holder,
        plugin=plugin,
        obj=obj,
        hint="a TrafficSplit splits one root Service and takes whole HTTPRouteGroups: give "
        "each owner its own (trafficSplitName, httpRouteGroupName)",
    )


def _ledger_data(
    config: Config, backends: Sequence[str], matches: Sequence[str], weighted: bool
) -> dict[str, Any]:
    return {
        "backends": backends,
        "matches": matches,
        SPLIT: {"stable": config.stable, "canary": config.canary} if weighted else None,
    }


def create_split(
    config: Config,
    ref: ObjectRef,
    backends: Sequence[Backend],
    group: str | None,
    plugin: str,
    routes: Sequence[str] = (),
) -> Create:
    meta = owner_metadata(plugin)
    book = _ledger_data(config, [s for s, _ in backends], [group] if group else [], True)
    meta["annotations"].update(empty_ledger(config.owner).annotation(book))
    spec: JSON = {
        "service": config.root,
        "backends": [{"service": s, "weight": w} for s, w in backends],
    }
    if group:
        spec["matches"] = [{"kind": ROUTE_GROUP_KIND, "name": group}]
    body: JSON = {
        "apiVersion": f"{SPLIT_GROUP}/{ref.version}",
        "kind": "TrafficSplit",
        "metadata": {"name": ref.name, "namespace": ref.namespace, **meta},
        "spec": spec,
    }
    reason = (
        header_reason(ref.name, routes, config.root)
        if group and routes
        else f"create TrafficSplit {ref.name}: {_describe(backends)}"
    )
    return Create(ref, body, reason)


def _describe(backends: Sequence[tuple[str, Any]]) -> str:
    return ", ".join(f"{s}={w}" for s, w in backends)


def _as_int(value: Fraction) -> int:
    return int(value) if value.denominator == 1 else max(1, round(value))


@dataclass
class SplitPlanner:
    """Edits of one existing TrafficSplit, on a working copy."""

    plugin: str
    config: Config
    ref: ObjectRef
    obj: Mapping[str, Any]
    notes: list[Note] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.b = PatchBuilder(self.obj)
        self.owned = is_created_by_us(self.obj, self.plugin)
        self.view = split_ledger(self.config, self.obj)
        self.added_backends: set[str] = set(self.view.names("backends"))
        self.added_matches: set[str] = set(self.view.names("matches"))
        self.kept = weights.foreign_record(self.view.data(weights.FOREIGN))
        spec = self.obj.get("spec")
        if not isinstance(spec, Mapping):
            raise self._error("has no spec")
        backends = spec.get("backends", [])
        if not isinstance(backends, list) or not all(isinstance(x, Mapping) for x in backends):
            raise self._error("spec.backends is not a list of {service, weight} objects")
        matches = spec.get("matches", [])
        if not isinstance(matches, list) or not all(isinstance(x, Mapping) for x in matches):
            raise self._error("spec.matches is not a list of {kind, name} objects")

    def _error(self, message: str) -> PlanError:
        return PlanError(f"TrafficSplit {message}", plugin=self.plugin, obj=str(self.ref))

    # -- reading the working copy --------------------------------------------------------

    def _backends(self) -> list[Mapping[str, Any]]:
        value = self.b.get("/spec/backends", [])
        return value if isinstance(value, list) else []

    def _index(self, service: str) -> int | None:
        found = [i for i, x in enumerate(self._backends()) if x.get("service") == service]
        if len(found) > 1:
            raise self._error(
                f"lists backend Service {service!r} {len(found)} times (indexes "
                f"{', '.join(map(str, found))}); keep one entry so its weight is unambiguous"
            )
        return found[0] if found else None

    def _matches(self) -> list[Mapping[str, Any]]:
        value = self.b.get("/spec/matches", [])
        return value if isinstance(value, list) else []

    def _is_ours(self, entry: Mapping[str, Any]) -> bool:
        return entry.get("kind") == ROUTE_GROUP_KIND and entry.get("name") in self.added_matches

    def foreign_matches(self) -> list[str]:
        return [str(m.get("name")) for m in self._matches() if not self._is_ours(m)]

    def has_our_matches(self) -> bool:
        return any(self._is_ours(m) for m in self._matches())

    # -- edits ----------------------------------------------------------------------------

    def root(self) -> None:
        current = self.b.get("/spec/service", None)
        if current == self.config.root:
            return
        if not self.owned:
            raise self._error(
                f"routes Service {current!r} (spec.service), but rootService is "
                f"{self.config.root!r}; this TrafficSplit was not created by canary-routers, "
                "so it is not retargeted: fix rootService or trafficSplitName"
            )
        self.b.set("/spec/service", self.config.root)

    def set_weight(self, service: str, weight: int) -> None:
        i = self._index(service)
        if i is None:
            if not self.b.exists("/spec/backends"):
                self.b.set("/spec/backends", [])
            self.b.add("/spec/backends/-", {"service": service, "weight": weight})
            self.added_backends.add(service)
            return
        path = pointer("spec", "backends", i, "weight")
        if self.b.exists(path) and json_equal(self.b.get(path), weight):
            return
        self.b.test(pointer("spec", "backends", i, "service"))
        self.b.set(path, weight)

    def remove_backend(self, service: str) -> Fraction:
        """Remove a backend we added; return the weight it had (0 when unreadable)."""
        self.added_backends.discard(service)
        i = self._index(service)
        if i is None:
            return Fraction(0)
        weight = parse_weight(self._backends()[i].get("weight")) or Fraction(0)
        self.b.test(pointer("spec", "backends", i, "service"))
        self.b.remove(pointer("spec", "backends", i))
        return weight

    def backends(self, wanted: Sequence[Backend], scope: WeightScope = "all") -> None:
        """Our backends at ``wanted`` (stable, canary, additional), placed beside the backends
        others listed by the weight rule (``weights.place``): they keep their share of the
        split, the canary gets its weight/total of all of it, stable the rest."""
        for service, weight in self._place(wanted, scope):
            self.set_weight(service, weight)
        names = {s for s, _ in wanted}
        for service in sorted(self.added_backends - names):
            self.remove_backend(service)

    def _place(self, wanted: Sequence[Backend], scope: WeightScope) -> list[Backend]:
        ours = {s for s, _ in wanted} | self.added_backends
        entries = [(x.get("service"), parse_weight(x.get("weight"))) for x in self._backends()]
        foreign = [(str(s), w) for s, w in entries if s not in ours and w]
        if not foreign:
            self.kept.pop(_LOCATION, None)
            return list(wanted)
        now = sum((w or Fraction(0) for s, w in entries if s in ours), Fraction(0))
        ints = as_integers([now, *(w for _, w in foreign)])
        split = weights.Split(
            stable=wanted[0][1],
            canary=wanted[1][1],
            additional=tuple(wanted[2:]),
            total=sum(w for _, w in wanted),
        )
        try:
            placed = weights.place(split, ints[0], ints[1:], scope=scope)
        except WeightFitError as exc:
            raise exc.located(plugin=self.plugin, obj=str(self.ref)) from None
        before = {service: w for (service, _), w in zip(foreign, ints[1:], strict=True)}
        weights.remember(self.kept, _LOCATION, before, placed, ours=ints[0])
        self.notes.append(
            Note(
                self.plugin,
                f"TrafficSplit {self.ref.name}: {placed.describe(split)} (backends "
                f"{', '.join(before)})",
                level="warning" if placed.rounded else "info",
            )
        )
        out = placed.split
        moved = [
            (service, new)
            for (service, old), new in zip(foreign, placed.foreign, strict=True)
            if old != new
        ]
        return [(wanted[0][0], out.stable), (wanted[1][0], out.canary), *out.additional, *moved]

    def matches(self, group: str | None) -> None:
        """Reference exactly ``group`` among our entries (none when ``None``)."""
        entries = self._matches()
        for i in reversed(range(len(entries))):
            entry = entries[i]
            if self._is_ours(entry) and entry.get("name") != group:
                self.b.test(pointer("spec", "matches", i, "name"))
                self.b.remove(pointer("spec", "matches", i))
        if group is not None and not any(
            self._is_ours(m) and m.get("name") == group for m in self._matches()
        ):
            ref = {"kind": ROUTE_GROUP_KIND, "name": group}
            if isinstance(self.b.get("/spec/matches", None), list):
                self.b.add("/spec/matches/-", ref)
            else:
                self.b.set("/spec/matches", [ref])
        if self.b.get("/spec/matches", None) == [] and self.added_matches:
            # The list only existed for our entries: leave the object as we found it.
            self.b.remove("/spec/matches")
        self.added_matches = {group} if group else set()

    def restore_stable(self, *, remove_added: bool = True) -> None:
        """Stable takes the canary's weight (and that of every backend we added and now remove),
        so backends others listed keep their share."""
        stable, canary = self.config.stable, self.config.canary
        absorbed = Fraction(0)
        if remove_added:
            for service in sorted(self.added_backends - {stable}):
                absorbed += self.remove_backend(service)
        i = self._index(canary)
        if i is not None:
            absorbed += parse_weight(self._backends()[i].get("weight")) or Fraction(0)
            self.set_weight(canary, 0)
        i = self._index(stable)
        current = (
            parse_weight(self._backends()[i].get("weight")) or Fraction(0)
            if i is not None
            else Fraction(0)
        )
        total = self._unscale(current + absorbed)
        others = [parse_weight(x.get("weight")) or 0 for x in self._backends()]
        if total == 0 and not any(others):
            total = Fraction(1)  # an all-zero list sends traffic nowhere
        if i is None or total != current or not isinstance(self._backends()[i].get("weight"), int):
            self.set_weight(stable, _as_int(total))
        if remove_added:
            self.added_backends.discard(stable)

    def _unscale(self, stable: Fraction) -> Fraction:
        """Give the backends others listed the weights they had before we rescaled them (when
        nobody changed them since); returns stable's weight that keeps every share."""
        ours = {self.config.stable, self.config.canary} | self.added_backends
        now: dict[str, int] = {}
        for x in self._backends():
            w = parse_weight(x.get("weight"))
            if x.get("service") in ours or not w:
                continue
            if w.denominator != 1 or stable.denominator != 1:
                self.kept.pop(_LOCATION, None)
                return stable
            now[str(x.get("service"))] = int(w)
        got = weights.give_back(self.kept, _LOCATION, now, int(stable))
        if got is None:
            return stable
        before, back = got
        for service, weight in before.items():
            self.set_weight(service, weight)
        return Fraction(back)

    def claim(self) -> None:
        """Refuse a TrafficSplit that holds another owner's entries."""
        if self.view.shared:
            raise conflict(
                self.config, f"TrafficSplit {self.ref.name}", str(self.ref), self.view, self.plugin
            )

    def finish(self, desired: object, reason: str | None = None) -> Patch | None:
        weighted = not isinstance(desired, Cleanup)
        data = _ledger_data(
            self.config, sorted(self.added_backends), sorted(self.added_matches), weighted
        )
        data[weights.FOREIGN] = self.kept or None
        self.view.write(self.b, data)
        if reason is None and isinstance(desired, Cleanup):
            reason = "cleanup: remove what canary-routers added" + (
                " and send all traffic to stable" if desired.restore_stable else ""
            )
        elif reason is None:
            reason = f"set TrafficSplit {self.ref.name} backends: " + _describe(
                [(str(x.get("service")), x.get("weight")) for x in self._backends()]
            )
        return self.b.patch(self.ref, reason)


def header_reason(name: str, routes: Sequence[str], root: str) -> str:
    return (
        f"TrafficSplit {name}: send requests matching header route(s) {', '.join(routes)} to "
        f"canary; all other requests go to root Service {root}"
    )
