"""Test helpers for plugin authors: golden scenarios and the idempotence check.

A scenario directory holds ``routing.yaml``, ``live.yaml``, ``state.yaml`` (or ``cleanup.yaml``
holding ``{restoreStable: bool}``), ``expected.yaml`` and optionally ``meta.yaml``. Running it
plans offline through the *installed* plugins (the entry-point path users get), compares every
object after the plan with ``expected.yaml``, and checks that planning again is a no-op.
Set ``ROUTERS_UPDATE_GOLDEN=1`` to (re)write ``expected.yaml`` -- then review the diff.

:func:`route_scenario` plans a state against a scenario's objects and routes one request through
the result with the plugin's own data-plane evaluator (contract version 2), for regression tests
of what a target does with traffic.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routers.contract import evaluator_of
from routers.engine import OfflineResult, bind, plan_offline
from routers.errors import PluginError
from routers.io import dump_yaml, load_documents, load_one
from routers.model import Cleanup, Desired, RoutingConfig, TrafficState
from routers.planning.objects import JSON, ObjectRef
from routers.registry import Registry
from routers.simulate import Routed, parse_request

__all__ = [
    "Scenario",
    "assert_idempotent",
    "load_scenario",
    "rollout_document",
    "route_scenario",
    "run_scenario",
]


@dataclass(frozen=True)
class Scenario:
    path: Path
    routing: RoutingConfig
    desired: Desired
    live: list[JSON]
    expected: list[JSON] | None
    meta: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.name


def load_scenario(path: str | Path) -> Scenario:
    p = Path(path)
    routing = RoutingConfig.from_document(
        load_one(str(p / "routing.yaml")), source=str(p / "routing.yaml")
    )
    desired: Desired
    if (p / "cleanup.yaml").exists():
        desired = Cleanup.parse(load_one(str(p / "cleanup.yaml")) or {})
    else:
        desired = TrafficState.parse(load_one(str(p / "state.yaml")), source=str(p / "state.yaml"))
    live = load_documents([str(p / "live.yaml")])
    expected = (
        load_documents([str(p / "expected.yaml")]) if (p / "expected.yaml").exists() else None
    )
    meta = load_one(str(p / "meta.yaml")) if (p / "meta.yaml").exists() else {}
    return Scenario(p, routing, desired, live, expected, dict(meta or {}))


def _existing(result: OfflineResult) -> list[JSON]:
    return [obj for _, obj in sorted(result.after.items(), key=lambda kv: kv[0]) if obj is not None]


def run_scenario(path: str | Path, *, registry: Registry | None = None) -> OfflineResult:
    scenario = load_scenario(path)
    result = plan_offline(scenario.routing, scenario.desired, scenario.live, registry=registry)
    actual = _existing(result)
    if os.environ.get("ROUTERS_UPDATE_GOLDEN") == "1":
        (scenario.path / "expected.yaml").write_text(dump_yaml(actual), encoding="utf-8")
    else:
        assert scenario.expected is not None, f"{scenario.path}: expected.yaml is missing"
        want = {
            ObjectRef.of(o, scenario.routing.namespace or "default"): o for o in scenario.expected
        }
        got = {ObjectRef.of(o, scenario.routing.namespace or "default"): o for o in actual}
        assert sorted(got) == sorted(want), (
            f"objects differ: got {sorted(map(str, got))}, want {sorted(map(str, want))}"
        )
        for ref, obj in want.items():
            assert got[ref] == obj, (
                f"{scenario.name}: {ref} differs from expected.yaml:\n{dump_yaml([got[ref]])}"
            )
    assert_idempotent(scenario.routing, scenario.desired, actual, registry=registry)
    return result


def assert_idempotent(
    routing: RoutingConfig,
    desired: Desired,
    objects: list[JSON],
    *,
    registry: Registry | None = None,
) -> None:
    """Planning the same desired state against its own result must be a no-op."""
    again = plan_offline(routing, desired, objects, registry=registry)
    ops = [entry for plan in again.plans for entry in plan.to_data()]
    assert not ops, f"second plan is not empty: {ops}"


def route_scenario(
    path: str | Path,
    desired: Desired | dict[str, Any],
    request: str,
    *,
    plugin: str | None = None,
    registry: Registry | None = None,
) -> list[Routed]:
    """Plan ``desired`` against ``routing.yaml`` + ``live.yaml`` of ``path`` (offline, through the
    installed plugins) and route ``request`` (``'GET /api -H X-Canary:always'``) through the
    resulting objects with ``plugin``'s evaluator (default: the config's only plugin)."""
    p = Path(path)
    routing = RoutingConfig.from_document(load_one(str(p / "routing.yaml")))
    if isinstance(desired, dict):
        desired = TrafficState.parse(desired)
    result = plan_offline(
        routing, desired, load_documents([str(p / "live.yaml")]), registry=registry
    )
    bindings = [b for b in bind(routing, registry) if plugin is None or b.name == plugin]
    if len(bindings) != 1:
        raise ValueError(f"{p}: name the plugin to route through (plugin=...)")
    (binding,) = bindings
    evaluator = evaluator_of(binding.plugin)
    if evaluator is None:
        raise PluginError(binding.name, "provides no data-plane evaluator")
    return list(
        evaluator.evaluate(binding.config, result.objects_of(binding), parse_request(request))
    )


def rollout_document(
    canary: dict[str, Any], *, name: str = "web", namespace: str | None = "default"
) -> dict[str, Any]:
    """A whole Argo Rollout with ``canary`` as ``spec.strategy.canary`` (``stableService``,
    ``trafficRouting``...): :meth:`RoutingConfig.from_document` reads its identity (name,
    namespace) and its routing, as it reads the Rollout Argo hands over."""
    metadata = {"name": name} | ({"namespace": namespace} if namespace else {})
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": metadata,
        "spec": {"strategy": {"canary": canary}},
    }
