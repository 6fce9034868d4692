"""Planning one route object: weights on the user's rules, managed header/mirror rules, ledger.

Edits are explicit JSON-patch ops on the live dict (never a rebuilt spec), in an order that keeps
every index valid: weights first (they never change the rule count), then removal/replacement of
our rules at their original indices, then insertion of ours as one block, in managed-route order,
so an earlier route also wins its ties with a later one (see ``_first_route_wins``). A tie in
specificity goes to the first rule of a route, so the block stands at the front unless a user's
rule ties one of ours and owns the requests they share; then it stands after that rule (see
``_window``).
Weights follow ``routers.planning.weights.place``: backendRefs we do not own keep their share
of the rule and the canary gets its weight/total of all of it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal

from routers.errors import LimitExceededError, PlanError, UnsupportedError, WeightFitError
from routers.model import Cleanup, Desired, HeaderRoute, ManagedRoute, TrafficState
from routers.planning import weights
from routers.planning.ownership import SPLIT, OwnerLedger
from routers.planning.ownership import Ledger as ObjectLedger
from routers.planning.patch import PatchBuilder, json_equal, pointer
from routers.planning.plan import Note, Patch
from routers.planning.routes import ordered_routes
from routers_gatewayapi.config import Config, Target
from routers_gatewayapi.features import Features
from routers_gatewayapi.matches import (
    Unexpressible,
    combine_grpc,
    combine_http,
    intersect,
    outranks,
    steals_from,
)
from routers_gatewayapi.rules import (
    Backends,
    Ledger,
    LedgerRule,
    ManagedKind,
    backend_is,
    backend_key,
    find_managed,
    fingerprint,
    normalized,
    rule_entries,
    rule_matches,
)
from routers_gatewayapi.shares import MAX_WEIGHT

__all__ = [
    "DesiredRule",
    "RouteLedger",
    "RoutePlan",
    "RoutePlanner",
    "classify",
    "instruction",
    "read_route_ledger",
]

JSON = dict[str, Any]
Pair = tuple[Any, JSON]
"""(source rule match, managed match derived from it)."""
INT32_MAX = 2**31 - 1

# CRD limits, identical in every release since v1.2 on both channels (specs §2.2).
MAX_RULES = 16
MAX_MATCHES_PER_RULE = 64
MAX_MATCHES_TOTAL = 128
MAX_CONDITIONS = 16
MAX_FILTERS = 16
MAX_BACKENDS = 16

_MISSING: Any = object()


@dataclass(frozen=True)
class DesiredRule:
    id: str
    """Rule name where the CRD has names, and ledger key everywhere."""
    route: str
    kind: ManagedKind
    body: JSON


@dataclass(frozen=True)
class RoutePlan:
    patch: Patch | None
    notes: tuple[Note, ...]
    produced: dict[str, int]
    """Managed route name -> rules generated on this route (0: its matches hit no rule here)."""


def instruction(route: ManagedRoute) -> str:
    verb = "setHeaderRoute" if isinstance(route, HeaderRoute) else "setMirrorRoute"
    return f"{verb} {route.name!r}"


def classify(
    config: Config, target: Target, rule: Mapping[str, Any], added: Sequence[str]
) -> Backends:
    """Sort one rule's backendRefs into stable / canary / additional we added / foreign."""
    out = Backends()
    for j, ref in enumerate(rule.get("backendRefs") or []):
        if backend_is(ref, config.stable, config.namespace, target.namespace):
            out.stable.append(j)
        elif backend_is(ref, config.canary, config.namespace, target.namespace):
            out.canary.append(j)
        else:
            svc = ref.get("name") if isinstance(ref, Mapping) else None
            if svc in added and backend_is(ref, str(svc), config.namespace, target.namespace):
                out.added.setdefault(str(svc), []).append(j)
            else:
                out.foreign.append(j)
    return out


@dataclass(frozen=True)
class RouteLedger:
    """A route's ledger as one owner sees it, resolved against the route's rules."""

    view: OwnerLedger
    book: Ledger
    """This owner's entries."""
    managed: dict[str, int]
    """This owner's managed rules: id -> index."""
    foreign: dict[str, int]
    """Everyone else's managed rules (other owners', ownerless): id -> index."""


def _sends_to(rule: Mapping[str, Any], service: str, service_ns: str, route_ns: str) -> bool:
    """The rule routes or mirrors to ``service``."""
    refs = [r for r in rule.get("backendRefs") or [] if isinstance(r, Mapping)]
    filters = [*(rule.get("filters") or []), *(f for r in refs for f in r.get("filters") or [])]
    mirrored = [
        (f.get("requestMirror") or {}).get("backendRef")
        for f in filters
        if isinstance(f, Mapping) and isinstance(f.get("requestMirror"), Mapping)
    ]
    return any(backend_is(r, service, service_ns, route_ns) for r in [*refs, *mirrored])


