"""``routers explain --request``: what the state means for a request, and what each target's
resulting objects actually do with it, side by side, so a disagreement is visible at a glance."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from routers.model import Cleanup, Desired, RoutingConfig, TrafficState
from routers.planning.objects import JSON, ObjectRef
from routers.simulate.meaning import intended, keep_foreign
from routers.simulate.outcome import Outcome
from routers.simulate.request import Request, parse_request
from routers.simulate.targets import simulate_objects

__all__ = ["explain_requests", "wanted"]


def wanted(config: RoutingConfig, desired: Desired, request: Request) -> Outcome | None:
    """The intended outcome (``None`` for a cleanup that keeps weights: nothing to compare)."""
    if isinstance(desired, Cleanup):
        if not desired.restore_stable:
            return None
        return intended(TrafficState(), request, stable=config.stable_service).outcome
    return intended(
        desired,
        request,
        stable=config.stable_service,
        canary=config.canary_service,
        managed_order=[r.name for r in config.managed_routes],
    ).outcome


def explain_requests(
    config: RoutingConfig,
    desired: Desired,
    docs: Sequence[Mapping[str, Any]],
    requests: Iterable[str],
) -> Iterator[str]:
    """Lines for the CLI. With manifests, plans offline and routes through the result.

    A scope counts as managed for a request when a plain 50% split changes its outcome; there the result must match the state's meaning. Elsewhere (foreign services,
    stable-pinned rules) it must match the objects after a cleanup, i.e. stay untouched.
    """
    parsed = [parse_request(text, field_path=f"--request[{i}]") for i, text in enumerate(requests)]
    per_plugin: list[tuple[str, list[JSON], list[JSON], list[JSON]]] = []
    if docs:
        # Lazy: the engine resolves plugins through entry points; the simulator proper does not.
        from routers.engine import bind, plan_offline

        manifests = [dict(d) for d in docs]
        total = desired.total if isinstance(desired, TrafficState) else 100
        runs = [
            plan_offline(config, d, manifests)
            for d in (desired, Cleanup(), TrafficState(weight=total // 2, total=total))
        ]
        for binding in bind(config):
            refs: set[ObjectRef] = set(binding.plugin.targets(binding.config, runs[0].before))
            refs |= {op.ref for r in runs for p in r.plans if p.plugin == binding.name for op in p}
            per_plugin.append(
                (binding.name, *(_objects(r.after, refs) for r in runs))  # type: ignore[arg-type]
            )
    ours = {config.stable_service, config.canary_service}
    if isinstance(desired, TrafficState):
        ours |= {d.service for d in desired.additional_destinations}
    for req in parsed:
        yield f"request: {req}"
        want = wanted(config, desired, req)
        yield f"  wanted: {want.describe() if want else '(cleanup keeping weights)'}"
        if not docs:
            yield "  (no live objects given: pass -f to route through the planned objects)"
        for plugin, after, before, probe in per_plugin:
            was = {s.scope: s.outcome for s in simulate_objects(before, req)}
            # Managed: a plain 50% split changes what this scope does with the request.
            managed = {
                s.scope
                for s in simulate_objects(probe, req)
                if s.scope not in was or not _same(s.outcome, was[s.scope])
            }
            results = simulate_objects(after, req)
            if not results:
                yield f"  {plugin}: no routing object to simulate"
            for sim in results:
                yield f"  {plugin}: {sim.scope}: {sim.outcome.describe()}" + _verdict(
                    sim.outcome, want, was.get(sim.scope), sim.scope in managed, ours
                )


def _objects(after: Mapping[ObjectRef, JSON | None], refs: set[ObjectRef]) -> list[JSON]:
    return [o for r, o in after.items() if r in refs and o is not None]


def _verdict(
    got: Outcome, want: Outcome | None, before: Outcome | None, managed: bool, ours: set[str]
) -> str:
    if not managed:
        same = before is not None and _same(got, before)
        return "  [not managed: unchanged]" if same else "  [not managed, but CHANGED]"
    if any("/" in k for k in got.shares):
        return "  [subsets: compare by hand]"
    if want is None:
        return ""
    return "  [as wanted]" if _same(got, keep_foreign(want, before, ours)) else "  [DIFFERS]"


def _same(got: Outcome, want: Outcome) -> bool:
    return (
        got.status == want.status
        and dict(got.shares) == dict(want.shares)
        and dict(got.mirrors) == dict(want.mirrors)
    )
