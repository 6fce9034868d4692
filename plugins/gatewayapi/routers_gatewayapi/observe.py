"""What a route expresses now: weights from spec, managed rules from the ledger, readiness from status.

A route is ready when, for every ``spec.parentRefs`` entry (Gateway or, in GAMMA mesh mode, a
Service), every controller's ``status.parents`` entry says ``Accepted`` and ``ResolvedRefs`` True
*for the current generation*, and none reports ``PartiallyInvalid`` (a dropped rule could be one
of ours). Implementations that leave ``observedGeneration`` unset (Linkerd, linkerd2 #14964) can
be tolerated by config instead of blocking every rollout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from routers.contract import Condition, ObservedWeights
from routers_gatewayapi.config import Config, Target
from routers_gatewayapi.kinds import GROUP
from routers_gatewayapi.planner import classify, read_route_ledger
from routers_gatewayapi.rules import fingerprint

__all__ = ["RouteObservation", "mirror_percentage", "observe_route"]

_REQUIRED = ("Accepted", "ResolvedRefs")


@dataclass
class RouteObservation:
    weights: list[ObservedWeights] = field(default_factory=list)
    header_routes: set[str] = field(default_factory=set)
    mirror_routes: dict[str, float] = field(default_factory=dict)
    ready: bool = False
    conditions: list[Condition] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def mirror_percentage(rule: Mapping[str, Any], canary: str) -> float | None:
    """Percentage of the last RequestMirror filter to ``canary`` (the one we append)."""
    found: float | None = None
    for f in rule.get("filters") or []:
        if not isinstance(f, Mapping):
            continue
        mirror = f.get("requestMirror")
        if f.get("type") != "RequestMirror" or not isinstance(mirror, Mapping):
            continue
        if (mirror.get("backendRef") or {}).get("name") != canary:
            continue
        if isinstance(mirror.get("percent"), int):
            found = float(mirror["percent"])
        elif isinstance(mirror.get("fraction"), Mapping):
            frac = mirror["fraction"]
            den = frac.get("denominator", 100) or 100
            found = float(Fraction(int(frac.get("numerator", 0)), int(den)) * 100)
        else:
            found = 100.0
    return found


def _weight(ref: Any) -> int:
    w = ref.get("weight", 1) if isinstance(ref, Mapping) else 0
    return w if isinstance(w, int) and not isinstance(w, bool) else 0


def _same_parent(status_ref: Mapping[str, Any], spec_ref: Mapping[str, Any], route_ns: str) -> bool:
    def key(ref: Mapping[str, Any]) -> tuple[Any, ...]:
        group = ref.get("group", GROUP)
        kind = ref.get("kind", "Gateway")
        if kind == "Service" and group in ("", "core"):
            group = ""
        return (
            group,
            kind,
            ref.get("namespace") or route_ns,
            ref.get("name"),
            ref.get("sectionName") or "",
            ref.get("port"),
        )

    return key(status_ref) == key(spec_ref)


def _readiness(
    target: Target, obj: Mapping[str, Any], tolerate: bool, out: RouteObservation
) -> None:
    meta = obj.get("metadata") or {}
    generation = meta.get("generation")
    spec_parents = [
        p for p in (obj.get("spec") or {}).get("parentRefs") or [] if isinstance(p, Mapping)
    ]
    status_parents = [
        p for p in (obj.get("status") or {}).get("parents") or [] if isinstance(p, Mapping)
    ]
    ready = bool(spec_parents)
    for parent in spec_parents:
        entries = [
            s
            for s in status_parents
            if _same_parent(s.get("parentRef") or {}, parent, target.namespace)
        ]
        label = f"{target} parent {parent.get('kind', 'Gateway')}/{parent.get('name')}"
        if not entries:
            ready = False
            continue
        for entry in entries:
            where = f"{label} ({entry.get('controllerName', 'unknown controller')})"
            conds = {
                c.get("type"): c for c in entry.get("conditions") or [] if isinstance(c, Mapping)
            }
            for ctype, c in conds.items():
                observed = c.get("observedGeneration")
                current = observed == generation or (observed is None and tolerate)
                out.conditions.append(
                    Condition(
                        obj=where,
                        type=str(ctype),
                        status=str(c.get("status", "Unknown")),
                        reason=str(c.get("reason", "")),
                        message=str(c.get("message", "")),
                        current=current,
                    )
                )
                if ctype == "PartiallyInvalid" and c.get("status") == "True" and current:
                    ready = False
                    out.problems.append(f"{where}: PartiallyInvalid: {c.get('message', '')}")
            for ctype in _REQUIRED:
                need = conds.get(ctype)
                if need is None or need.get("status") != "True":
                    ready = False
                    continue
                observed = need.get("observedGeneration")
                if not (observed == generation or (observed is None and tolerate)):
                    ready = False
    out.ready = ready


def observe_route(config: Config, target: Target, obj: Mapping[str, Any]) -> RouteObservation:
    out = RouteObservation()
    rules = list((obj.get("spec") or {}).get("rules") or [])
    ledger = read_route_ledger(config, target, obj, rules)
    book, managed = ledger.book, ledger.managed
    for i, rule in enumerate(rules):
        if not isinstance(rule, Mapping) or i in ledger.foreign.values():
            continue
        b = classify(config, target, rule, book.backends)
        if not b.weighted:
            continue
        refs = rule.get("backendRefs") or []
        name = rule.get("name")
        mine = next((rid for rid, idx in managed.items() if idx == i), None)
        if mine is not None:
            location = f"{target} rule {mine}"
        else:
            location = f"{target} rules[{i}]" + (f" ({name})" if name else "")
        out.weights.append(
            ObservedWeights(
                location=location,
                stable=sum(_weight(refs[j]) for j in b.stable),
                canary=sum(_weight(refs[j]) for j in b.canary),
                additional=tuple(
                    (svc, sum(_weight(refs[j]) for j in js)) for svc, js in sorted(b.added.items())
                ),
                foreign=sum(_weight(refs[j]) for j in b.foreign),
            )
        )
    for rid, entry in book.rules.items():
        route = rid.split(".", 1)[0]
        idx = managed.get(rid)
        if idx is None:
            out.problems.append(
                f"{target}: managed rule {rid!r} is listed in the ledger but no rule carries its "
                "name or content (removed or edited by someone else); the next plan restores it"
            )
            continue
        if fingerprint(target.kind, rules[idx]) != entry.sha256:
            out.problems.append(
                f"{target}: managed rule {rid!r} differs from what canary-routers wrote "
                "(edited by someone else); the next plan restores it"
            )
        if entry.kind == "header":
            out.header_routes.add(route)
        else:
            pct = mirror_percentage(rules[idx], config.canary)
            if pct is None:
                out.problems.append(
                    f"{target}: managed mirror rule {rid!r} has no RequestMirror filter"
                )
            else:
                out.mirror_routes.setdefault(route, pct)
    _readiness(target, obj, config.section.tolerate_missing_observed_generation, out)
    return out
