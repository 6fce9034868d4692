"""Planning cost: microseconds per plan, pure CPU, no I/O.

Each plan is one steady-state canary step (live objects already at 10%, as the plugin left them,
desired 20%; so plugins that create an object on the first step, like nginx's canary Ingress,
are timed on the patch every later step sends), timed twice: the plugin's
``plan`` alone, and the engine's ``plan_all`` (capability checks and the contract checks on the
plan, what a reconcile pays). The no-op plan (live objects already at 20%) is what every resync
costs. Plugins must not mutate inputs, so one set of live objects is reused and checked after.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bench.scenarios import SPECS, Scenario, crd_facts
from bench.stats import Timing, growth_exponent, time_call
from routers.contract import ClusterFacts
from routers.engine import Binding, bind, plan_all
from routers.model import RoutingConfig, TrafficState
from routers.planning.objects import LiveObjects
from routers.planning.offline import apply_plans
from routers.registry import Registry

__all__ = ["CURVE_SIZES", "LINEAR_MAX_EXPONENT", "run"]

CURVE_SIZES = (10, 100, 1000)
LINEAR_MAX_EXPONENT = 1.2
"""Exponent between 100 and 1000 counted as linear (timer noise and cache effects included)."""

WARM = TrafficState(weight=10)
STEP = TrafficState(weight=20)


@dataclass(frozen=True)
class Prepared:
    scenario: Scenario
    config: RoutingConfig
    live: LiveObjects
    after: LiveObjects
    facts: ClusterFacts


def prepare(scenario: Scenario, registry: Registry, facts: ClusterFacts) -> Prepared:
    config = RoutingConfig.from_document(scenario.routing)
    bindings = bind(config, registry)
    live = settle(
        bindings, config, LiveObjects.from_manifests(scenario.objects, "bench"), WARM, facts
    )
    after = settle(bindings, config, live, STEP, facts)
    return Prepared(scenario, config, live, after, facts)


def settle(
    bindings: list[Binding],
    config: RoutingConfig,
    live: LiveObjects,
    state: TrafficState,
    facts: ClusterFacts,
) -> LiveObjects:
    """The objects after applying ``state`` in memory (with the API server's semantics)."""
    after = apply_plans(plan_all(bindings, live, state, facts, routing=config), live)
    return LiveObjects((r, o) for r, o in after.items() if o is not None)


def measure(p: Prepared, registry: Registry, *, quick: bool) -> dict[str, Any]:
    bindings = bind(p.config, registry)
    plugin, cfg = bindings[0].plugin, bindings[0].config
    before = json.dumps([p.live[r] for r in sorted(p.live)], sort_keys=True)
    opts: dict[str, Any] = {"min_batch": 0.02, "batches": 3} if quick else {}
    plugin_t = time_call(lambda: plugin.plan(cfg, p.live, STEP, p.facts), **opts)
    engine_t = time_call(
        lambda: plan_all(bindings, p.live, STEP, p.facts, routing=p.config), **opts
    )
    noop_t = time_call(lambda: plan_all(bindings, p.after, STEP, p.facts, routing=p.config), **opts)
    if json.dumps([p.live[r] for r in sorted(p.live)], sort_keys=True) != before:
        raise AssertionError(f"{p.scenario.plugin} mutated its live objects while planning")
    plans = plan_all(bindings, p.live, STEP, p.facts, routing=p.config)
    noop = plan_all(bindings, p.after, STEP, p.facts, routing=p.config)
    ops = [op for plan in plans for op in plan]
    patch_ops = sum(len(getattr(op, "ops", ())) for op in ops)
    return {
        "plugin": p.scenario.plugin,
        "object": p.scenario.label,
        "size": p.scenario.size,
        "objectBytes": sum(len(json.dumps(o)) for o in p.live.values()),
        "operations": len(ops),
        "patchOps": patch_ops,
        "noopEmpty": all(plan.empty for plan in noop),
        "pluginPlanUs": _us(plugin_t),
        "enginePlanUs": _us(engine_t),
        "noopPlanUs": _us(noop_t),
    }


def _us(t: Timing) -> dict[str, float | int]:
    return {"median": round(t.median * 1e6, 1), "best": round(t.best * 1e6, 1), "calls": t.calls}


def run(registry: Registry, plugins: list[str], *, quick: bool) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    curves: list[dict[str, Any]] = []
    for name in plugins:
        spec = SPECS[name]
        facts = crd_facts(spec.crd_set)
        for kind, scenario in [("typical", spec.typical)] + [("large", s) for s in spec.large]:
            row = measure(prepare(scenario, registry, facts), registry, quick=quick)
            rows.append({"case": kind, **row})
        for grows, build in spec.curves:
            points = []
            for n in CURVE_SIZES:
                m = measure(prepare(build(n), registry, facts), registry, quick=quick)
                points.append({"n": n, "us": m["enginePlanUs"]["best"], "object": m["object"]})
            b_low = growth_exponent(10, points[0]["us"], 100, points[1]["us"])
            b_high = growth_exponent(100, points[1]["us"], 1000, points[2]["us"])
            curves.append(
                {
                    "plugin": name,
                    "grows": grows,
                    "points": points,
                    "exponent10to100": round(b_low, 2),
                    "exponent100to1000": round(b_high, 2),
                    "linear": b_high <= LINEAR_MAX_EXPONENT,
                }
            )
    return {"rows": rows, "curves": curves}