def read_route_ledger(
    config: Config,
    target: Target,
    obj: Mapping[str, Any],
    rules: Sequence[Any],
    state: TrafficState | None = None,
) -> RouteLedger:
    """Read the ledger as this owner. Ownerless entries (written before per-owner ledgers)
    are this owner's when its config or state names them: a managed rule that routes or mirrors
    to its canary Service (or, gone from the route, one its state or managedRoutes names), a
    backend its state lists or its weighted rules carry."""
    raw = ObjectLedger.of(obj, what=str(target))
    legacy_rules = raw.unowned.get("rules")
    legacy = Ledger(rule_entries(legacy_rules if isinstance(legacy_rules, Mapping) else {}), ())
    found = find_managed(target.kind, rules, legacy)
    named = set(config.managed_order) | (set(state.route_names) if state is not None else set())
    extra = {d.service for d in state.additional_destinations} if state is not None else set()
    carried: set[str] = set()
    for rule in rules:
        if isinstance(rule, Mapping) and classify(config, target, rule, ()).weighted:
            for ref in rule.get("backendRefs") or []:
                if backend_is(ref, str(ref.get("name")), config.namespace, target.namespace):
                    carried.add(str(ref.get("name")))

    def adopt(key: str, name: str) -> bool:
        if key == "rules":
            idx = found.get(name)
            if idx is None:
                return name.split(".", 1)[0] in named
            return _sends_to(rules[idx], config.canary, config.namespace, target.namespace)
        if key == "backends":
            return name in extra or name in carried
        return False

    view = raw.view(config.owner, adopt)
    book = Ledger.of(view)
    managed = find_managed(target.kind, rules, book)
    foreign = find_managed(target.kind, rules, Ledger.foreign(view), taken=managed.values())
    return RouteLedger(view, book, managed, foreign)


