"""``routers explain --request``: what the state means for a request, and what each target's
resulting objects actually do with it, side by side, so a disagreement is visible at a glance."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from routers.model import Cleanup, Desired, RoutingConfig, TrafficState
from routers.planning.objects import JSON, ObjectRef
from routers.simulate.meaning import intended
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
    """Lines for the CLI. With manifests, plans offline and routes through the result."""
    parsed = [parse_request(text, field_path=f"--request[{i}]") for i, text in enumerate(requests)]
    per_plugin: list[tuple[str, list[JSON]]] = []
    if docs:
        # Lazy: the engine resolves plugins through entry points; the simulator proper does not.
        from routers.engine import bind, plan_offline

        result = plan_offline(config, desired, [dict(d) for d in docs])
        for binding in bind(config):
            refs: set[ObjectRef] = set(binding.plugin.targets(binding.config, result.before))
            refs |= {op.ref for plan in result.plans if plan.plugin == binding.name for op in plan}
            objs = [o for r, o in result.after.items() if r in refs and o is not None]
            per_plugin.append((binding.name, objs))
    for req in parsed:
        yield f"request: {req}"
        want = wanted(config, desired, req)
        yield f"  wanted: {want.describe() if want else '(cleanup keeping weights)'}"
        if not docs:
            yield "  (no live objects given: pass -f to route through the planned objects)"
        for plugin, objs in per_plugin:
            results = simulate_objects(objs, req)
            if not results:
                yield f"  {plugin}: no routing object to simulate"
            for sim in results:
                verdict = ""
                if any("/" in k for k in sim.outcome.shares):
                    verdict = "  [subsets: compare by hand]"
                elif want is not None:
                    verdict = "  [as wanted]" if _same(sim.outcome, want) else "  [DIFFERS]"
                yield f"  {plugin}: {sim.scope}: {sim.outcome.describe()}{verdict}"


def _same(got: Outcome, want: Outcome) -> bool:
    return (
        got.routed
        and dict(got.shares) == dict(want.shares)
        and dict(got.mirrors) == dict(want.mirrors)
    )
