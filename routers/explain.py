"""``routers explain``: say in words what each target will do with a state, and what it cannot.

Pure: it plans against live objects when they are given (offline files or a cluster read) and
otherwise explains from the declared capabilities alone. With ``--request`` it routes requests
through the planned objects with each plugin's own data-plane evaluator, side by side with what
the state means, so a disagreement is visible at a glance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, TypeVar

from routers.contract import (
    Capabilities,
    ClusterFacts,
    MatchLimits,
    MirrorSupport,
    Routed,
    evaluator_of,
    sample_requests,
)
from routers.engine import (
    Binding,
    bind,
    check_capabilities,
    facts_from_manifests,
    plan_offline,
    with_offline_namespace,
)
from routers.errors import PlanError, PluginError, UnsupportedError, WeightFitError
from routers.model import Cleanup, Desired, RoutingConfig, TrafficState
from routers.planning.objects import LiveObjects
from routers.planning.weights import split
from routers.registry import Registry
from routers.simulate import Request, parse_request
from routers.simulate.equivalence import Finding, Meaning, judge, requests_for

__all__ = [
    "Explanation",
    "equivalence",
    "explain",
    "explain_requests",
    "judged",
    "probe_split",
    "tolerance",
]


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
    canary, stable = config.canary_name, config.stable_name
    out = [
        f"send {s.canary}/{s.total} of unmatched traffic to {canary} and "
        f"{s.stable}/{s.total} to {stable}"
        + "".join(f", {w}/{s.total} to {n}" for n, w in s.additional)
    ]
    if config.weight_scope == "all":
        out.append(
            "weights are shares of all traffic: destinations canary-routers does not own keep "
            "theirs, stable takes the rest (a weight that does not fit beside them is refused)"
        )
    else:
        out.append(
            "weights split what destinations canary-routers does not own leave (weightScope: ours)"
        )
    for r in desired.header_routes:
        out.append(
            f"send 100% of requests matching header route {r.name!r} ({len(r.matches)} match(es), ORed) to {canary}"
        )
    for m in desired.mirror_routes:
        out.append(f"mirror {m.percentage:g}% of requests matching {m.name!r} to {canary}")
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
    if limits.unmatchable_headers:
        text += f"; headers never matched: {', '.join(sorted(limits.unmatchable_headers))}"
    return text


def _limits(caps: Capabilities) -> list[str]:
    out: list[str] = []
    if not caps.header_routes:
        out.append("limit: no header-based routing")
    else:
        out.append(f"limit: header routes match {_conditions(caps.header_limits)}")
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
    if caps.mirror is not MirrorSupport.NONE and caps.mirror_limits is not None:
        out.append(f"limit: mirror routes match {_conditions(caps.mirror_limits)}")
    if caps.max_routes is not None:
        out.append(f"limit: at most {caps.max_routes} managed route(s) at once")
    if caps.max_total is not None:
        out.append(
            f"limit: weights are exact up to a total of {caps.max_total}; finer totals are rounded (and reported)"
        )
    out.extend(f"note: {n}" for n in caps.notes)
    return out


# -- explain --request ------------------------------------------------------------------------


def tolerance(caps: Capabilities, desired: Desired) -> Fraction:
    """How far a fixed-total target may round the state's shares (0 when it is exact)."""
    if not isinstance(desired, TrafficState) or caps.max_total is None:
        return Fraction(0)
    expressed = min(desired.total, caps.max_total)
    return Fraction(1, expressed) if expressed != desired.total else Fraction(0)


T = TypeVar("T")