class RoutePlanner:
    """Plans one route object against one desired state."""

    def __init__(
        self,
        plugin: str,
        config: Config,
        target: Target,
        obj: Mapping[str, Any],
        features: Features,
        state: TrafficState | None = None,
    ) -> None:
        self.plugin = plugin
        self.config = config
        self.target = target
        self.obj = obj
        self.features = features
        self.kind = target.kind
        spec = obj.get("spec") if isinstance(obj.get("spec"), Mapping) else {}
        rules = spec.get("rules") if isinstance(spec, Mapping) else None
        self.rules: list[Any] = list(rules) if isinstance(rules, list) else []
        self.state = state
        self.ledger = read_route_ledger(config, target, obj, self.rules, state)
        self.book = self.ledger.book
        self.managed = self.ledger.managed
        managed_idx = set(self.managed.values()) | set(self.ledger.foreign.values())
        self.unmanaged = [i for i in range(len(self.rules)) if i not in managed_idx]
        self.backends = {
            i: classify(config, target, self.rules[i], self.book.backends)
            for i in self.unmanaged
            if isinstance(self.rules[i], Mapping)
        }
        self.weighted = [i for i, b in self.backends.items() if b.weighted]
        self.notes: list[Note] = []
        self.kept = weights.foreign_record(self.ledger.view.data(weights.FOREIGN))
        """Per rule, the weights of backendRefs we do not own before we rescaled them."""
        self.window: tuple[int, int | None] = (0, None)
        """Where our block of managed rules may stand, counted in the other rules (``_window``)."""

    # -- helpers ---------------------------------------------------------------------------

    def _error(self, message: str) -> PlanError:
        return PlanError(message, plugin=self.plugin, obj=str(self.target))

    def _rule_label(self, i: int) -> str:
        name = self.rules[i].get("name") if isinstance(self.rules[i], Mapping) else None
        return f"rules[{i}]" + (f" ({name})" if name else "")

    def _check_weighted(self) -> None:
        for i in self.weighted:
            b = self.backends[i]
            for role, found, svc in (
                ("stable", b.stable, self.config.stable),
                ("canary", b.canary, self.config.canary),
            ):
                if len(found) > 1:
                    raise self._error(
                        f"{self._rule_label(i)} references the {role} Service {svc!r} "
                        f"{len(found)} times; the split between those refs would be a guess"
                    )

    def _port(self, i: int) -> Any:
        """The port our Service refs use in source rule ``i`` (canary's, else stable's)."""
        refs = self.rules[i].get("backendRefs") or []
        b = self.backends[i]
        for j in (*b.canary, *b.stable):
            port = refs[j].get("port")
            if port is not None:
                return port
        raise self._error(
            f"{self._rule_label(i)}: neither the stable nor the canary backendRef sets a port; "
            "Gateway API requires one for a Service reference"
        )

    # -- weights ---------------------------------------------------------------------------

    def _guarded_set(self, b: PatchBuilder, guard: str, path: str, value: Any) -> None:
        if not json_equal(b.get(path, _MISSING), value):
            b.test(guard)
            b.set(path, value)

    def _new_backend(self, i: int, service: str, weight: int) -> JSON:
        ref: JSON = {"group": "", "kind": "Service", "name": service}
        if self.config.namespace != self.target.namespace:
            ref["namespace"] = self.config.namespace
        ref["port"] = self._port(i)
        ref["weight"] = weight
        return ref

    def _weigh(
        self,
        b: PatchBuilder,
        base: str,
        i: int,
        split: weights.Split | None,
        restore: bool,
        *,
        report: bool = True,
    ) -> None:
        """Set the weights of source rule ``i`` (at ``base`` in ``b``); ``split=None`` = cleanup.

        ``report=False`` for the copies mirror rules carry: the source rule's pass reports."""
        refs_path = base + "/backendRefs"
        wanted = dict(split.additional) if split is not None else {}
        current = classify(self.config, self.target, b.get(base), self.book.backends)
        refs = b.get(refs_path)
        ours = [*current.stable, *current.canary, *(j for js in current.added.values() for j in js)]
        foreign = [(j, _weight_of(refs[j])) for j in current.foreign]
        if split is not None:
            held = sum(_weight_of(refs[j]) for j in ours)
            placed = self._placed(i, split, held, foreign, report=report)
            if report:
                keys = self._foreign_keys(refs, [j for j, _ in foreign])
                before = dict(zip(keys, (w for _, w in foreign), strict=True))
                weights.remember(self.kept, self._location(i), before, placed, ours=held)
            split = placed.split
            wanted = dict(split.additional)
            # Before any removal below shifts the indices.
            for (j, w), new in zip(foreign, placed.foreign, strict=True):
                if new != w:
                    self._guarded_set(b, f"{refs_path}/{j}/name", f"{refs_path}/{j}/weight", new)
        freed = 0
        for j in sorted(
            (j for s, js in current.added.items() if s not in wanted for j in js), reverse=True
        ):
            freed += _weight_of(refs[j])
            b.test(f"{refs_path}/{j}/name")
            b.remove(f"{refs_path}/{j}")
        current = classify(self.config, self.target, b.get(base), self.book.backends)
        refs = b.get(refs_path)
        (s,) = current.stable
        (c,) = current.canary
        if split is not None:
            stable_w, canary_w = split.stable, split.canary
        elif restore:
            stable_w = _weight_of(refs[s]) + _weight_of(refs[c]) + freed or 1
            canary_w = 0
            if report:
                stable_w = self._unscale(b, refs_path, refs, current.foreign, i, stable_w)
        elif freed and _weight_of(refs[s]) + _weight_of(refs[c]) == 0:
            # Removing our experiment refs would leave an all-zero list (Envoy NACKs it).
            stable_w, canary_w = freed, 0
            self.notes.append(
                Note(
                    self.plugin,
                    f"{self.target} {self._rule_label(i)}: stable gets the removed additional "
                    f"destinations' weight {freed}; stable and canary were both at 0",
                    level="warning",
                )
            )
        else:
            return
        self._guarded_set(b, f"{refs_path}/{s}/name", f"{refs_path}/{s}/weight", stable_w)
        self._guarded_set(b, f"{refs_path}/{c}/name", f"{refs_path}/{c}/weight", canary_w)
        for service, w in wanted.items():
            if service in current.added:
                for j in current.added[service]:
                    self._guarded_set(b, f"{refs_path}/{j}/name", f"{refs_path}/{j}/weight", w)
                continue
            refs = b.get(refs_path)
            owned_by_user = [
                j
                for j in current.foreign
                if backend_is(refs[j], service, self.config.namespace, self.target.namespace)
            ]
            if owned_by_user:
                raise self._error(
                    f"{self._rule_label(i)} already references Service {service!r}, which the state "
                    "lists as an additional destination; canary-routers only weights backendRefs "
                    "it added (remove that backendRef or the destination)"
                )
            b.add(f"{refs_path}/-", self._new_backend(i, service, w))

    def _location(self, i: int) -> str:
        """A rule's key in the ledger: its name, else its matches (the weights change)."""
        rule = self.rules[i] if isinstance(self.rules[i], Mapping) else {}
        return weights.location(rule.get("name"), rule.get("matches") or [])

    def _foreign_keys(self, refs: Sequence[Any], foreign: Sequence[int]) -> list[str]:
        return weights.unique_keys(
            [backend_key(refs[j], self.target.namespace) or f"#{j}" for j in foreign]
        )

    def _unscale(
        self,
        b: PatchBuilder,
        refs_path: str,
        refs: Sequence[Any],
        foreign: list[int],
        i: int,
        stable: int,
    ) -> int:
        """Cleanup gives the backendRefs we rescaled their weights back (and stable the sum
        that keeps every share), when nobody changed them since; returns stable's weight."""
        keys = dict(zip(self._foreign_keys(refs, foreign), foreign, strict=True))
        now = {k: _weight_of(refs[j]) for k, j in keys.items()}
        got = weights.give_back(self.kept, self._location(i), now, stable)
        if got is None:
            return stable
        before, back = got
        for k, j in keys.items():
            self._guarded_set(b, f"{refs_path}/{j}/name", f"{refs_path}/{j}/weight", before[k])
        return back

    def _placed(
        self,
        i: int,
        split: weights.Split,
        ours: int,
        foreign: Sequence[tuple[int, int]],
        *,
        report: bool,
    ) -> weights.Placement:
        """Our split beside the backendRefs we do not own (``weights.place``: they keep their
        share; the canary gets its share of all the rule's traffic)."""
        label = f"{self.target} {self._rule_label(i)}"
        try:
            placed = weights.place(
                split,
                ours,
                [w for _, w in foreign],
                scope=self.config.weight_scope,
                max_weight=MAX_WEIGHT,
            )
        except WeightFitError as exc:
            raise exc.located(
                plugin=self.plugin, obj=str(self.target), where=self._rule_label(i)
            ) from None
        if not report or not placed.shares.foreign:
            return placed
        self.notes.append(
            Note(
                self.plugin,
                f"{label}: {placed.describe(split)}"
                + (" (finer weights would exceed 1,000,000)" if placed.rounded else ""),
                level="warning" if placed.rounded else "info",
            )
        )
        if any(new != w for (_, w), new in zip(foreign, placed.foreign, strict=True)):
            self.notes.append(
                Note(
                    self.plugin,
                    f"{label}: the backendRefs canary-routers does not own are reweighted "
                    f"({', '.join(str(w) for _, w in foreign)} -> "
                    f"{', '.join(str(w) for w in placed.foreign)}; same share of the rule, same "
                    f"ratio among them) so that canary {split.canary}/{split.total} is expressed "
                    "exactly beside them",
                )
            )
        return placed

    def _weighted_copy(self, i: int, split: weights.Split) -> JSON:
        """Source rule ``i`` as it is after the weight pass (mirror rules carry the same split)."""
        scratch = PatchBuilder({"rule": self.rules[i]}, guard_resource_version=False)
        self._weigh(scratch, "/rule", i, split, restore=False, report=False)
        rule: JSON = copy.deepcopy(scratch.doc["rule"])
        return rule

    # -- managed rules ---------------------------------------------------------------------

    def _unsupported(self, route: ManagedRoute, reason: str) -> UnsupportedError:
        return UnsupportedError(self.plugin, instruction(route), f"{self.target}: {reason}")

    def _canary_ref(self, i: int) -> JSON:
        refs = self.rules[i].get("backendRefs") or []
        (c,) = self.backends[i].canary
        ref: JSON = copy.deepcopy(refs[c])
        ref.setdefault("group", "")
        ref.setdefault("kind", "Service")
        if ref.get("port") is None:
            ref["port"] = self._port(i)
        ref["weight"] = 1
        return ref

    def _mirror_filter(self, route: ManagedRoute, i: int) -> JSON:
        canary = self._canary_ref(i)
        target: JSON = {
            k: canary[k] for k in ("group", "kind", "name", "namespace", "port") if k in canary
        }
        mirror: JSON = {"backendRef": target}
        pct = getattr(route, "percentage", 100.0)
        if pct != 100:
            if not self.features.mirror_fraction:
                raise self._unsupported(
                    route,
                    f"mirroring {pct:g}% needs RequestMirror percent/fraction, which the installed "
                    f"CRD lacks ({self.features.describe()}); it needs Gateway API standard "
                    ">= v1.3 or experimental >= v1.2 (only 100% can be mirrored here)",
                )
            if pct == int(pct):
                mirror["percent"] = int(pct)
            else:
                share = Fraction(Decimal(repr(pct))) / 100
                if share.denominator > INT32_MAX:
                    exact = share
                    share = share.limit_denominator(INT32_MAX)
                    self.notes.append(
                        Note(
                            self.plugin,
                            f"{self.target}: mirror {route.name!r} {pct}% is expressed as "
                            f"{share.numerator}/{share.denominator} (off by "
                            f"{float(abs(share - exact) * 100):.3g} percentage points)",
                        )
                    )
                mirror["fraction"] = {
                    "numerator": share.numerator,
                    "denominator": share.denominator,
                }
        return {"type": "RequestMirror", "requestMirror": mirror}

    def _others(self, i: int) -> list[Mapping[str, Any]]:
        """Matches of the user's other rules (they keep their requests)."""
        return [
            m
            for j in self.unmanaged
            if j != i and isinstance(self.rules[j], Mapping)
            for m in rule_matches(self.kind, self.rules[j])
            if isinstance(m, Mapping)
        ]

    def _pairs(self, route: ManagedRoute, i: int) -> list[Pair]:
        """(source match, managed match) for ``route`` shadowing source rule ``i``."""
        pairs: list[Pair] = []
        sources: list[Any] = rule_matches(self.kind, self.rules[i])
        if self.kind.matches == "grpc" and not sources:
            sources = [{}]
        others = self._others(i)
        try:
            for sm in sources:
                for rm in route.matches:
                    m = (
                        combine_http(sm, rm)
                        if self.kind.matches == "http"
                        else combine_grpc(sm, rm)
                    )
                    if m is None or any(json_equal(m, p) for _, p in pairs):
                        continue
                    if not json_equal(m.get("path"), sm.get("path")) and any(
                        steals_from(m["path"], sm["path"], other) for other in others
                    ):
                        continue
                    pairs.append((sm, m))
        except Unexpressible as exc:
            raise self._unsupported(route, f"{self._rule_label(i)}: {exc}") from None
        return pairs

    def _first_route_wins(self, routes: Sequence[ManagedRoute], i: int) -> list[list[Pair]]:
        """Every route's pairs for source rule ``i``, plus what keeps route order decisive.

        Gateway API gives a request to its most specific match, but the state means the first
        managed route (``ordered_routes``) whose matches hold. So wherever a later route's match
        ``x`` outranks an earlier route's match ``m`` and some request satisfies both, the earlier
        route also gets ``m AND x``: at least as specific as ``x`` in every precedence field, and
        placed before it (ties go to the first rule). A header route thus takes the requests it
        shares with a mirror route entirely (100% canary, not mirrored), and a mirror route
        listed first keeps the split and mirrors the requests it shares with a later header
        route. Working from the last route back, each route's added matches already hold its
        followers' own. Routes that treat a request alike (two header routes, two mirror
        routes with one percentage) need no order. Refused (UnsupportedError) when the AND or the order cannot be stated
        exactly: two different regular expressions on one field, regex path precedence, or an
        added match that would outrank a user's rule that both routes leave alone.
        """
        kind: Literal["http", "grpc"] = "grpc" if self.kind.matches == "grpc" else "http"
        out = [self._pairs(route, i) for route in routes]
        others = self._others(i)
        later: list[tuple[int, Pair]] = []
        for j in reversed(range(len(routes))):
            added: list[Pair] = []
            for sm, m in out[j]:
                for k, (sx, x) in later:
                    if _same_outcome(routes[j], routes[k]):
                        continue
                    combo = self._combine_routes(kind, routes[j], routes[k], i, m, x, others)
                    if combo is None or any(json_equal(combo, p) for _, p in out[j] + added):
                        continue
                    path = combo.get("path")
                    added.append((sx if json_equal(path, sx.get("path")) else sm, combo))
            out[j] = out[j] + added
            later = [(j, p) for p in out[j]] + later
        return out

    def _combine_routes(
        self,
        kind: Literal["http", "grpc"],
        first: ManagedRoute,
        then: ManagedRoute,
        i: int,
        m: Mapping[str, Any],
        x: Mapping[str, Any],
        others: Sequence[Mapping[str, Any]],
    ) -> JSON | None:
        """``m AND x`` when ``first``'s match ``m`` would lose requests to ``then``'s ``x``."""

        def refuse(why: str) -> UnsupportedError:
            return self._unsupported(
                first,
                f"{self._rule_label(i)}: it precedes {instruction(then)} and their matches "
                f"overlap, so its rule must outrank that one on the shared requests, but {why}",
            )

        try:
            combo: JSON | None = intersect(kind, m, x)
        except Unexpressible as exc:
            combo, problem = {}, str(exc)
        else:
            problem = ""
        if combo is None:
            return None
        try:
            if not outranks(kind, x, m):
                return None
        except Unexpressible as exc:
            raise refuse(str(exc)) from None
        if problem:
            raise refuse(problem)
        assert combo is not None
        for o in others:
            try:
                if intersect(kind, o, combo) is None:
                    continue
            except Unexpressible:
                pass
            try:
                steals = (
                    outranks(kind, o, m) and outranks(kind, o, x) and not outranks(kind, o, combo)
                )
            except Unexpressible as exc:
                raise refuse(str(exc)) from None
            if steals:
                raise refuse(
                    f"their combined match would also outrank another rule's match {dict(o)} "
                    "that keeps those requests today"
                )
        return combo

    def _window(
        self, routes: Sequence[ManagedRoute], pairs: Mapping[int, list[list[Pair]]]
    ) -> tuple[int, int | None]:
        """How many of the route's other rules may precede our block of managed rules: at least
        (first) and at most (second, None: no bound).

        A managed match ``m`` derived from source match ``sm`` must take exactly the requests
        ``sm`` wins today. Its extra conditions raise its precedence (specs §2.8), so it can tie
        or outrank another rule's match ``o`` that wins some of those requests today (``o``
        outranks ``sm``, or ties it and stands first): a one-header rule derived from a catch-all
        rule ties the user's one-header rule on the same path. A tie goes to the first rule of
        the route, so the block stands after every such ``o``, and before every rule that ties
        ``m`` without owning the shared requests (the source rule itself when ``m`` adds nothing
        to its rank). Refused (UnsupportedError) when ``m`` outranks such an ``o`` (no match can
        leave its requests out) or when no place satisfies both bounds. Only the user's rules
        count: another owner's managed rules are derived like ours (treating them as owners
        would make two owners' blocks chase each other). Rules of other routes on the same
        parent tie-break by age and name, which no placement here can change; regex paths make
        the order implementation-specific and are left to ``steals_from``.
        """
        kind: Literal["http", "grpc"] = "grpc" if self.kind.matches == "grpc" else "http"
        ours = set(self.managed.values())
        lo, hi = 0, None
        why_lo = why_hi = ""
        for n, route in enumerate(routes):
            for i in self.weighted:
                for sm, m in pairs[i][n]:
                    for j in self.unmanaged:
                        rule = self.rules[j]
                        if not isinstance(rule, Mapping):
                            continue
                        slot = j - sum(1 for k in ours if k < j)
                        for o in rule_matches(self.kind, rule) or [{}]:
                            # Requests of a weighted rule that this route also shadows are
                            # this route's through that rule's own managed match.
                            derived = j in self.weighted and any(
                                json_equal(s, o) for s, _ in pairs[j][n]
                            )
                            if derived and not (j == i and json_equal(o, sm)):
                                continue
                            if j != i and self._acts_alike(route, i, rule):
                                continue
                            try:
                                if intersect(kind, o, m) is None or outranks(kind, o, m):
                                    continue
                                tie = not outranks(kind, m, o)
                                owns = j != i and (
                                    outranks(kind, o, sm) or (j < i and not outranks(kind, sm, o))
                                )
                            except Unexpressible:
                                continue
                            label = f"{self._rule_label(j)} (match {dict(o)})"
                            if owns and not tie:
                                raise self._unsupported(
                                    route,
                                    f"its rule derived from {self._rule_label(i)} would outrank "
                                    f"{label} on the requests matching both, which that rule "
                                    "routes today; no match can leave them out (match on fewer "
                                    "conditions, or add the route's conditions to that rule)",
                                )
                            if owns and slot + 1 > lo:
                                lo, why_lo = (
                                    slot + 1,
                                    f"after {label}, which it ties ({route.name!r})",
                                )
                            elif not owns and tie and (hi is None or slot < hi):
                                hi, why_hi = slot, f"before {label}, which it ties ({route.name!r})"
        if hi is not None and lo > hi:
            raise UnsupportedError(
                self.plugin,
                "managedRoutes",
                f"{self.target}: the managed rules must stand {why_lo} and {why_hi}; a tie goes "
                "to the first rule, so no order of the route's rules keeps both",
            )
        return lo, hi

    def _acts_alike(self, route: ManagedRoute, i: int, rule: Mapping[str, Any]) -> bool:
        """``rule`` does with a request what ``route``'s rule derived from source rule ``i``
        does: all to the canary with the source's filters (a user's canary-only rule, plugin
        #217), so which of the two wins does not matter."""
        if not isinstance(route, HeaderRoute):
            return False
        refs = [r for r in rule.get("backendRefs") or [] if _weight_of(r) > 0]
        canary = self._canary_ref(i)
        return (
            json_equal(rule.get("filters") or [], self.rules[i].get("filters") or [])
            and len(refs) == 1
            and backend_is(
                refs[0], self.config.canary, self.config.namespace, self.target.namespace
            )
            and refs[0].get("port", canary.get("port")) == canary.get("port")
            and json_equal(refs[0].get("filters") or [], canary.get("filters") or [])
        )

    def _bodies(
        self, route: ManagedRoute, i: int, pairs: Sequence[Pair], split: weights.Split
    ) -> list[JSON]:
        """Managed rule bodies (without name) shadowing source rule ``i`` for ``route``."""
        if not pairs:
            return []
        body: JSON = copy.deepcopy(self.rules[i])
        body.pop("name", None)
        if isinstance(route, HeaderRoute):
            body["backendRefs"] = [self._canary_ref(i)]
        else:
            body["backendRefs"] = self._weighted_copy(i, split)["backendRefs"]
            body["filters"] = [*(body.get("filters") or []), self._mirror_filter(route, i)]
        if not _rewrites_prefix(body):
            body["matches"] = [m for _, m in pairs]
            return [body]
        # ReplacePrefixMatch rewrites the matched prefix and needs exactly one PathPrefix match
        # per rule (CRD CEL): one rule per match, each keeping the source's own prefix.
        out = []
        for sm, m in pairs:
            if not json_equal(m.get("path"), sm.get("path")):
                raise self._unsupported(
                    route,
                    f"{self._rule_label(i)} rewrites paths with ReplacePrefixMatch; narrowing its "
                    f"path to {m.get('path', {}).get('value')!r} would change what is rewritten",
                )
            one = copy.deepcopy(body)
            one["matches"] = [m]
            out.append(one)
        return out

    def desired_rules(self, state: TrafficState, produced: dict[str, int]) -> list[DesiredRule]:
        if not self.target.managed_rules:
            return []
        split = weights.split(state)
        routes = ordered_routes(state, self.config.managed_order)
        if not routes:
            return []  # a weight-only step: no match translation to do
        pairs = {i: self._first_route_wins(routes, i) for i in self.weighted}
        self.window = self._window(routes, pairs)
        out: list[DesiredRule] = []
        for n, route in enumerate(routes):
            kind: ManagedKind = "header" if isinstance(route, HeaderRoute) else "mirror"
            bodies = [b for i in self.weighted for b in self._bodies(route, i, pairs[i][n], split)]
            produced[route.name] = len(bodies)
            for k, body in enumerate(bodies):
                rid = route.name if k == 0 else f"{route.name}.{k + 1}"
                named = {"name": rid, **body} if self.features.rule_names else body
                out.append(DesiredRule(rid, route.name, kind, named))
        return out

    # -- the plan --------------------------------------------------------------------------

    def plan(self, desired: Desired) -> RoutePlan:
        self._check_weighted()
        cleanup = isinstance(desired, Cleanup)
        produced: dict[str, int] = {}
        if isinstance(desired, TrafficState):
            if not self.weighted:
                raise self._error(
                    f"no rule references both Service {self.config.stable!r} and Service "
                    f"{self.config.canary!r} (namespace {self.config.namespace}); "
                    "add both backendRefs to the rules that should be split"
                )
            split: weights.Split | None = weights.split(desired)
            wanted = self.desired_rules(desired, produced)
        else:
            split, wanted = None, []
        self._check_names(wanted)
        self._check_claims(wanted)
        b = PatchBuilder(self.obj)
        restore = isinstance(desired, Cleanup) and desired.restore_stable
        for i in self.weighted:
            self._weigh(b, pointer("spec", "rules", i), i, split, restore)
        self._place(b, wanted)
        added = sorted(dict(split.additional)) if split is not None and self.weighted else []
        book = Ledger(
            {d.id: LedgerRule(d.kind, fingerprint(self.kind, d.body)) for d in wanted}, tuple(added)
        )
        ours = {
            "stable": f"{self.config.namespace}/{self.config.stable}",
            "canary": f"{self.config.namespace}/{self.config.canary}",
        }
        self.ledger.view.write(
            b,
            {
                **book.data(),
                SPLIT: ours if split is not None and self.weighted else None,
                weights.FOREIGN: (self.kept or None) if split is not None else None,
            },
        )
        self._check_limits(b.doc)
        self._foreign_notes()
        if self.features.assumed and (wanted or self.managed):
            self.notes.append(
                Note(
                    self.plugin,
                    f"{self.target}: CRD version unknown, assumed {self.features.describe()}; "
                    "set crdBundleVersion/crdChannel to match the cluster",
                    level="warning",
                )
            )
        reason = (
            "cleanup: remove managed rules" + (" and send all traffic to stable" if restore else "")
            if cleanup
            else _describe(split, wanted)
        )
        return RoutePlan(b.patch(self.target.ref, reason), tuple(self.notes), produced)

    def _check_claims(self, wanted: Sequence[DesiredRule]) -> None:
        """Another owner's rule names, and rules another owner weights, are never ours."""
        view = self.ledger.view
        view.claim(
            "rules",
            [d.id for d in wanted],
            what=lambda rid: f"managed rule {rid!r}",
            plugin=self.plugin,
            obj=str(self.target),
            hint="two owners can never hold one rule name on one route: rename the managed route",
        )
        for i in self.weighted:
            refs = self.rules[i].get("backendRefs") or []
            keys = {k for k in (backend_key(r, self.target.namespace) for r in refs) if k}
            view.claim_split(
                keys, what=self._rule_label(i), plugin=self.plugin, obj=str(self.target)
            )

    def _check_names(self, wanted: Sequence[DesiredRule]) -> None:
        if not self.features.rule_names:
            return
        ours = {d.id for d in wanted}
        for i in self.unmanaged:
            rule = self.rules[i]
            name = rule.get("name") if isinstance(rule, Mapping) else None
            if name in ours:
                raise self._error(
                    f"{self._rule_label(i)} is named {name!r}, the name of a managed rule, but "
                    "canary-routers did not create it (not in the canary-routers.io/managed "
                    "annotation); rename that rule or the managed route"
                )

    def _guard_rule(self, b: PatchBuilder, index: int) -> None:
        path = pointer("spec", "rules", index)
        b.test(path + "/name" if b.get(path + "/name", None) else path)

    def _place(self, b: PatchBuilder, wanted: Sequence[DesiredRule]) -> None:
        """Our rules as one block in ``self.window``: kept where they stand when that is inside
        it (another owner's block may precede ours), else moved to its first place."""
        live = [(rid, idx) for rid, idx in self.managed.items()]
        current = [normalized(self.kind, self.rules[idx]) for _, idx in live]
        target = [normalized(self.kind, d.body) for d in wanted]
        lo, hi = self.window
        at = live[0][1] if live else lo
        placed = [idx for _, idx in live] == list(range(at, at + len(live)))
        if not (placed and lo <= at and (hi is None or at <= hi)):
            at = lo
        elif json_equal(current, target):
            return
        elif [rid for rid, _ in live] == [d.id for d in wanted]:
            for (_, idx), d, have, want in zip(live, wanted, current, target, strict=True):
                if not json_equal(have, want):
                    self._guard_rule(b, idx)
                    b.replace(pointer("spec", "rules", idx), d.body)
            return
        for _, idx in sorted(live, key=lambda x: -x[1]):
            self._guard_rule(b, idx)
            b.remove(pointer("spec", "rules", idx))
        for k, d in enumerate(wanted):
            b.add(pointer("spec", "rules", at + k), d.body)

    def _check_limits(self, doc: Mapping[str, Any]) -> None:
        rules = (doc.get("spec") or {}).get("rules") or []
        where = str(self.target)

        def fail(message: str) -> LimitExceededError:
            return LimitExceededError(message, plugin=self.plugin, obj=where)

        if len(rules) > MAX_RULES:
            raise fail(
                f"the route would have {len(rules)} rules with the managed ones; the CRD allows "
                f"{MAX_RULES} (use fewer managed routes, fewer weighted rules, or split the route)"
            )
        total = 0
        for i, rule in enumerate(rules):
            label = f"rules[{i}]" + (f" ({rule.get('name')})" if rule.get("name") else "")
            if self.kind.matches != "none":
                # Counted on the rule as stored: defaulting adds a path, never a condition.
                matches = rule.get("matches") or ([{}] if self.kind.matches == "http" else [])
                total += len(matches)
                if len(matches) > MAX_MATCHES_PER_RULE:
                    raise fail(
                        f"{label} would have {len(matches)} matches; the CRD allows {MAX_MATCHES_PER_RULE}"
                    )
                for k, m in enumerate(matches):
                    for key in ("headers", "queryParams"):
                        n = len(m.get(key) or []) if isinstance(m, Mapping) else 0
                        if n > MAX_CONDITIONS:
                            raise fail(
                                f"{label}.matches[{k}] would have {n} {key} conditions (source "
                                f"rule's plus the route's); the CRD allows {MAX_CONDITIONS}"
                            )
            if len(rule.get("filters") or []) > MAX_FILTERS:
                raise fail(
                    f"{label} would have {len(rule['filters'])} filters; the CRD allows {MAX_FILTERS}"
                )
            if len(rule.get("backendRefs") or []) > MAX_BACKENDS:
                raise fail(
                    f"{label} would have {len(rule['backendRefs'])} backendRefs; the CRD allows {MAX_BACKENDS}"
                )
        if total > MAX_MATCHES_TOTAL:
            raise fail(
                f"the route would have {total} matches over all rules; the CRD allows {MAX_MATCHES_TOTAL}"
            )

    def _foreign_notes(self) -> None:
        for i in self.weighted:
            refs = self.rules[i].get("backendRefs") or []
            total = sum(_weight_of(r) for r in refs)
            for j in self.backends[i].foreign:
                ref = refs[j] if isinstance(refs[j], Mapping) else {}
                self.notes.append(
                    Note(
                        self.plugin,
                        f"{self.target} {self._rule_label(i)}: backendRef {ref.get('name')!r} "
                        f"is not ours and keeps its share of the rule (weight {_weight_of(ref)} "
                        f"of {total})"
                        + (
                            "; the split divides the rest (weightScope: ours)"
                            if self.config.weight_scope == "ours"
                            else "; the canary's share is of all the rule's traffic"
                        ),
                    )
                )


