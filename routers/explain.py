"""``routers explain``: say in words what each target will do with a state, and what it cannot.

Pure: it plans against live objects when they are given (offline files or a cluster read) and
otherwise explains from the declared capabilities alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from routers.contract import Capabilities, ClusterFacts, MatchLimits, MirrorSupport
from routers.engine import Binding, check_capabilities
from routers.errors import PlanError, UnsupportedError
from routers.model import Cleanup, Desired, RoutingConfig
from routers.planning.objects import LiveObjects
from routers.planning.weights import split

__all__ = ["Explanation", "explain"]


@dataclass(frozen=True)
class Explanation:
    plugin: str
    supported: bool
    lines: tuple[str, ...] = field(default=())


def _intent(desired: Desired, config: RoutingConfig) -> list[str]:
    if isinstance(desired, Cleanup):
        return [
            "remove every managed route and every object canary-routers created"
            + (
                ", and send 100% of traffic to stable"
                if desired.restore_stable
                else ", keeping weights"
            )
        ]
    s = split(desired)
    out = [
        f"send {s.canary}/{s.total} of unmatched traffic to {config.canary_service} and "
        f"{s.stable}/{s.total} to {config.stable_service}"
        + "".join(f", {w}/{s.total} to {n}" for n, w in s.additional)
    ]
    for r in desired.header_routes:
        out.append(
            f"send 100% of requests matching header route {r.name!r} ({len(r.matches)} match(es), ORed) to {config.canary_service}"
        )
    for m in desired.mirror_routes:
        out.append(
            f"mirror {m.percentage:g}% of requests matching {m.name!r} to {config.canary_service}"
        )
    return out


def explain(
    config: RoutingConfig,
    bindings: Sequence[Binding],
    desired: Desired,
    facts: ClusterFacts,
    live: LiveObjects | None = None,
) -> list[Explanation]:
    out: list[Explanation] = []
    intent = _intent(desired, config)
    for b in bindings:
        lines = [f"wanted: {line}" for line in intent]
        caps = b.plugin.capabilities(b.config, facts)
        try:
            check_capabilities(b, desired, facts)
        except UnsupportedError as exc:
            lines.append(
                f"cannot express: {exc.instruction}: {exc.reason}"
                + (f" (hint: {exc.hint})" if exc.hint else "")
            )
            out.append(Explanation(b.name, False, tuple(lines + _limits(caps))))
            continue
        if live is not None:
            try:
                plan = b.plugin.plan(b.config, live, desired, facts)
            except (UnsupportedError, PlanError) as exc:
                lines.append(f"cannot express: {exc}")
                out.append(Explanation(b.name, False, tuple(lines)))
                continue
            if plan.empty:
                lines.append("will do nothing: the objects already express this state")
            for op in plan:
                lines.append(f"will {op.verb} {op.ref}: {op.reason}")
            lines.extend(f"note: {n.message}" for n in plan.notes)
        else:
            lines.append("(no live objects given: explaining from declared capabilities)")
        out.append(Explanation(b.name, True, tuple(lines + _limits(caps))))
    return out


def _conditions(limits: MatchLimits) -> str:
    def kinds(k: frozenset[str]) -> str:
        return ", ".join(sorted(k)) or "no"

    text = (
        f"headers {kinds(limits.header_match)}; path {kinds(limits.path_match)}; "
        f"method {'yes' if limits.method_match else 'no'}; query {kinds(limits.query_match)}"
    )
    if limits.max_matches_per_route is not None:
        text += f"; at most {limits.max_matches_per_route} match(es) per route"
    if limits.max_headers_per_match is not None:
        text += f", {limits.max_headers_per_match} header(s) per match"
    return text


def _limits(caps: Capabilities) -> list[str]:
    out: list[str] = []
    if not caps.header_routes:
        out.append("limit: no header-based routing")
    else:
        out.append(f"limit: header routes match {_conditions(caps.header_limits())}")
        if not caps.header_routes_with_weight:
            out.append("limit: header routes only with weight 0")
    mirror = {
        MirrorSupport.NONE: "no mirroring",
        MirrorSupport.FULL_ONLY: "mirroring at 100% only"
        + (" (smaller percentages rounded up, as configured)" if caps.mirror_round_up else ""),
        MirrorSupport.PERCENT: "mirroring in whole percent",
        MirrorSupport.FRACTION: "mirroring at any percentage",
    }
    out.append(f"limit: {mirror[caps.mirror]}")
    if caps.mirror is not MirrorSupport.NONE and caps.mirror_matches is not None:
        out.append(f"limit: mirror routes match {_conditions(caps.mirror_matches)}")
    if caps.max_routes is not None:
        out.append(f"limit: at most {caps.max_routes} managed route(s) at once")
    if caps.max_total is not None:
        out.append(
            f"limit: weights are exact up to a total of {caps.max_total}; finer totals are rounded (and reported)"
        )
    out.extend(f"note: {n}" for n in caps.notes)
    return out