def probe_split(plan: Callable[[TrafficState], T], total: int) -> T:
    """``plan`` of a plain split that shows which scopes are managed: half the traffic, or half
    of what destinations we do not own leave when they hold more than half of it."""
    try:
        return plan(TrafficState(weight=total // 2, total=total))
    except WeightFitError as exc:
        weight = max(1, int(exc.fits * total) // 2)
        return plan(TrafficState(weight=weight, total=total))


def meaning(config: RoutingConfig, desired: Desired) -> Meaning:
    return Meaning(
        desired,
        config.stable_name,
        config.canary_name,
        tuple(r.name for r in config.managed_routes),
        config.weight_scope,
    )


def explain_requests(
    config: RoutingConfig,
    desired: Desired,
    docs: Sequence[Mapping[str, Any]],
    requests: Iterable[str],
    *,
    registry: Registry | None = None,
) -> Iterator[str]:
    """Lines for the CLI. With manifests, plans offline and routes through the result.

    A scope is managed for a request when a plain 50% split sends some of it to canary; there
    the result must match the state's meaning. Elsewhere (foreign services, stable-pinned rules)
    it must match the objects after a cleanup, i.e. stay untouched.
    """
    parsed = [parse_request(text, field_path=f"--request[{i}]") for i, text in enumerate(requests)]
    want = meaning(config, desired)
    runs: list[tuple[Binding, LiveObjects, LiveObjects, LiveObjects]] = []
    facts = facts_from_manifests([dict(d) for d in docs])
    if docs:
        manifests = [dict(d) for d in docs]
        config, _, _ = with_offline_namespace(config, manifests, registry)
        total = desired.total if isinstance(desired, TrafficState) else 100
        after, before = (
            plan_offline(config, d, manifests, registry=registry) for d in (desired, Cleanup())
        )
        probe = probe_split(
            lambda state: plan_offline(config, state, manifests, registry=registry), total
        )
        for binding in bind(config, registry):
            objs = [r.objects_of(binding) for r in (before, probe, after)]
            runs.append((binding, objs[0], objs[1], objs[2]))
    for req in parsed:
        yield f"request: {req}"
        intent, _ = want.outcome(req)
        yield f"  wanted: {intent.describe() if intent else '(cleanup keeping weights)'}"
        if not docs:
            yield "  (no live objects given: pass -f to route through the planned objects)"
        for binding, before_objs, probe_objs, after_objs in runs:
            caps = binding.plugin.capabilities(binding.config, facts)
            yield from _routed(
                binding,
                req,
                want,
                (before_objs, probe_objs, after_objs),
                tolerance(caps, desired),
                caps.max_total,
            )


def _routed(
    binding: Binding,
    req: Request,
    want: Meaning,
    objects: tuple[LiveObjects, LiveObjects, LiveObjects],
    tol: Fraction,
    max_weight: int | None = None,
) -> Iterator[str]:
    """``objects``: after a cleanup, after a plain 50% split, after the state."""
    name = binding.name
    evaluator = evaluator_of(binding.plugin)
    if evaluator is None:
        version = getattr(binding.plugin, "api_version", "?")
        yield (
            f"  {name}: cannot simulate: the plugin provides no data-plane evaluator "
            f"(plugin API version {version}; evaluators came with version 2)"
        )
        return

    findings = judged(binding, req, want, objects, tol, max_weight)
    if not findings:
        yield f"  {name}: no routing object to simulate"
    for f in findings:
        verdict = {
            "as wanted": "  [as wanted]",
            "DIFFERS": "  [DIFFERS]",
            "unchanged": "  [not managed: unchanged]",
            "CHANGED": "  [not managed, but CHANGED]",
            "ambiguous": "  [path prefix: the data plane decides]",
            "no intent": "",
        }[f.verdict]
        yield f"  {name}: {f.scope}: {f.got.describe()}{verdict}"


def judged(
    binding: Binding,
    request: Request,
    want: Meaning,
    objects: tuple[LiveObjects, LiveObjects, LiveObjects],
    tol: Fraction,
    max_weight: int | None = None,
) -> list[Finding]:
    """:func:`~routers.simulate.equivalence.judge` through the binding's own evaluator;
    ``objects``: after a cleanup, after a plain split, after the state."""
    evaluator = evaluator_of(binding.plugin)
    if evaluator is None:
        raise PluginError(binding.name, "provides no data-plane evaluator")

    def route(objs: LiveObjects, req: Request) -> Sequence[Routed]:
        return evaluator.evaluate(binding.config, objs, req)

    before, probe, after = objects
    return judge(
        route,
        request,
        want,
        before=before,
        probe=probe,
        after=after,
        tolerance=tol,
        max_weight=max_weight,
    )


def equivalence(
    binding: Binding,
    routing: RoutingConfig,
    desired: TrafficState,
    objects: tuple[LiveObjects, LiveObjects, LiveObjects],
    caps: Capabilities,
    *,
    more_samples: Sequence[Request] = (),
) -> tuple[list[Finding], int]:
    """Every request the equivalence machinery derives for ``desired`` (the state's matches on
    the evaluator's sample requests and ``more_samples``), judged; returns what differs and how
    many managed scopes were held to the state's meaning."""
    want = meaning(routing, desired)
    tol = tolerance(caps, desired)
    samples = [*sample_requests(binding.plugin, binding.config, objects[2]), *more_samples]
    bad: list[Finding] = []
    checked = 0
    for req in requests_for(desired, samples):
        for finding in judged(binding, req, want, objects, tol, caps.max_total):
            checked += finding.compared
            if not finding.ok:
                bad.append(finding)
    return bad, checked