def _same_outcome(a: ManagedRoute, b: ManagedRoute) -> bool:
    """Two routes whose rules do the same with a request (so which one wins does not matter)."""
    if isinstance(a, HeaderRoute) or isinstance(b, HeaderRoute):
        return isinstance(a, HeaderRoute) and isinstance(b, HeaderRoute)
    return a.percentage == b.percentage


def _weight_of(ref: Any) -> int:
    w = ref.get("weight", 1) if isinstance(ref, Mapping) else 0
    return w if isinstance(w, int) and not isinstance(w, bool) else 0


def _rewrites_prefix(rule: Mapping[str, Any]) -> bool:
    filters = list(rule.get("filters") or [])
    for ref in rule.get("backendRefs") or []:
        if isinstance(ref, Mapping):
            filters.extend(ref.get("filters") or [])
    for f in filters:
        if not isinstance(f, Mapping):
            continue
        for key in ("urlRewrite", "requestRedirect"):
            path = (f.get(key) or {}).get("path") if isinstance(f.get(key), Mapping) else None
            if isinstance(path, Mapping) and path.get("type") == "ReplacePrefixMatch":
                return True
    return False


def _describe(split: weights.Split | None, wanted: Sequence[DesiredRule]) -> str:
    parts = []
    if split is not None:
        parts.append(f"canary weight {split.canary}/{split.total}")
    names = sorted({d.route for d in wanted})
    if names:
        parts.append("managed routes " + ", ".join(names))
    return "set " + "; ".join(parts) if parts else "remove managed rules"
